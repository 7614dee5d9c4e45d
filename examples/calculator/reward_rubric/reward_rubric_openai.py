"""LLM judge: does the reply show its working and end with the right `#### <number>`?"""

import os

from osmosis_ai import evaluate_rubric, osmosis_rubric

RUBRIC = (
    "Score 1.0 if the response ends with '#### <number>' where the number equals the ground "
    "truth and the response briefly explains how it was obtained; 0.5 if the number is right "
    "but there is no explanation; 0.0 otherwise."
)


@osmosis_rubric
def calculator_rubric_openai(solution_str: str, ground_truth: str | None, extra_info: dict) -> float:
    model_info = {
        "provider": "openai",
        "model": os.getenv("RUBRIC_MODEL", "gpt-5-mini"),
        "api_key": os.getenv("OPENAI_API_KEY"),
    }
    return evaluate_rubric(
        rubric=RUBRIC,
        solution_str=solution_str,
        model_info=model_info,
        ground_truth=ground_truth,
        metadata=extra_info.get("metadata"),
    )
