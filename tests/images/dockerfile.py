"""A small parser of Dockerfiles and `.dockerignore` files, enough to check what images hold.

It understands line continuations, comments, stages (`FROM ... AS name`), the JSON and shell
forms of instructions, `ENV` in both forms, `COPY`/`ADD` flags and `USER`. Variables are not
expanded: the project's Dockerfiles are written with literal values so that tests can read them.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import PurePosixPath


@dataclass(frozen=True, slots=True)
class Instruction:
    keyword: str  # upper case
    value: str  # the text after the keyword, continuations joined
    line: int  # 1-based line where the instruction starts

    def exec_form(self) -> list[str] | None:
        """The JSON (exec) form's words, or None for the shell form."""
        text = self.value.strip()
        if not text.startswith("["):
            return None
        try:
            words = json.loads(text)
        except json.JSONDecodeError:
            return None
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            return None
        return words

    def words(self) -> list[str]:
        """The exec form's words, or the shell form split as a POSIX shell would."""
        exec_form = self.exec_form()
        return exec_form if exec_form is not None else shlex.split(self.value, comments=False)


@dataclass(frozen=True, slots=True)
class Copy:
    sources: list[str]
    dest: str
    from_stage: str | None
    flags: dict[str, str]


@dataclass(slots=True)
class Stage:
    base: str
    name: str | None
    index: int
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def env(self) -> dict[str, str]:
        """Every `ENV` of the stage, later ones winning (values unexpanded)."""
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            values.update(parse_env(instruction.value))
        return values

    def copies(self) -> list[Copy]:
        return [parse_copy(i) for i in self.instructions if i.keyword in ("COPY", "ADD")]

    def run_commands(self) -> list[str]:
        return [i.value for i in self.all("RUN")]

    @property
    def user(self) -> str | None:
        instruction = self.last("USER")
        return instruction.value.strip() if instruction else None


@dataclass(frozen=True, slots=True)
class Dockerfile:
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, ref: str) -> Stage | None:
        """The stage named `ref` or numbered `ref` (as `COPY --from=` takes it)."""
        for stage in self.stages:
            if stage.name == ref.lower() or str(stage.index) == ref:
                return stage
        return None


_LINE_CONTINUATION = re.compile(r"\\\s*$")


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, text) of each instruction: comments and blank lines dropped,
    continuation lines joined (comment lines inside a continuation are skipped, as Docker does)."""
    result: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if _LINE_CONTINUATION.search(raw):
            pending.append(_LINE_CONTINUATION.sub("", raw))
            continue
        pending.append(raw)
        result.append((start, " ".join(part.strip() for part in pending if part.strip())))
        pending = []
    if pending:
        result.append((start, " ".join(part.strip() for part in pending if part.strip())))
    return result


def parse_dockerfile(text: str) -> Dockerfile:
    stages: list[Stage] = []
    for number, line in logical_lines(text):
        keyword, _, value = line.partition(" ")
        instruction = Instruction(keyword.upper(), value.strip(), number)
        if instruction.keyword == "FROM":
            base, name = _parse_from(instruction.value)
            stages.append(Stage(base=base, name=name, index=len(stages)))
        elif instruction.keyword == "ARG" and not stages:
            continue  # a global ARG before the first FROM
        elif not stages:
            raise ValueError(f"line {number}: {instruction.keyword} before the first FROM")
        else:
            stages[-1].instructions.append(instruction)
    if not stages:
        raise ValueError("no FROM instruction")
    return Dockerfile(stages)


def _parse_from(value: str) -> tuple[str, str | None]:
    words = [w for w in value.split() if not w.startswith("--")]
    if len(words) == 3 and words[1].lower() == "as":
        return words[0], words[2].lower()
    if len(words) == 1:
        return words[0], None
    raise ValueError(f"cannot parse FROM {value!r}")


def parse_env(value: str) -> dict[str, str]:
    """`ENV a=1 b="two words"` or the legacy `ENV a one value`."""
    words = shlex.split(value)
    if words and "=" not in words[0]:
        name, _, rest = value.strip().partition(" ")
        return {name: rest.strip()}
    pairs: dict[str, str] = {}
    for word in words:
        name, sep, val = word.partition("=")
        if not sep:
            raise ValueError(f"ENV {value!r}: {word!r} is not NAME=VALUE")
        pairs[name] = val
    return pairs


def parse_copy(instruction: Instruction) -> Copy:
    words = instruction.words()
    flags: dict[str, str] = {}
    while words and words[0].startswith("--"):
        name, _, val = words.pop(0)[2:].partition("=")
        flags[name] = val
    if len(words) < 2:
        raise ValueError(f"line {instruction.line}: {instruction.keyword} needs a source and a "
                         "destination")
    return Copy(sources=words[:-1], dest=words[-1], from_stage=flags.get("from"), flags=flags)


def split_user(user: str) -> tuple[str, str | None]:
    name, _, group = user.partition(":")
    return name, group or None


def image_parts(reference: str) -> tuple[str, str | None]:
    """(repository, tag) of an image reference; the digest, if any, is dropped."""
    reference = reference.split("@", 1)[0]
    last = reference.rsplit("/", 1)[-1]
    if ":" in last:
        repository, tag = reference.rsplit(":", 1)
        return repository, tag
    return reference, None


# .dockerignore ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IgnoreRule:
    pattern: re.Pattern[str]
    exclude: bool  # False for a `!` exception


def parse_dockerignore(text: str) -> list[IgnoreRule]:
    rules: list[IgnoreRule] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclude = not line.startswith("!")
        pattern = line.lstrip("!").strip().strip("/")
        pattern = str(PurePosixPath(pattern)) if pattern else pattern
        rules.append(IgnoreRule(re.compile(_glob_to_regex(pattern)), exclude))
    return rules


def _glob_to_regex(pattern: str) -> str:
    """Docker's matching: `*` and `?` stay within one path element, `**` spans any number."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out.append(r"(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(r".*")
            i += 2
        elif char == "*":
            out.append(r"[^/]*")
            i += 1
        elif char == "?":
            out.append(r"[^/]")
            i += 1
        else:
            out.append(re.escape(char))
            i += 1
    return "^" + "".join(out) + "$"


def is_ignored(path: str, rules: list[IgnoreRule]) -> bool:
    """Whether `path` (relative to the build context) is left out of the context.

    A rule matches a path or any of its parent folders; the last matching rule decides.
    """
    clean = str(PurePosixPath(path))
    parts = clean.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for rule in rules:
        if any(rule.pattern.match(candidate) for candidate in candidates):
            ignored = rule.exclude
    return ignored
