"""`rolloutctl operator`: run the Kopf operator that carries RolloutRuns through their phases."""

from __future__ import annotations

import click


def _metrics_address(_ctx: click.Context, _param: click.Parameter,
                     value: str | None) -> tuple[str, int] | None:
    if value is None:
        return None
    from rollout_operator.cli.metrics_server import parse_address

    try:
        return parse_address(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("operator")
@click.option("-n", "--namespace", "namespaces", multiple=True,
              help="Watch only this namespace (repeatable). Default: every namespace.")
@click.option("--peering/--standalone", default=False, show_default=True,
              help="With several replicas, use Kopf peering so that only one acts at a time.")
@click.option("--priority", type=int, default=0, show_default=True,
              help="Peering priority of this replica (the highest active one acts).")
@click.option("--liveness", default=None,
              help="Serve a liveness endpoint, e.g. http://0.0.0.0:8080/healthz.")
@click.option("--metrics-address", "metrics_address", default=None, metavar="HOST:PORT",
              callback=_metrics_address,
              help="Serve Prometheus metrics at http://HOST:PORT/metrics, e.g. 0.0.0.0:9090. "
              "Off by default.")
@click.option("--verbose", is_flag=True, help="Debug logging.")
def operator_command(
    namespaces: tuple[str, ...], peering: bool, priority: int, liveness: str | None,
    metrics_address: tuple[str, int] | None, verbose: bool,
) -> None:
    """Watch RolloutRun resources and run them (what the Helm chart's Deployment runs)."""
    import logging

    import kopf
    from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR

    import rollout_operator.handlers.rolloutrun  # noqa: F401  (registers the handlers)
    from rollout_operator.cli.metrics_server import MetricsServer, start_metrics_server
    from rollout_operator.operator_metrics import OperatorMetrics

    kopf.configure(verbose=verbose)  # Kopf's own log format, for operator and object logs
    metrics = OperatorMetrics()
    server: MetricsServer | None = None
    if metrics_address is not None:
        # The process's CPU, memory and open files beside the operator's own metrics.
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            metrics.registry.register(collector)
        host, port = metrics_address
        try:
            server = start_metrics_server(metrics.registry, host, port)
        except OSError as exc:
            raise click.ClickException(
                f"cannot serve metrics at {host}:{port}: {exc.strerror or exc}") from None
        logging.getLogger(__name__).info("Serving Prometheus metrics at %s", server.url)
    try:
        kopf.run(
            clusterwide=not namespaces,
            namespaces=list(namespaces),
            standalone=not peering,
            priority=priority,
            liveness_endpoint=liveness,
            memo=kopf.Memo(metrics=metrics),
        )
    finally:
        if server is not None:
            server.close()
