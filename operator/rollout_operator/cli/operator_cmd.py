"""`rolloutctl operator`: run the Kopf operator that carries RolloutRuns through their phases."""

from __future__ import annotations

import click


@click.command("operator")
@click.option("-n", "--namespace", "namespaces", multiple=True,
              help="Watch only this namespace (repeatable). Default: every namespace.")
@click.option("--peering/--standalone", default=False, show_default=True,
              help="With several replicas, use Kopf peering so that only one acts at a time.")
@click.option("--priority", type=int, default=0, show_default=True,
              help="Peering priority of this replica (the highest active one acts).")
@click.option("--liveness", default=None,
              help="Serve a liveness endpoint, e.g. http://0.0.0.0:8080/healthz.")
@click.option("--verbose", is_flag=True, help="Debug logging.")
def operator_command(
    namespaces: tuple[str, ...], peering: bool, priority: int, liveness: str | None,
    verbose: bool,
) -> None:
    """Watch RolloutRun resources and run them (what the Helm chart's Deployment runs)."""
    import kopf

    import rollout_operator.handlers.rolloutrun  # noqa: F401  (registers the handlers)

    kopf.configure(verbose=verbose)  # Kopf's own log format, for operator and object logs
    kopf.run(
        clusterwide=not namespaces,
        namespaces=list(namespaces),
        standalone=not peering,
        priority=priority,
        liveness_endpoint=liveness,
    )
