#!/usr/bin/env bash
# Run the calculator example on this machine: `rolloutctl run` of examples/calculator/
# rolloutrun.local.yaml (20 prompts, 2 rollouts each, scored by the #### reward), with results in
# rollout-output/. Needs a model: an OpenAI-compatible endpoint (ROLLOUT_BASE_URL +
# ROLLOUT_MODEL, e.g. vLLM, SGLang or Ollama) or a provider key (OPENAI_API_KEY,
# ANTHROPIC_API_KEY, ... with ROLLOUT_MODEL).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="$here/../.venv/bin"
model="${ROLLOUT_MODEL:-gpt-5-mini}"
if [[ -z "${ROLLOUT_BASE_URL:-}" && -z "${OPENAI_API_KEY:-}${LITELLM_API_KEY:-}" && "$model" != */* ]]; then
  cat >&2 <<'MSG'
No model configured. Point the example at one of:
  an OpenAI-compatible server:  ROLLOUT_BASE_URL=http://localhost:8000/v1 ROLLOUT_MODEL=Qwen/Qwen3-8B make example
  a provider key:               OPENAI_API_KEY=sk-... make example   (or ROLLOUT_MODEL=anthropic/claude-sonnet-4-5 with ANTHROPIC_API_KEY)
MSG
  exit 2
fi
# The manifest with the chosen model (and the repo folder made absolute).
manifest="$(mktemp "${TMPDIR:-/tmp}/calculator-run.XXXXXX")"
trap 'rm -f "$manifest"' EXIT
"$bin/python" - "$here/calculator" "$model" "${ROLLOUT_BASE_URL:-}" > "$manifest" <<'PY'
import sys
from pathlib import Path

import yaml

folder, model, base_url = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
run = yaml.safe_load((folder / "rolloutrun.local.yaml").read_text())
run["spec"]["repo"]["url"] = str(folder)
run["spec"]["model"]["name"] = model
if base_url:
    run["spec"]["model"]["baseURL"] = base_url
yaml.safe_dump(run, sys.stdout, sort_keys=False)
PY
args=(run -f "$manifest")
if ! command -v bwrap >/dev/null 2>&1; then
  echo "bubblewrap (bwrap) is not installed: running the example's own tools without the" \
       "sandbox. Install bubblewrap to sandbox a repo's tools and scorers." >&2
  args+=(--no-sandbox)
fi
cd "$here/.."
exec "$bin/rolloutctl" "${args[@]}" "$@"
