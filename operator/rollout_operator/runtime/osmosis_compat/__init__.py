"""The Osmosis SDK surface that Local Rollout repos import: decorators, `evaluate_rubric`, errors.

`install_osmosis_ai()` makes these importable as `osmosis_ai` in user code. Importing this package
is cheap: litellm is imported only when a judge is called.
"""

from rollout_operator.runtime.osmosis_compat.decorators import (
    REWARD_MARKER,
    RUBRIC_MARKER,
    is_osmosis_reward,
    is_osmosis_rubric,
    osmosis_reward,
    osmosis_rubric,
)
from rollout_operator.runtime.osmosis_compat.judge_errors import (
    MissingAPIKeyError,
    ModelNotFoundError,
    ProviderRequestError,
)
from rollout_operator.runtime.osmosis_compat.rubric import (
    ModelInfo,
    RewardRubricRunResult,
    RubricResult,
    evaluate_rubric,
)
from rollout_operator.runtime.osmosis_compat.shim import install_osmosis_ai

__all__ = [
    "REWARD_MARKER",
    "RUBRIC_MARKER",
    "MissingAPIKeyError",
    "ModelInfo",
    "ModelNotFoundError",
    "ProviderRequestError",
    "RewardRubricRunResult",
    "RubricResult",
    "evaluate_rubric",
    "install_osmosis_ai",
    "is_osmosis_reward",
    "is_osmosis_rubric",
    "osmosis_reward",
    "osmosis_rubric",
]
