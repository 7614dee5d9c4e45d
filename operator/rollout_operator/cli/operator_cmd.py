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


def _priority(_ctx: click.Context, _param: click.Parameter, value: str) -> int | None:
    """An integer priority, or None for `auto` (derived from the identity at start)."""
    if value == "auto":
        return None
    try:
        return int(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither an integer nor 'auto'") from None


@click.command("operator")
@click.option("-n", "--namespace", "namespaces", multiple=True,
              help="Watch only this namespace (repeatable). Default: $ROLLOUT_OPERATOR_NAMESPACES, "
              "else every namespace.")
@click.option("--peering/--standalone", default=False, show_default=True,
              help="With several replicas, use Kopf peering so that only one acts at a time.")
@click.option("--peering-name", default=None, metavar="NAME",
              help="Name of the peering object the replicas share (implies --peering); it is "
              "created when missing. Default: rollout-operator.")
@click.option("--priority", default="0", show_default=True, callback=_priority,
              help="Peering priority of this replica (the highest live one acts): an integer, "
              "or 'auto' for a stable one derived from the pod name ($POD_ID), distinct "
              "across replicas.")
@click.option("--liveness", default=None,
              help="Serve a liveness endpoint, e.g. http://0.0.0.0:8080/healthz.")
@click.option("--metrics-address", "metrics_address", default=None, metavar="HOST:PORT",
              callback=_metrics_address,
              help="Serve Prometheus metrics at http://HOST:PORT/metrics, e.g. 0.0.0.0:9090. "
              "Off by default.")
@click.option("--verbose", is_flag=True, help="Debug logging.")
def operator_command(
    namespaces: tuple[str, ...], peering: bool, peering_name: str | None, priority: int | None,
    liveness: str | None, metrics_address: tuple[str, int] | None, verbose: bool,
) -> None:
    """Watch RolloutRun resources and run them (what the Helm chart's Deployment runs)."""
    import logging

    problem = cluster_config_problem()
    if problem is not None:
        click.echo(f"rolloutctl operator: {problem}", err=True)
        raise SystemExit(2)

    import kopf
    from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR

    import rollout_operator.handlers.rolloutrun  # noqa: F401  (registers the handlers)
    from rollout_operator.cli.metrics_server import MetricsServer, start_metrics_server
    from rollout_operator.operator_metrics import OperatorMetrics

    kopf.configure(verbose=verbose)  # Kopf's own log format, for operator and object logs
    if not namespaces:
        from rollout_operator.settings import OperatorSettings

        namespaces = tuple(OperatorSettings().namespaces)
    if peering or peering_name:
        peering_name, priority = _prepare_peering(peering_name, priority, list(namespaces))
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
            standalone=not (peering or peering_name),
            peering_name=peering_name,
            priority=priority or 0,
            liveness_endpoint=liveness,
            memo=kopf.Memo(metrics=metrics),
        )
    finally:
        if server is not None:
            server.close()


DEFAULT_PEERING_NAME = "rollout-operator"


def cluster_config_problem() -> str | None:
    """Why no cluster can be reached (no in-cluster credentials, no usable kubeconfig), said in
    one line with what to do, or None. Reads files only: no request is made."""
    import os

    from kubernetes import config

    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
        return None
    except config.ConfigException:
        pass
    where = os.environ.get("KUBECONFIG") or "~/.kube/config"
    try:
        config.load_kube_config()  # type: ignore[no-untyped-call]
        return None
    except (config.ConfigException, OSError, ValueError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
    return (f"no cluster to talk to: not running in a pod, and the kubeconfig ({where}) cannot "
            f"be used ({reason}). Point KUBECONFIG at a kubeconfig file (or create "
            "~/.kube/config, e.g. with `kind create cluster`), or deploy the operator in the "
            "cluster with the Helm chart (charts/).")


def _prepare_peering(name: str | None, priority: int | None,
                     namespaces: list[str]) -> tuple[str, int]:
    """Make sure the peering object exists and settle this replica's priority."""
    import logging
    import os
    import socket

    from kubernetes.client.exceptions import ApiException

    from rollout_operator.handlers.kube import KubeApi
    from rollout_operator.handlers.peering import auto_priority, ensure_peering_objects

    name = name or DEFAULT_PEERING_NAME
    if priority is None:
        priority = auto_priority(os.environ.get("POD_ID") or socket.gethostname())
    try:
        created = ensure_peering_objects(KubeApi(), name, namespaces)
    except ApiException as exc:
        raise click.ClickException(
            f"cannot create the peering object {name!r} (are the kopf.dev peering CRDs "
            f"installed and may the operator create them?): {exc.status} {exc.reason}"
        ) from None
    log = logging.getLogger(__name__)
    for path in created:
        log.info("Created the peering object %s", path)
    log.info("Peering as %r with priority %d", name, priority)
    return name, priority
