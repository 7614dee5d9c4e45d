"""Generated run names, `adjective-animal-N`, for an `eval run` without `--name`."""

from __future__ import annotations

import random
import re
from pathlib import Path

ADJECTIVES = ("amber", "brave", "calm", "eager", "gentle", "lucky", "nimble", "quiet", "swift",
              "witty")
ANIMALS = ("badger", "crane", "falcon", "heron", "lynx", "otter", "panda", "raven", "tiger",
           "wombat")
VALID_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def generate_name(root: Path, rng: random.Random | None = None) -> str:
    """A name not yet used under `root`."""
    rng = rng or random.Random()
    while True:
        name = f"{rng.choice(ADJECTIVES)}-{rng.choice(ANIMALS)}-{rng.randint(1, 999)}"
        if not (root / name).exists():
            return name
