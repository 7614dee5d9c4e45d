"""rollout-operator: agentic LLM rollouts on Kubernetes or locally, Osmosis compatible.

The package root re-exports the Osmosis SDK names (`osmosis_reward`, `osmosis_rubric`,
`evaluate_rubric` and its errors), so repos may also import them from here. Importing it stays
cheap: nothing heavy (litellm, kubernetes, kopf) is imported until it is used.
"""

from rollout_operator.runtime.osmosis_compat import (
    MissingAPIKeyError,
    ModelNotFoundError,
    ProviderRequestError,
    evaluate_rubric,
    osmosis_reward,
    osmosis_rubric,
)

__version__ = "0.1.0"

__all__ = [
    "MissingAPIKeyError",
    "ModelNotFoundError",
    "ProviderRequestError",
    "__version__",
    "evaluate_rubric",
    "osmosis_reward",
    "osmosis_rubric",
]
