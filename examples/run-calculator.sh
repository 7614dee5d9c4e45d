#!/usr/bin/env bash
# Run the calculator example on this machine: `rolloutctl run` of examples/calculator/
# rolloutrun.local.yaml (20 prompts, 2 rollouts each, scored by the #### reward), with results in
# rollout-output/. Needs a model: an OpenAI-compatible endpoint (ROLLOUT_BASE_URL +
# ROLLOUT_MODEL, e.g. vLLM, SGLang or Ollama) or a provider key (OPENAI_API_KEY,
# ANTHROPIC_API_KEY, ... with ROLLOUT_MODEL). It runs the rolloutctl of $ROLLOUT_VENV, else of
# .venv-example (`make example` installs the runtime there), else of .venv (`make install`).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${ROLLOUT_VENV:-}"
if [[ -z "$venv" ]]; then
  venv="$here/../.venv-example"
  [[ -x "$venv/bin/rolloutctl" ]] || venv="$here/../.venv"
fi
[[ "$venv" = /* ]] || venv="$PWD/$venv"
bin="$venv/bin"
if [[ ! -x "$bin/rolloutctl" ]]; then
  echo "rolloutctl is not installed in $venv: run \`make example\` (or \`make install\`)" >&2
  exit 2
fi
model="${ROLLOUT_MODEL:-gpt-5-mini}"
if [[ -z "${ROLLOUT_BASE_URL:-}" && -z "${OPENAI_API_KEY:-}${LITELLM_API_KEY:-}" && "$model" != */* ]]; then
  cat >&2 <<'MSG'
No model configured. Point the example at one of:
  an OpenAI-compatible server:  ROLLOUT_BASE_URL=http://localhost:8000/v1 ROLLOUT_MODEL=Qwen/Qwen3-8B make example
  a provider key:               OPENAI_API_KEY=sk-... make example   (or ROLLOUT_MODEL=anthropic/claude-sonnet-4-5 with ANTHROPIC_API_KEY)
MSG
  exit 2
fi
# The example's manifest, with the chosen model (`--model`, `--base-url` change the spec).
args=(run -f "$here/calculator/rolloutrun.local.yaml" --model "$model")
if [[ -n "${ROLLOUT_BASE_URL:-}" ]]; then
  args+=(--base-url "$ROLLOUT_BASE_URL")
fi
if ! command -v bwrap >/dev/null 2>&1; then
  echo "bubblewrap (bwrap) is not installed: running the example's own tools without the" \
       "sandbox. Install bubblewrap to sandbox a repo's tools and scorers." >&2
  args+=(--no-sandbox)
fi
cd "$here/.."
exec "$bin/rolloutctl" "${args[@]}" "$@"
