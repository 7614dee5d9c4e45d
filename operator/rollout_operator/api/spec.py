"""The RolloutRun spec: what a user asks for, as pydantic models.

These models are the API. The CRD's schema, its descriptions and its limits are generated from
them (`rollout_operator.api.crd`), and the operator validates every spec with them too, because
admission is not guaranteed (a cluster may run an older CRD; test stand-ins do none).
Python names are snake_case; YAML keys are camelCase (`baseURL` for `base_url`).
Strings, lists and maps carry length limits so that the CRD's CEL rules stay within the API
server's cost budget.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, model_validator
from pydantic.alias_generators import to_camel

DEFAULT_DATASET_PATH = "test_data.jsonl"

DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
ROLLOUT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
RESOURCE_NAME_PATTERN = (
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
# The Kubernetes quantity grammar, as in the core API's own CRDs.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)

# A label value (Kubernetes: at most 63 characters, alphanumerics at both ends).
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
# A label or taint key: an optional DNS-subdomain prefix and '/', then a name of at most 63.
LABEL_KEY_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
MAX_LABEL_VALUE_LENGTH = 63

MAX_URL_LENGTH = 2048
MAX_NAME_LENGTH = 253
MAX_POLICY_VERSION_LENGTH = 128
# Printable text without line breaks or surrounding spaces: it is shown in kubectl's table.
POLICY_VERSION_PATTERN = r"^[^\s](.*[^\s])?$"


class ApiModel(BaseModel):
    """Base of every API model: camelCase keys, unknown keys rejected, no type coercion.

    `strict` mirrors the CRD schema, which refuses `"4"` for an integer; floats still accept
    integers.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        strict=True,
    )


SecretName = Annotated[
    str,
    Field(min_length=1, max_length=MAX_NAME_LENGTH, pattern=DNS_SUBDOMAIN_PATTERN),
]

Quantity = Annotated[
    int | Annotated[str, Field(pattern=QUANTITY_PATTERN, max_length=64)],
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "maxLength": 64,
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": True,
        }
    ),
]

ResourceName = Annotated[str, Field(max_length=MAX_NAME_LENGTH, pattern=RESOURCE_NAME_PATTERN)]

Port = Annotated[int, Field(ge=1, le=65535)]


class SecretKeyRef(ApiModel):
    """A key in a Secret in the run's namespace."""

    name: SecretName = Field(description="Name of the Secret, in the RolloutRun's namespace.")
    key: str = Field(
        min_length=1,
        max_length=MAX_NAME_LENGTH,
        pattern=SECRET_KEY_PATTERN,
        description="Key within the Secret whose value is used.",
    )


class ResourceRequirements(ApiModel):
    """CPU, memory and other resources for a container, as in a Pod spec."""

    requests: dict[ResourceName, Quantity] | None = Field(
        default=None,
        max_length=16,
        description=(
            "Minimum resources the container needs, e.g. {cpu: 500m, memory: 1Gi}. "
            "Quantities are integers or strings in Kubernetes quantity notation."
        ),
    )
    limits: dict[ResourceName, Quantity] | None = Field(
        default=None,
        max_length=16,
        description=(
            "Maximum resources the container may use, e.g. {cpu: '2', memory: 4Gi, "
            "nvidia.com/gpu: 1}. The operator sets safe defaults where this is empty."
        ),
    )


class RepoSpec(ApiModel):
    """Where the Osmosis-layout repository comes from."""

    url: str = Field(
        min_length=1,
        max_length=MAX_URL_LENGTH,
        description=(
            "Git URL of the repository: https://host/org/repo.git, ssh://git@host/org/repo.git "
            "or git@host:org/repo.git. Never put a token in the URL; use credentialsSecret."
        ),
    )
    revision: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description=(
            "Branch, tag or commit SHA to check out; the remote's default branch (its HEAD) "
            "when unset. The resolved commit is in status.commit."
        ),
    )
    path: str = Field(
        default="",
        max_length=1024,
        description=(
            "Subfolder of the repository that holds the Osmosis layout (mcp/main.py, reward "
            "functions, dataset). Relative, without '..'; empty means the repository root."
        ),
    )
    credentials_secret: SecretName | None = Field(
        default=None,
        description=(
            "Secret with the clone credentials: key 'token' for https URLs, or "
            "'ssh-privatekey' (and optionally 'known_hosts') for ssh URLs."
        ),
    )


class DatasetSpec(ApiModel):
    """The prompts: a JSONL or Parquet file in the repository or in object storage."""

    path: str | None = Field(
        default=None,
        max_length=1024,
        description=(
            "Dataset file relative to repo.path. Defaults to test_data.jsonl when url is not set."
        ),
    )
    url: str | None = Field(
        default=None,
        max_length=1024,
        description=(
            "Dataset file in object storage (s3://bucket/key or gs://bucket/key), read with "
            "output's endpoint and credentials. Set either path or url."
        ),
    )
    offset: int = Field(default=0, ge=0, description="Number of rows to skip from the start.")
    limit: int | None = Field(
        default=None,
        ge=1,
        description="Maximum number of rows to use after offset; all rows when unset.",
    )
    samples_per_prompt: int = Field(
        default=1,
        ge=1,
        le=1024,
        description="Rollouts per row (the n of pass@k); each is scored separately.",
    )
    strict: bool = Field(
        default=False,
        description=(
            "Refuse the run at sync when any row of the window cannot be used (not JSON, "
            "wrong types, a missing column, bytes that are not UTF-8), naming the file and "
            "line of each. When false, such rows are counted at sync and each of their "
            "samples is recorded as invalid (never run or scored), and the run goes on."
        ),
    )

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if self.path is not None and self.url is not None:
            raise ValueError("set either path or url, not both")
        if self.path is None and self.url is None:
            self.path = DEFAULT_DATASET_PATH
        return self


class ServeSpec(ApiModel):
    """A vLLM or SGLang server that the operator runs for this run and removes afterwards."""

    engine: Literal["vllm", "sglang"] = Field(
        default="vllm", description="Inference server to run: vllm or sglang."
    )
    image: str | None = Field(
        default=None,
        max_length=512,
        description=(
            "Container image of the server; the operator's default for the engine when unset."
        ),
    )
    model: str = Field(
        min_length=1,
        max_length=512,
        description=(
            "Model to serve (a Hugging Face id or a path in the image); it is also the model "
            "name the rollouts request."
        ),
    )
    gpus: int = Field(default=1, ge=0, le=64, description="GPUs per server replica (0 for CPU).")
    replicas: int = Field(default=1, ge=1, le=64, description="Number of server replicas.")
    args: list[Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=list,
        max_length=64,
        description=(
            "Extra command-line arguments for the server, e.g. ['--max-model-len', '8192']."
        ),
    )
    port: Port = Field(default=8000, description="Port the server listens on.")
    resources: ResourceRequirements | None = Field(
        default=None,
        description="Resources of each server container; GPUs are added from gpus.",
    )
    scheduling: SchedulingSpec | None = Field(
        default=None,
        description=(
            "Placement of the server pods (GPU nodes: their nodeSelector and tolerations) and "
            "their Kueue queue. When set it replaces spec.scheduling for the server; when "
            "unset the server is placed and queued like the rest of the run."
        ),
    )


class ModelSpec(ApiModel):
    """The policy model: an existing endpoint (name) or a managed server (serve)."""

    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=512,
        description=(
            "litellm model name, e.g. openai/gpt-4o-mini, or openai/<served-name> with baseURL "
            "for any OpenAI-compatible server. Set either name or serve."
        ),
    )
    base_url: str | None = Field(
        default=None,
        alias="baseURL",
        max_length=MAX_URL_LENGTH,
        description="Base URL of an OpenAI-compatible API, e.g. https://llm.example.com/v1.",
    )
    api_key_secret: SecretKeyRef | None = Field(
        default=None,
        description="Secret key holding the API key; it reaches the workers as an env var only.",
    )
    temperature: float | None = Field(default=None, ge=0, description="Sampling temperature.")
    top_p: float | None = Field(default=None, ge=0, le=1, description="Nucleus sampling top-p.")
    max_tokens: int | None = Field(
        default=None, ge=1, description="Maximum tokens the model may generate per turn."
    )
    request_timeout_seconds: float | None = Field(
        default=None, gt=0, description="Timeout of one model request, in seconds."
    )
    serve: ServeSpec | None = Field(
        default=None,
        description=(
            "A vLLM or SGLang server the operator runs for this run. Set either name or serve."
        ),
    )
    policy_version: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_POLICY_VERSION_LENGTH,
        pattern=POLICY_VERSION_PATTERN,
        description=(
            "Which version of the policy produces this run's rollouts, in your own words: a "
            "training step (step-120), a checkpoint or a LoRA adapter name. Every trajectory "
            "record carries it as policy_version, the status shows it, and kubectl get "
            "rolloutruns lists it."
        ),
    )

    capture_tokens: bool = Field(
        default=False,
        description=(
            "Ask the endpoint for the prompt's and the reply's token ids and the sampled "
            "tokens' logprobs with every model call (vLLM's return_token_ids and logprobs; "
            "SGLang's too), and record them on each turn for rolloutctl export --format "
            "tokens. Needs an OpenAI-compatible endpoint: baseURL, serve, or a hosted_vllm/ "
            "name."
        ),
    )

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.name is None) == (self.serve is None):
            given = "both" if self.name is not None else "neither"
            raise ValueError(f"set exactly one of name or serve (got {given})")
        if self.serve is not None and self.base_url is not None:
            raise ValueError("baseURL is for an external endpoint; remove it when using serve")
        if self.capture_tokens and self.serve is None and self.base_url is None and not (
                self.name or "").startswith("hosted_vllm/"):
            raise ValueError(
                "captureTokens needs an OpenAI-compatible endpoint that returns token ids "
                f"(vLLM or SGLang), but model {self.name!r} has no baseURL: set baseURL to "
                "the server's /v1 URL, use serve, or remove captureTokens"
            )
        return self

    @property
    def served_name(self) -> str:
        """The model name the rollouts request: `name`, or `serve.model` for a managed server."""
        if self.serve is not None:
            return self.serve.model
        assert self.name is not None
        return self.name


class AgentSpec(ApiModel):
    """Limits of the agent loop, as in `osmosis eval`."""

    max_turns: int = Field(
        default=10, ge=1, le=1000, description="Maximum model turns per rollout."
    )
    tool_timeout_seconds: float = Field(
        default=60.0, gt=0, description="Timeout of one tool call, in seconds."
    )
    rollout_timeout_seconds: float = Field(
        default=450.0, gt=0, description="Timeout of a whole rollout, in seconds."
    )
    tool_result_max_chars: int = Field(
        default=100000,
        ge=1,
        description="Tool results longer than this are cut before they reach the model.",
    )


class SecretEnv(ApiModel):
    """An environment variable whose value comes from a Secret."""

    env: str = Field(
        min_length=1,
        max_length=128,
        pattern=ENV_NAME_PATTERN,
        description="Environment variable name, e.g. OPENAI_API_KEY.",
    )
    secret_key_ref: SecretKeyRef = Field(description="Secret key whose value the variable gets.")


class ScoringSpec(ApiModel):
    """Which reward and rubric functions score each trajectory."""

    functions: list[Annotated[str, Field(max_length=256)]] | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description=(
            "Scorers as module:function refs relative to repo.path, e.g. "
            "reward_fn.compute_reward:numbers_match_reward. All discovered scorers when unset."
        ),
    )
    pass_threshold: float = Field(
        default=1.0, description="A score at or above this counts as a pass for pass@k."
    )
    timeout_seconds: float = Field(
        default=150.0, gt=0, description="Timeout of one scorer call, in seconds."
    )
    secrets: list[SecretEnv] = Field(
        default_factory=list,
        max_length=32,
        description=(
            "Secrets exposed to scorers (and only to them) as env vars, e.g. a judge model's "
            "API key."
        ),
    )
    egress: list[EgressRule] = Field(
        default_factory=list,
        max_length=32,
        description=(
            "Destinations the scorers may reach, e.g. an LLM judge's API; DNS only when "
            "empty."
        ),
    )


class WorkersSpec(ApiModel):
    """The rollout workers: an Indexed Job with one index per shard."""

    shards: int = Field(
        default=1, ge=1, le=100000, description="Number of shards the work items are split into."
    )
    parallelism: int | None = Field(
        default=None,
        ge=1,
        le=100000,
        description="Shards running at once; all of them when unset.",
    )
    concurrency: int = Field(
        default=64, ge=1, le=4096, description="Rollouts running at once in each worker pod."
    )
    resources: ResourceRequirements | None = Field(
        default=None, description="Resources of each worker container."
    )
    backoff_limit_per_index: int = Field(
        default=3,
        ge=0,
        le=1000,
        description="Retries of a failed shard; a retry skips the rollouts already written.",
    )


class FaultsSpec(ApiModel):
    """What a run does about rollouts masked by infrastructure (model endpoint, tool or scorer
    server), how many it tolerates, and how long it waits out a dependency's outage."""

    masked_retries: int = Field(
        default=2,
        ge=0,
        le=10,
        description=(
            "Times a masked rollout is run again at the end of its shard, after a short "
            "backoff. A retried shard or a rerun also runs again every rollout still masked."
        ),
    )
    max_masked_fraction: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description=(
            "Largest share of rollouts that may remain masked at the end; above it the run "
            "fails with reason TooManyMasked (its results are still written)."
        ),
    )
    outage_budget_seconds: int = Field(
        default=300,
        ge=0,
        le=3600,
        description=(
            "Longest a worker or the aggregate waits for a model endpoint, tool server or "
            "object store that cannot be reached (refused or dropped connections, 502/503/504, "
            "storage timeouts) before its calls fail as they would without waiting. Rollouts "
            "caught by the outage are sent again once it is over, not masked. 0: no waiting."
        ),
    )


class EgressRule(ApiModel):
    """A destination tool pods may reach; everything else is denied."""

    cidr: str | None = Field(
        default=None,
        max_length=64,
        description="IP range, e.g. 10.0.0.0/8 or 2001:db8::/32. Set either cidr or host.",
    )
    host: str | None = Field(
        default=None,
        max_length=MAX_NAME_LENGTH,
        description="DNS name, e.g. api.example.com. Set either cidr or host.",
    )
    ports: list[Port] = Field(
        default_factory=list,
        max_length=32,
        description="TCP ports allowed; all ports when empty.",
    )

    @model_validator(mode="after")
    def _one_destination(self) -> Self:
        if (self.cidr is None) == (self.host is None):
            given = "both" if self.cidr is not None else "neither"
            raise ValueError(f"set exactly one of cidr or host (got {given})")
        return self


class SandboxSpec(ApiModel):
    """The pods that run user code (tools, rewards): image, isolation and network."""

    image: str | None = Field(
        default=None,
        max_length=512,
        description="Sandbox image with rolloutctl; the operator's default when unset.",
    )
    replicas: int = Field(default=1, ge=1, le=100, description="Tool server replicas.")
    resources: ResourceRequirements | None = Field(
        default=None, description="Resources of each tool server container."
    )
    runtime_class_name: str | None = Field(
        default=None,
        max_length=MAX_NAME_LENGTH,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="RuntimeClass for stronger isolation of user code, e.g. gvisor or kata.",
    )
    egress: list[EgressRule] = Field(
        default_factory=list,
        max_length=64,
        description="Destinations tool pods may reach. Tool pods have no network access otherwise.",
    )


LabelKey = Annotated[str, Field(min_length=1, max_length=317, pattern=LABEL_KEY_PATTERN)]
LabelValue = Annotated[str, Field(max_length=MAX_LABEL_VALUE_LENGTH, pattern=LABEL_VALUE_PATTERN)]


class Toleration(ApiModel):
    """A taint the pods tolerate, as in a Pod spec."""

    key: LabelKey | None = Field(
        default=None,
        description="Taint key, e.g. nvidia.com/gpu; empty (with operator Exists) matches all.",
    )
    operator: Literal["Exists", "Equal"] = Field(
        default="Equal",
        description="Equal matches the taint's value; Exists matches any value of the key.",
    )
    value: LabelValue | None = Field(
        default=None, description="Taint value to match with operator Equal."
    )
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to match; all effects when unset."
    )
    toleration_seconds: int | None = Field(
        default=None,
        description=(
            "With effect NoExecute: how long a pod stays on a node after the taint appears; "
            "forever when unset."
        ),
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.key is None and self.operator != "Exists":
            raise ValueError("a toleration without key must use operator Exists (it matches "
                             "every taint); set key, or operator: Exists")
        if self.operator == "Exists" and self.value:
            raise ValueError(f"toleration of {self.key or 'every taint'}: operator Exists "
                             "takes no value; remove value, or use operator Equal")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError(f"toleration of {self.key or 'every taint'}: tolerationSeconds "
                             "applies only to effect NoExecute")
        return self


class NodeSelectorRequirement(ApiModel):
    """A node label (or field) test: key, operator and values, as in a Pod spec."""

    key: LabelKey = Field(description="Node label key, e.g. nvidia.com/gpu.product.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"] = Field(
        description="In, NotIn, Exists, DoesNotExist, Gt or Lt."
    )
    values: list[LabelValue] = Field(
        default_factory=list,
        max_length=64,
        description=(
            "Values for In and NotIn (at least one), one integer for Gt and Lt, none for "
            "Exists and DoesNotExist."
        ),
    )

    @model_validator(mode="after")
    def _values_fit(self) -> Self:
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"{self.key} {self.operator} needs at least one value")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"{self.key} {self.operator} takes no values; remove them")
        if self.operator in ("Gt", "Lt") and (
            len(self.values) != 1 or not self.values[0].lstrip("-").isdigit()
        ):
            raise ValueError(f"{self.key} {self.operator} needs exactly one integer value")
        return self


class NodeSelectorTerm(ApiModel):
    """Node tests that must all hold."""

    match_expressions: list[NodeSelectorRequirement] = Field(
        default_factory=list, max_length=16, description="Tests of node labels."
    )
    match_fields: list[NodeSelectorRequirement] = Field(
        default_factory=list, max_length=16, description="Tests of node fields (metadata.name)."
    )


class NodeSelector(ApiModel):
    """Node terms of which at least one must hold."""

    node_selector_terms: list[NodeSelectorTerm] = Field(
        min_length=1, max_length=16, description="Terms; a node matching any of them fits."
    )


class PreferredSchedulingTerm(ApiModel):
    """A node term the scheduler prefers, with its weight."""

    weight: int = Field(ge=1, le=100, description="Weight of the preference, 1-100.")
    preference: NodeSelectorTerm = Field(description="The nodes preferred.")


class NodeAffinity(ApiModel):
    """Which nodes the pods must or should run on."""

    required_during_scheduling_ignored_during_execution: NodeSelector | None = Field(
        default=None, description="Nodes the pods must run on."
    )
    preferred_during_scheduling_ignored_during_execution: list[PreferredSchedulingTerm] = Field(
        default_factory=list, max_length=16, description="Nodes the pods should run on."
    )


class LabelSelectorRequirement(ApiModel):
    """A label test of a label selector."""

    key: LabelKey = Field(description="Label key.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="In, NotIn, Exists or DoesNotExist."
    )
    values: list[LabelValue] = Field(
        default_factory=list,
        max_length=64,
        description="Values for In and NotIn (at least one); none for Exists and DoesNotExist.",
    )

    @model_validator(mode="after")
    def _values_fit(self) -> Self:
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"{self.key} {self.operator} needs at least one value")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"{self.key} {self.operator} takes no values; remove them")
        return self


class LabelSelector(ApiModel):
    """Labels that objects must have: all matchLabels and all matchExpressions."""

    match_labels: dict[LabelKey, LabelValue] | None = Field(
        default=None, max_length=16, description="Labels the objects must carry."
    )
    match_expressions: list[LabelSelectorRequirement] = Field(
        default_factory=list, max_length=16, description="Label tests that must all hold."
    )


class PodAffinityTerm(ApiModel):
    """Pods near (or away from) which the run's pods go, within a topology domain."""

    label_selector: LabelSelector | None = Field(
        default=None, description="The other pods, by their labels."
    )
    namespaces: list[Annotated[str, Field(max_length=MAX_LABEL_VALUE_LENGTH)]] = Field(
        default_factory=list,
        max_length=16,
        description="Namespaces of the other pods; the run's namespace when empty.",
    )
    namespace_selector: LabelSelector | None = Field(
        default=None, description="Namespaces of the other pods, by their labels."
    )
    topology_key: LabelKey = Field(
        description="Node label that defines the domain, e.g. kubernetes.io/hostname."
    )


class WeightedPodAffinityTerm(ApiModel):
    """A pod affinity term the scheduler prefers, with its weight."""

    weight: int = Field(ge=1, le=100, description="Weight of the preference, 1-100.")
    pod_affinity_term: PodAffinityTerm = Field(description="The term preferred.")


class PodAffinity(ApiModel):
    """Pods that the run's pods must or should be near (affinity) or away from (anti)."""

    required_during_scheduling_ignored_during_execution: list[PodAffinityTerm] = Field(
        default_factory=list, max_length=16, description="Terms that must hold."
    )
    preferred_during_scheduling_ignored_during_execution: list[WeightedPodAffinityTerm] = Field(
        default_factory=list, max_length=16, description="Terms that should hold."
    )


class Affinity(ApiModel):
    """Node affinity, pod affinity and pod anti-affinity, as in a Pod spec."""

    node_affinity: NodeAffinity | None = Field(
        default=None, description="Which nodes the pods must or should run on."
    )
    pod_affinity: PodAffinity | None = Field(
        default=None, description="Pods the run's pods must or should run near."
    )
    pod_anti_affinity: PodAffinity | None = Field(
        default=None, description="Pods the run's pods must or should run away from."
    )


class SchedulingSpec(ApiModel):
    """Where the pods run, how they rank, and the Kueue queue that admits the workload."""

    queue_name: str | None = Field(
        default=None,
        min_length=1,
        # A LocalQueue's name (Kueue checks it as an object name) that is also a label value.
        max_length=MAX_LABEL_VALUE_LENGTH,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description=(
            "Kueue LocalQueue in the run's namespace. The worker Job (and the inference "
            "Deployment, for serve.scheduling or when it falls back to this) is labelled "
            "kueue.x-k8s.io/queue-name and created suspended; it starts when Kueue admits it, "
            "and the run shows Queued until then."
        ),
    )
    priority_class_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_NAME_LENGTH,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="PriorityClass of the pods (Kueue also ranks queued workloads by it).",
    )
    node_selector: dict[LabelKey, LabelValue] | None = Field(
        default=None,
        max_length=32,
        description="Node labels the pods require, e.g. {cloud.google.com/gke-nodepool: cpu}.",
    )
    tolerations: list[Toleration] = Field(
        default_factory=list,
        max_length=32,
        description="Taints the pods tolerate, e.g. those of a dedicated or GPU node pool.",
    )
    affinity: Affinity | None = Field(
        default=None, description="Node and pod affinity of the pods, as in a Pod spec."
    )


class OutputSpec(ApiModel):
    """Where trajectories, results and bundles are written."""

    url: str | None = Field(
        default=None,
        max_length=512,
        description=(
            "Object storage prefix: s3://bucket/prefix or gs://bucket/prefix. The operator's "
            "default when unset. The run writes under <url>/<namespace>/<name>-<uid>/."
        ),
    )
    endpoint: str | None = Field(
        default=None,
        max_length=MAX_URL_LENGTH,
        description="S3 endpoint for S3-compatible stores, e.g. https://minio.example.com:9000.",
    )
    credentials_secret: SecretName | None = Field(
        default=None,
        description=(
            "Secret whose keys become env vars of the pods that read and write storage, e.g. "
            "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION."
        ),
    )


class RolloutSpec(ApiModel):
    """An Osmosis 0.3 workspace's rollout (`rollouts/<name>/`, a uv project whose entrypoint
    serves the rollout protocol), run instead of mcp/ tools and reward functions."""

    name: str = Field(
        min_length=1,
        max_length=128,
        pattern=ROLLOUT_NAME_PATTERN,
        description=(
            "Directory under rollouts/ (relative to repo.path) holding the rollout project, "
            "as [experiment].rollout of an eval config."
        ),
    )
    entrypoint: str = Field(
        default="main.py",
        min_length=1,
        max_length=512,
        description=(
            "Python file under rollouts/<name>/ that serves the rollout, as "
            "[experiment].entrypoint of an eval config."
        ),
    )
    env: dict[Annotated[str, Field(max_length=128, pattern=ENV_NAME_PATTERN)],
              Annotated[str, Field(max_length=4096)]] = Field(
        default_factory=dict,
        max_length=64,
        description=(
            "Plain environment variables of the rollout server, as [env] of an eval config. "
            "Names starting with _OSMOSIS_ are reserved."
        ),
    )
    secrets: list[SecretEnv] = Field(
        default_factory=list,
        max_length=32,
        description=(
            "Variables of the rollout server whose values come from Secrets, as [secrets] of "
            "an eval config; rolloutctl run reads them from its own environment by env name. "
            "The model key never goes here: the gateway holds it."
        ),
    )


class RolloutRunSpec(ApiModel):
    """A batch of agentic rollouts over a dataset, scored by the repository's functions.

    Once a run has started, only suspend and ttlSecondsAfterFinished may change.
    """

    repo: RepoSpec = Field(description="The repository with tools, scorers and dataset.")
    dataset: DatasetSpec = Field(
        default_factory=DatasetSpec, description="Which rows to run and how many samples per row."
    )
    model: ModelSpec = Field(description="The policy model the agent loop calls.")
    agent: AgentSpec = Field(default_factory=AgentSpec, description="Agent loop limits.")
    scoring: ScoringSpec = Field(
        default_factory=ScoringSpec, description="Reward and rubric functions to run."
    )
    rollout: RolloutSpec | None = Field(
        default=None,
        description=(
            "Run an Osmosis 0.3 workspace's rollout server (its AgentWorkflow and Grader) "
            "behind the model gateway instead of mcp/ tools and reward functions."
        ),
    )
    workers: WorkersSpec = Field(
        default_factory=WorkersSpec, description="Sharding and sizing of the rollout workers."
    )
    sandbox: SandboxSpec = Field(
        default_factory=SandboxSpec,
        description="Isolation and network of the pods running user code.",
    )
    faults: FaultsSpec = Field(
        default_factory=FaultsSpec,
        description="Retries of masked rollouts and how many may remain masked.",
    )
    output: OutputSpec = Field(
        default_factory=OutputSpec, description="Object storage for trajectories and results."
    )
    scheduling: SchedulingSpec = Field(
        default_factory=SchedulingSpec,
        description=(
            "Kueue queue, priority and node placement of the run's pods; the inference server "
            "has its own in model.serve.scheduling."
        ),
    )
    suspend: bool = Field(
        default=False,
        description="Pause the run: running workers are stopped and resume where they left off.",
    )
    ttl_seconds_after_finished: int | None = Field(
        default=None,
        ge=0,
        description="Delete the RolloutRun this many seconds after it succeeds or fails.",
    )
