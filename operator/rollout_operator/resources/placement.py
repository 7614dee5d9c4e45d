"""Where a run's pods go and which Kueue queue admits them: `spec.scheduling` for every pod,
`spec.model.serve.scheduling` (when set) instead for the managed inference server.

Only the worker Job and the inference Deployment are queued (labelled with the LocalQueue);
the other children are small and short, or serve the queued ones, and get the placement alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rollout_operator.api.spec import SchedulingSpec
    from rollout_operator.resources.context import RunContext

KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
"""The label that hands a Job or a Deployment to a Kueue LocalQueue."""
KUEUE_ADMISSION_GATE = "kueue.x-k8s.io/admission"
"""The scheduling gate Kueue puts on the pods it manages (a Deployment's) until it admits them."""
KUEUE_JOB_UID_LABEL = "kueue.x-k8s.io/job-uid"
"""The label of a Kueue Workload that names the uid of the Job it admits."""
KUEUE_WORKLOADS_PATH = "/apis/kueue.x-k8s.io/v1beta1/namespaces/{ns}/workloads"


def run_scheduling(ctx: RunContext) -> SchedulingSpec:
    return ctx.spec.scheduling


def inference_scheduling(ctx: RunContext) -> SchedulingSpec:
    """The server's own `serve.scheduling` when given (GPU pools), else the run's."""
    serve = ctx.spec.model.serve
    if serve is not None and serve.scheduling is not None:
        return serve.scheduling
    return ctx.spec.scheduling


def placement_fields(scheduling: SchedulingSpec) -> dict[str, Any]:
    """priorityClassName, nodeSelector, tolerations and affinity for a pod spec; only those set."""
    given = scheduling.model_dump(by_alias=True, exclude_defaults=True, exclude={"queue_name"})
    return {key: value for key, value in given.items() if value}


def queue_labels(scheduling: SchedulingSpec) -> dict[str, str]:
    """The Kueue label of a queued workload; none without a queueName."""
    return {KUEUE_QUEUE_LABEL: scheduling.queue_name} if scheduling.queue_name else {}
