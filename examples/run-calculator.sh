#!/usr/bin/env bash
# Evaluate a model on the calculator example: 20 rows, 2 runs each, scored by the #### reward.
# Needs a model: an OpenAI-compatible endpoint (ROLLOUT_BASE_URL + ROLLOUT_MODEL, e.g. vLLM,
# SGLang or Ollama) or a provider key (OPENAI_API_KEY, ANTHROPIC_API_KEY, ... with ROLLOUT_MODEL).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="$here/../.venv/bin"
model="${ROLLOUT_MODEL:-gpt-5-mini}"
args=(--mcp mcp -d test_data.jsonl --eval-fn reward_fn.compute_reward:numbers_match_reward
      --model "$model" --n 2 --batch-size 8 -o "$here/../rollout-output/eval")
if [[ -n "${ROLLOUT_BASE_URL:-}" ]]; then
  args+=(--base-url "$ROLLOUT_BASE_URL")
elif [[ -z "${OPENAI_API_KEY:-}${LITELLM_API_KEY:-}" && "$model" != */* ]]; then
  cat >&2 <<'MSG'
No model configured. Point the example at one of:
  an OpenAI-compatible server:  ROLLOUT_BASE_URL=http://localhost:8000/v1 ROLLOUT_MODEL=Qwen/Qwen3-8B make example
  a provider key:               OPENAI_API_KEY=sk-... make example   (or ROLLOUT_MODEL=anthropic/claude-sonnet-4-5 with ANTHROPIC_API_KEY)
MSG
  exit 2
fi
cd "$here/calculator"
exec "$bin/rolloutctl" eval "${args[@]}"
