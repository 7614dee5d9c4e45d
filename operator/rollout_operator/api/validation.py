"""Turning a RolloutRun spec into a model, or into messages that say what to fix.

`parse_spec` reports pydantic's errors with the YAML path a user wrote
(`spec.workers.shards: must be >= 1 (got -2)`); `spec_problems` adds the checks a schema cannot
express (URL schemes, paths that leave the repository, CIDRs, scorer references, resource
quantities out of any container's reach or above their limit). Both are used
by the operator, which cannot count on admission (the CRD may be older, or CEL not enforced),
and by `rolloutctl run` in local mode. Messages never repeat a URL, which may carry a token.
"""

from __future__ import annotations

import difflib
import hashlib
import ipaddress
import json
import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError

from rollout_operator.api import spec as spec_module
from rollout_operator.api.constants import MUTABLE_SPEC_FIELDS
from rollout_operator.api.quantity import is_extended_resource, parse_quantity
from rollout_operator.api.rollout_validation import rollout_problems
from rollout_operator.api.spec import ResourceRequirements, RolloutRunSpec
from rollout_operator.runtime.dataset import SUPPORTED_EXTENSIONS

SPEC_PATH = "spec"

_SCORER_REF = re.compile(
    r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
)
_SCP_LIKE = re.compile(r"^[\w.-]+@[\w.-]+:(?!//)")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)"
    r"(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*\.?$"
)
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")
_RESERVED_ENV_PREFIX = "ROLLOUT_"

# Pydantic adds these to an error's location for union members and validator wrappers; they are
# not keys a user wrote.
_UNION_TAGS = frozenset({"int", "str", "float", "bool", "constrained-str", "none", "list", "dict"})

_PATTERN_MEANINGS = {
    spec_module.DNS_SUBDOMAIN_PATTERN: (
        "must be a Kubernetes object name: lowercase letters, digits, '-' and '.', "
        "starting and ending with a letter or digit"
    ),
    spec_module.SECRET_KEY_PATTERN: "must be a Secret key: letters, digits, '-', '_' and '.'",
    spec_module.ENV_NAME_PATTERN: (
        "must be an environment variable name: letters, digits and '_', not starting with a digit"
    ),
    spec_module.RESOURCE_NAME_PATTERN: (
        "must be a resource name such as cpu, memory or nvidia.com/gpu"
    ),
    spec_module.LABEL_VALUE_PATTERN: (
        "must be a Kubernetes label value: at most 63 letters, digits, '-', '_' and '.', "
        "starting and ending with a letter or digit"
    ),
    spec_module.LABEL_KEY_PATTERN: (
        "must be a Kubernetes label key such as pool or nvidia.com/gpu.product: an optional "
        "DNS prefix and '/', then at most 63 letters, digits, '-', '_' and '.'"
    ),
}
_QUANTITY_MESSAGE = (
    "must be an integer or a quantity string such as '500m', '2' or '4Gi' (quote fractions: '0.5')"
)
# Bounds no container can use: beyond them a value is a typo (a missing or wrong unit).
MAX_BYTES = Decimal(2**50)  # 1Pi of memory or storage
MIN_MEMORY = Decimal(2**20)  # 1Mi: a bare number of memory is bytes, not MiB
MAX_COUNT = Decimal(100_000)  # CPUs, GPUs and other countable resources
_BYTE_RESOURCES = ("memory", "ephemeral-storage", "storage")
SERVE_GPU_RESOURCE = "nvidia.com/gpu"  # what spec.model.serve.gpus sets on the server


class SpecError(ValueError):
    """A spec that cannot run; `problems` holds one message per problem, each naming its field."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid RolloutRun spec: " + "; ".join(self.problems))


# --- parsing ---------------------------------------------------------------------------------


def parse_spec(obj: Mapping[str, Any] | Any, *, path: str = SPEC_PATH) -> RolloutRunSpec:
    """The spec `obj` (a mapping with camelCase keys) as a model, or `SpecError`."""
    if not isinstance(obj, Mapping):
        raise SpecError([f"{path}: must be a mapping of fields (got {_kind(obj)})"])
    try:
        return RolloutRunSpec.model_validate(plain_data(obj))
    except ValidationError as exc:
        raise SpecError(validation_messages(exc, path=path)) from None


def plain_data(value: Any) -> Any:
    """`value` with every mapping a dict and every tuple a list, as JSON would give it.

    Kubernetes clients hand out mapping views (Kopf's `Spec`) that strict validation refuses.
    """
    if isinstance(value, Mapping):
        return {key: plain_data(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain_data(item) for item in value]
    return value


def validate_spec(
    obj: Mapping[str, Any] | Any, *, cluster: bool, allow_file_repos: bool
) -> RolloutRunSpec:
    """`parse_spec` then `spec_problems`: a spec that is well-formed and allowed here."""
    parsed = parse_spec(obj)
    problems = spec_problems(parsed, cluster=cluster, allow_file_repos=allow_file_repos)
    if problems:
        raise SpecError(problems)
    return parsed


def validation_messages(
    exc: ValidationError, *, path: str = SPEC_PATH, model: type[BaseModel] = RolloutRunSpec
) -> list[str]:
    """One message per field in error, located by the camelCase path the user wrote."""
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for error in exc.errors(include_url=False):
        loc = [part for part in error["loc"] if not _is_wrapper_tag(part)]
        grouped.setdefault(_format_path(path, loc), []).append({**error, "loc": tuple(loc)})
    messages: list[str] = []
    for where, errors in grouped.items():
        for text in _describe(errors, model):
            message = f"{where}: {text}"
            if message not in messages:
                messages.append(message)
    return messages


def _is_wrapper_tag(part: str | int) -> bool:
    return isinstance(part, str) and (part in _UNION_TAGS or "[" in part)


def _format_path(root: str, loc: Iterable[str | int]) -> str:
    text = root
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            text += f".{part}"
        else:
            text += f"[{json.dumps(part)}]"
    return text


def _describe(errors: Sequence[Mapping[str, Any]], model: type[BaseModel]) -> list[str]:
    patterns = {e.get("ctx", {}).get("pattern") for e in errors}
    if spec_module.QUANTITY_PATTERN in patterns or (
        len(errors) > 1 and {e["type"] for e in errors} <= {"int_type", "string_type"}
    ):
        return [f"{_QUANTITY_MESSAGE}{_got(errors[0]['input'])}"]
    return [_describe_one(e, model) for e in errors]


def _describe_one(error: Mapping[str, Any], model: type[BaseModel]) -> str:
    kind = error["type"]
    ctx: Mapping[str, Any] = error.get("ctx", {})
    value = error.get("input")
    got = _got(value)
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return _unknown_field(error["loc"], model)
    bounds = {
        "greater_than_equal": (">=", "ge"),
        "greater_than": (">", "gt"),
        "less_than_equal": ("<=", "le"),
        "less_than": ("<", "lt"),
    }
    if kind in bounds:
        sign, key = bounds[kind]
        return f"must be {sign} {_number(ctx[key])}{got}"
    if kind == "string_too_short":
        if ctx.get("min_length") == 1:
            return "must not be empty"
        return f"must be at least {ctx['min_length']} characters"
    if kind == "string_too_long":
        return f"must be at most {ctx['max_length']} characters (got {len(str(value))})"
    if kind == "too_short":
        if ctx.get("min_length") == 1:
            return "must not be empty; omit it to use the default"
        return f"must have at least {ctx['min_length']} entries"
    if kind == "too_long":
        return f"must have at most {ctx['max_length']} entries (got {ctx.get('actual_length')})"
    if kind == "string_pattern_mismatch":
        meaning = _PATTERN_MEANINGS.get(ctx.get("pattern", ""), f"must match {ctx.get('pattern')}")
        return f"{meaning}{got}"
    if kind == "literal_error":
        return f"must be {ctx['expected']}{got}"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    type_words = {
        "int_type": "an integer",
        "int_parsing": "an integer",
        "int_from_float": "an integer",
        "float_type": "a number",
        "float_parsing": "a number",
        "bool_type": "true or false",
        "bool_parsing": "true or false",
        "string_type": "a string",
        "list_type": "a list",
        "dict_type": "a mapping",
        "model_type": "a mapping of fields",
        "model_attributes_type": "a mapping of fields",
    }
    if kind in type_words:
        return f"must be {type_words[kind]}{got}"
    text = str(error["msg"])
    return text[:1].lower() + text[1:]


def _number(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _got(value: Any) -> str:
    if isinstance(value, bool):
        return f" (got {str(value).lower()})"
    if isinstance(value, int | float):
        return f" (got {value})"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return f" (got {json.dumps(shown)})"
    if value is None:
        return " (got null)"
    return f" (got {_kind(value)})"


def _kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if value is None:
        return "null"
    return f"a {type(value).__name__}"


def _unknown_field(loc: Sequence[str | int], model: type[BaseModel]) -> str:
    name = str(loc[-1])
    parent = _model_at(model, loc[:-1])
    if parent is None:
        return "unknown field; remove it"
    known = [field.alias or key for key, field in parent.model_fields.items()]
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        return f"unknown field; did you mean {close[0]!r}?"
    return "unknown field; expected one of " + ", ".join(known)


def _model_at(model: type[BaseModel], loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The model class found by following `loc` (aliases, list indices, map keys) from `model`."""
    current: Any = model
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = next((f for k, f in current.model_fields.items() if part in (k, f.alias)), None)
            if field is None:
                return None
            current = field.annotation
        else:
            current = _element_type(current)
        current = _strip_optional(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _strip_optional(annotation: Any) -> Any:
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            options = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(options) != 1:
                return annotation
            annotation = options[0]
        else:
            return annotation


def _element_type(annotation: Any) -> Any:
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin is list and args:
        return args[0]
    if origin is dict and len(args) == 2:
        return args[1]
    return None


# --- semantic checks -------------------------------------------------------------------------

RepoUrlKind = Literal["https", "http", "ssh", "scp", "file", "local", "other"]


def repo_url_kind(url: str) -> RepoUrlKind:
    """How git would reach `url`: https, http, ssh, scp-like (git@host:path), file, local path."""
    text = url.strip()
    if _SCP_LIKE.match(text):
        return "scp"
    if "://" not in text:
        return "local"
    scheme = text.split("://", 1)[0].lower()
    if scheme in ("https", "http", "ssh", "file"):
        return typing.cast(RepoUrlKind, scheme)
    return "other"


def spec_problems(spec: RolloutRunSpec, *, cluster: bool, allow_file_repos: bool) -> list[str]:
    """What makes a well-formed spec unusable here; each message names the field and the fix.

    `cluster` is True in the operator. Local repositories and `file://` storage are allowed
    outside a cluster, and inside one only with the operator's `allow_file_repos` switch
    (development and tests).
    """
    local_ok = allow_file_repos or not cluster
    problems: list[str] = []
    problems += _repo_problems(spec, cluster=cluster, local_ok=local_ok)
    problems += _dataset_problems(spec, local_ok=local_ok)
    problems += _model_problems(spec)
    problems += _scoring_problems(spec)
    problems += rollout_problems(spec)
    problems += _sandbox_problems(spec)
    problems += _output_problems(spec, local_ok=local_ok)
    problems += _resources_problems(spec)
    return problems


def _repo_problems(spec: RolloutRunSpec, *, cluster: bool, local_ok: bool) -> list[str]:
    repo = spec.repo
    where = f"{SPEC_PATH}.repo"
    problems: list[str] = []
    url = repo.url.strip()
    kind = repo_url_kind(url)
    allowed = "https://host/org/repo.git, ssh://git@host/org/repo.git or git@host:org/repo.git"
    if url != repo.url or any(c.isspace() for c in url):
        problems.append(f"{where}.url: must not contain spaces")
    if url.startswith("-"):
        problems.append(f"{where}.url: must not start with '-'")
    elif kind == "other":
        scheme = url.split("://", 1)[0]
        problems.append(f"{where}.url: scheme {scheme!r} is not supported; use {allowed}")
    elif kind == "http" and cluster:
        problems.append(f"{where}.url: plain http:// is not allowed; use https:// or ssh://")
    elif kind in ("file", "local") and not local_ok:
        problems.append(
            f"{where}.url: a local path or file:// URL is only allowed when the operator runs "
            f"with allow_file_repos (development); use {allowed}"
        )
    if kind in ("https", "http") and _userinfo(url):
        problems.append(
            f"{where}.url: must not contain credentials (user@ or user:token@); put the token "
            f"in a Secret under key 'token' and name it in {where}.credentialsSecret"
        )
    elif kind == "ssh" and ":" in _userinfo(url):
        problems.append(
            f"{where}.url: must not contain a password; put an SSH key in a Secret under key "
            f"'ssh-privatekey' and name it in {where}.credentialsSecret"
        )
    revision = repo.revision
    if revision is not None and (revision.startswith("-")
                                 or any(c.isspace() for c in revision)):
        problems.append(
            f"{where}.revision: must be a branch, tag or commit without spaces or a leading '-'"
            f"{_got(revision)}"
        )
    problems += _relative_path_problems(f"{where}.path", repo.path)
    return problems


def _dataset_problems(spec: RolloutRunSpec, *, local_ok: bool) -> list[str]:
    dataset = spec.dataset
    where = f"{SPEC_PATH}.dataset"
    problems: list[str] = []
    if dataset.path is not None:
        path_problems = _relative_path_problems(f"{where}.path", dataset.path)
        if not dataset.path.strip():
            path_problems.append(
                f"{where}.path: must name a file, e.g. test_data.jsonl; omit it for the default"
            )
        problems += path_problems
        if not path_problems:
            problems += _extension_problems(f"{where}.path", dataset.path)
    if dataset.url is not None:
        url_problems = _storage_url_problems(f"{where}.url", dataset.url, local_ok=local_ok)
        problems += url_problems
        if not url_problems:
            problems += _extension_problems(f"{where}.url", urlsplit(dataset.url).path)
    return problems


def _model_problems(spec: RolloutRunSpec) -> list[str]:
    model = spec.model
    where = f"{SPEC_PATH}.model"
    problems: list[str] = []
    if model.name is not None and (not model.name.strip() or model.name != model.name.strip()):
        problems.append(f"{where}.name: must be a model name without surrounding spaces")
    if model.base_url is not None:
        problems += _http_url_problems(f"{where}.baseURL", model.base_url)
    if model.serve is not None and model.serve.image is not None:
        problems += _image_problems(f"{where}.serve.image", model.serve.image)
    return problems


def _scoring_problems(spec: RolloutRunSpec) -> list[str]:
    scoring = spec.scoring
    where = f"{SPEC_PATH}.scoring"
    problems: list[str] = []
    seen: set[str] = set()
    for i, ref in enumerate(scoring.functions or []):
        if not _SCORER_REF.match(ref):
            problems.append(
                f"{where}.functions[{i}]: must be module.path:function, e.g. "
                f"reward_fn.compute_reward:numbers_match_reward{_got(ref)}"
            )
        elif ref in seen:
            problems.append(f"{where}.functions[{i}]: {ref!r} is listed twice; remove one")
        seen.add(ref)
    envs: set[str] = set()
    for i, secret in enumerate(scoring.secrets):
        if secret.env.upper().startswith(_RESERVED_ENV_PREFIX):
            problems.append(
                f"{where}.secrets[{i}].env: names starting with {_RESERVED_ENV_PREFIX} are "
                f"reserved for the operator; choose another name (got {secret.env!r})"
            )
        if secret.env in envs:
            problems.append(
                f"{where}.secrets[{i}].env: {secret.env!r} is set twice; keep one entry"
            )
        envs.add(secret.env)
    return problems


def _sandbox_problems(spec: RolloutRunSpec) -> list[str]:
    sandbox = spec.sandbox
    where = f"{SPEC_PATH}.sandbox"
    problems: list[str] = []
    if sandbox.image is not None:
        problems += _image_problems(f"{where}.image", sandbox.image)
    for i, rule in enumerate(sandbox.egress):
        rule_path = f"{where}.egress[{i}]"
        if rule.cidr is not None:
            problems += _cidr_problems(f"{rule_path}.cidr", rule.cidr)
        if rule.host is not None:
            problems += _host_problems(f"{rule_path}.host", rule.host)
        if len(set(rule.ports)) != len(rule.ports):
            problems.append(f"{rule_path}.ports: lists a port twice; remove the duplicate")
    return problems


def _output_problems(spec: RolloutRunSpec, *, local_ok: bool) -> list[str]:
    output = spec.output
    where = f"{SPEC_PATH}.output"
    problems: list[str] = []
    if output.url is not None:
        problems += _storage_url_problems(f"{where}.url", output.url, local_ok=local_ok)
    if output.endpoint is not None:
        problems += _http_url_problems(f"{where}.endpoint", output.endpoint)
        if output.url is not None and not output.url.startswith("s3://"):
            problems.append(
                f"{where}.endpoint: applies to s3:// URLs only; remove it or use an s3:// url"
            )
    return problems


def _resources_problems(spec: RolloutRunSpec) -> list[str]:
    """Every `resources` of the spec: quantities Kubernetes accepts, within what a container
    can use, and no request above its limit."""
    problems: list[str] = []
    for where, resources in (
        (f"{SPEC_PATH}.workers.resources", spec.workers.resources),
        (f"{SPEC_PATH}.sandbox.resources", spec.sandbox.resources),
    ):
        if resources is not None:
            problems += _requirements_problems(where, resources)
    serve = spec.model.serve
    if serve is not None and serve.resources is not None:
        # The server's GPU limit is spec.model.serve.gpus (the manifest builder sets it).
        gpus = {SERVE_GPU_RESOURCE: (serve.gpus, f"{SPEC_PATH}.model.serve.gpus")}
        problems += _requirements_problems(
            f"{SPEC_PATH}.model.serve.resources", serve.resources, gpus if serve.gpus else {}
        )
    return problems


def _requirements_problems(
    where: str, resources: ResourceRequirements, fixed: Mapping[str, tuple[int, str]] | None = None
) -> list[str]:
    """`fixed` names limits set elsewhere in the spec: resource -> (amount, field)."""
    problems: list[str] = []
    amounts: dict[str, dict[str, Decimal]] = {"requests": {}, "limits": {}}
    shown: dict[str, dict[str, str]] = {"requests": {}, "limits": {}}
    invalid: set[str] = set()
    for kind, given in (("requests", resources.requests), ("limits", resources.limits)):
        for name, value in (given or {}).items():
            field = _format_path(where, [kind, name])
            try:
                amount = parse_quantity(value)
            except ValueError:
                problems.append(f"{field}: {_QUANTITY_MESSAGE}{_got(value)}")
                invalid.add(name)
                continue
            problem = _amount_problem(name, kind, value, amount)
            if problem:
                problems.append(f"{field}: {problem}")
                invalid.add(name)
            else:
                amounts[kind][name], shown[kind][name] = amount, str(value)
    limit_fields = {name: _format_path(where, ["limits", name]) for name in amounts["limits"]}
    for name, (count, source) in (fixed or {}).items():
        if name in amounts["limits"] and amounts["limits"][name] != count:
            problems.append(
                f"{limit_fields[name]}: {shown['limits'][name]} differs from {source} "
                f"({count}), which sets it; remove it or change {source}"
            )
        amounts["limits"][name] = Decimal(count)
        shown["limits"][name] = str(count)
        limit_fields[name] = source
    for name, request in amounts["requests"].items():
        if name in invalid:
            continue
        field = _format_path(where, ["requests", name])
        limit_field = limit_fields.get(name, _format_path(where, ["limits", name]))
        limit = amounts["limits"].get(name)
        not_overcommitted = is_extended_resource(name) or name.startswith("hugepages-")
        if limit is None:
            if not_overcommitted:
                problems.append(
                    f"{limit_field}: is required when {name} is requested; set it to "
                    f"{shown['requests'][name]} (Kubernetes does not overcommit {name})"
                )
        elif request > limit:
            problems.append(
                f"{field}: {shown['requests'][name]} is more than its limit "
                f"{shown['limits'][name]}; lower the request or raise {limit_field}"
            )
        elif request != limit and not_overcommitted:
            problems.append(
                f"{field}: must equal {limit_field} ({shown['limits'][name]}); Kubernetes "
                f"does not overcommit {name}"
            )
    return problems


def _amount_problem(name: str, kind: str, value: int | str, amount: Decimal) -> str | None:
    """What is wrong with one amount of resource `name`, or None."""
    if amount < 0:
        return f"must not be negative{_got(value)}"
    if name in _BYTE_RESOURCES or name.startswith("hugepages-"):
        if amount > MAX_BYTES:
            return (f"{value} is more than 1Pi; no container gets that much {name}: give the "
                    "amount in Mi or Gi, e.g. 4Gi")
        if name == "memory" and amount < MIN_MEMORY and (amount > 0 or kind == "limits"):
            if amount == 0:
                return "must be at least 1Mi; remove it for the default limit"
            if str(value).isdigit():
                return f"{value} is {value} bytes, less than 1Mi; did you mean '{value}Mi'?"
            return f"{value} is less than 1Mi; give memory in Mi or Gi, e.g. 512Mi"
        return None
    if amount > MAX_COUNT:
        return (f"{value} is more than {MAX_COUNT:,} {name}; no container gets that many: give "
                "the amount one container needs")
    if is_extended_resource(name) and amount != amount.to_integral_value():
        return f"must be a whole number of {name}{_got(value)}"
    return None


def _shown(given: Mapping[str, int | str] | None, name: str) -> str:
    return str((given or {}).get(name))


def _relative_path_problems(where: str, path: str) -> list[str]:
    parts = re.split(r"[/\\]", path)
    if path.startswith(("/", "\\", "~")) or re.match(r"^[A-Za-z]:", path):
        return [f"{where}: must be relative to the repository, e.g. examples/calculator"]
    if ".." in parts:
        return [f"{where}: must not contain '..'; name a folder or file inside the repository"]
    if "\x00" in path:
        return [f"{where}: must not contain NUL characters"]
    return []


def _extension_problems(where: str, path: str) -> list[str]:
    if path.lower().endswith(SUPPORTED_EXTENSIONS):
        return []
    kinds = ", ".join(SUPPORTED_EXTENSIONS[:-1]) + " or " + SUPPORTED_EXTENSIONS[-1]
    return [f"{where}: must be a {kinds} file{_got(path)}"]


def _storage_url_problems(where: str, url: str, *, local_ok: bool) -> list[str]:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    examples = "s3://bucket/prefix or gs://bucket/prefix"
    if scheme in ("s3", "gs"):
        bucket = urlsplit(url).netloc
        if _userinfo(url):
            return [
                f"{where}: must not contain credentials; use {SPEC_PATH}.output.credentialsSecret"
            ]
        if not _BUCKET.match(bucket):
            return [
                f"{where}: bucket name must be 3-63 lowercase letters, digits, '.', '-' or '_' "
                f"(got {bucket!r}); use {examples}"
            ]
        return []
    if scheme == "file":
        if not local_ok:
            return [
                f"{where}: file:// is only allowed outside a cluster or with the operator's "
                f"allow_file_repos (development); use {examples}"
            ]
        if not urlsplit(url).path.startswith("/"):
            return [f"{where}: must be an absolute file:///path"]
        return []
    shown = f"scheme {scheme!r}" if scheme else "no scheme"
    return [f"{where}: {shown} is not supported; use {examples}"]


def _http_url_problems(where: str, url: str) -> list[str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [f"{where}: must be an http:// or https:// URL with a host, e.g. https://host/v1"]
    if parts.username or parts.password:
        return [f"{where}: must not contain credentials; reference them through a Secret"]
    return []


def _image_problems(where: str, image: str) -> list[str]:
    if not image.strip() or any(c.isspace() for c in image):
        return [f"{where}: must be an image reference without spaces, e.g. ghcr.io/org/image:tag"]
    return []


def _cidr_problems(where: str, cidr: str) -> list[str]:
    try:
        network = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return [f"{where}: must be an IP range such as 10.0.0.0/8 or 2001:db8::/32{_got(cidr)}"]
    if "/" not in cidr:
        return [f"{where}: must include a prefix length; use {network}{_got(cidr)}"]
    try:
        ipaddress.ip_network(cidr)
    except ValueError:
        return [f"{where}: has host bits set; use {network}{_got(cidr)}"]
    return []


def _host_problems(where: str, host: str) -> list[str]:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return [f"{where}: is an IP address; use cidr: {host}/32 (or /128) instead"]
    if "://" in host or "/" in host or ":" in host:
        return [f"{where}: must be a DNS name without scheme, port or path; put ports in ports"]
    if not _HOSTNAME.match(host):
        return [f"{where}: must be a DNS name such as api.example.com{_got(host)}"]
    return []


def _userinfo(url: str) -> str:
    netloc = url.split("://", 1)[1].split("/", 1)[0] if "://" in url else ""
    return netloc.rsplit("@", 1)[0] if "@" in netloc else ""


# --- edit detection --------------------------------------------------------------------------


def spec_hash(spec: RolloutRunSpec) -> str:
    """A stable hash of what a run may not change: the spec without suspend and TTL.

    Values equal to their defaults are left out, so writing a default explicitly, omitting it,
    or a later version adding a field with a default does not count as an edit.
    """
    mutable = {
        name
        for name, field in RolloutRunSpec.model_fields.items()
        if (field.alias or name) in MUTABLE_SPEC_FIELDS
    }
    fixed = spec.model_dump(
        mode="json", by_alias=True, exclude_defaults=True, exclude_none=True, exclude=mutable
    )
    canonical = json.dumps(fixed, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
