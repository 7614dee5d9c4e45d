"""Names of the RolloutRun API that the operator, the CLI and the CRD share.

Condition types and reasons live here so that every producer and every reader of a condition
spells it the same way (Kubernetes API conventions: types and reasons are CamelCase).
"""

from __future__ import annotations

from typing import Final

GROUP: Final = "rollouts.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "RolloutRun"
LIST_KIND: Final = "RolloutRunList"
PLURAL: Final = "rolloutruns"
SINGULAR: Final = "rolloutrun"
SHORT_NAMES: Final = ["rr"]
CATEGORIES: Final = ["rollouts"]
CRD_NAME: Final = f"{PLURAL}.{GROUP}"
LABEL_PREFIX: Final = f"{GROUP}/"

# Spec fields that may change after a run has started; every other field is fixed.
MUTABLE_SPEC_FIELDS: Final = ("suspend", "ttlSecondsAfterFinished")


class ConditionType:
    """The condition types a RolloutRun reports."""

    SYNCED: Final = "Synced"
    TOOLS_READY: Final = "ToolsReady"
    INFERENCE_READY: Final = "InferenceReady"
    COMPLETE: Final = "Complete"
    FAILED: Final = "Failed"
    SPEC_REFUSED: Final = "SpecRefused"
    """True while the spec differs from the one the run started with: the run goes on with its
    own spec and children, and creates nothing from the refused one."""

    QUEUED: Final = "Queued"
    """True while a Kueue queue holds the worker Job (suspended) or the inference server's pods
    (gated) before admission; the run's own deadlines do not run meanwhile."""

    ALL: Final = (SYNCED, TOOLS_READY, INFERENCE_READY, COMPLETE, FAILED, SPEC_REFUSED, QUEUED)


class ConditionStatus:
    """The three values of a condition's `status`."""

    TRUE: Final = "True"
    FALSE: Final = "False"
    UNKNOWN: Final = "Unknown"


class Phase:
    """Values of `status.phase`, a summary derived from the conditions for display."""

    PENDING: Final = "Pending"
    SYNCING: Final = "Syncing"
    STARTING: Final = "Starting"
    RUNNING: Final = "Running"
    AGGREGATING: Final = "Aggregating"
    SUCCEEDED: Final = "Succeeded"
    FAILED: Final = "Failed"
    SUSPENDED: Final = "Suspended"

    ALL: Final = (
        PENDING,
        SYNCING,
        STARTING,
        RUNNING,
        AGGREGATING,
        SUCCEEDED,
        FAILED,
        SUSPENDED,
    )
    FINISHED: Final = (SUCCEEDED, FAILED)


class Reason:
    """CamelCase reasons for conditions and Events."""

    # Spec problems
    INVALID_SPEC: Final = "InvalidSpec"
    SPEC_CHANGED: Final = "SpecChanged"
    # Synced
    SYNCING: Final = "Syncing"
    INSPECTING: Final = "Inspecting"
    SYNC_FAILED: Final = "SyncFailed"
    SYNCED: Final = "Synced"
    # ToolsReady
    TOOLS_STARTING: Final = "ToolsStarting"
    TOOLS_AVAILABLE: Final = "ToolsAvailable"
    TOOLS_FAILED: Final = "ToolsFailed"
    # InferenceReady
    INFERENCE_STARTING: Final = "InferenceStarting"
    INFERENCE_AVAILABLE: Final = "InferenceAvailable"
    INFERENCE_FAILED: Final = "InferenceFailed"
    EXTERNAL_ENDPOINT: Final = "ExternalEndpoint"
    # Complete / Failed
    ROLLOUTS_RUNNING: Final = "RolloutsRunning"
    AGGREGATING: Final = "Aggregating"
    AGGREGATE_FAILED: Final = "AggregateFailed"
    AGGREGATE_RETRYING: Final = "AggregateRetrying"
    COMPLETED: Final = "Completed"
    WORKERS_FAILED: Final = "WorkersFailed"
    TOO_MANY_MASKED: Final = "TooManyMasked"
    DEADLINE_EXCEEDED: Final = "DeadlineExceeded"
    SUSPENDED: Final = "Suspended"
    RESUMED: Final = "Resumed"
    # Queued
    WAITING_FOR_ADMISSION: Final = "WaitingForAdmission"
    ADMITTED: Final = "Admitted"
    PENDING: Final = "Pending"
