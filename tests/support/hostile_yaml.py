"""YAML that costs a careless loader dearly: an alias bomb and nesting far beyond any manifest."""

from __future__ import annotations


def alias_bomb(levels: int, width: int = 9) -> str:
    """A RolloutRun whose `levels` anchors each repeat the one before `width` times
    (`width ** levels` strings once expanded)."""
    lines = ["apiVersion: rollouts.dev/v1alpha1", "kind: RolloutRun", "metadata: {name: bomb}",
             "spec:", "  a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


DEEP_FLOW_LISTS = "kind: RolloutRun\nspec: " + "[" * 100_000 + "]" * 100_000 + "\n"
DEEP_FLOW_MAPS = "kind: RolloutRun\nspec: " + "{a: " * 100_000 + "1" + "}" * 100_000 + "\n"
DEEP_BLOCK_LISTS = "kind: RolloutRun\nspec:\n  " + "- " * 100_000 + "x\n"
DEEP_BLOCK_MAPS = "kind: RolloutRun\nspec:\n" + "".join(
    " " * depth + "a:\n" for depth in range(1, 1_000)
)
