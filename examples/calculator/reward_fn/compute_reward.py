"""Deterministic reward: does the number after `####` equal the ground truth?"""

import re

from osmosis_ai import osmosis_reward

_ANSWER = re.compile(r"####\s*(-?[\d,]*\.?\d+)")


def extract_solution(solution_str: str) -> str | None:
    matches = _ANSWER.findall(solution_str)
    return matches[-1].replace(",", "") if matches else None


@osmosis_reward
def numbers_match_reward(solution_str: str, ground_truth: str, extra_info: dict = None, **kwargs):
    """1.0 when the final `#### <number>` equals the ground truth within 1e-7, else 0.0."""
    extracted = extract_solution(solution_str)
    if extracted is None:
        return 0.0
    try:
        return 1.0 if abs(float(extracted) - float(ground_truth)) < 1e-7 else 0.0
    except ValueError:
        return 0.0
