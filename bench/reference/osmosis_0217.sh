#!/usr/bin/env bash
# Build the Osmosis SDK 0.2.17 reference (commit 73c1eea0) in a scratch folder, outside the repo:
#   bench/reference/osmosis_0217.sh [DEST]        (default /tmp/ref)
# DEST/osmosis-sdk holds the extracted source, DEST/venv a Python 3.12 venv with it installed
# (extras mcp, platform, dev) plus fastmcp 2.12.4 and litellm 1.80.0, so `DEST/venv/bin/osmosis`
# is the reference CLI. Fetches from GitHub and PyPI; never part of the test suite, and nothing it
# writes is committed. Set PYTHON to choose the interpreter (a Python 3.12).
set -euo pipefail

DEST=${1:-/tmp/ref}
COMMIT=73c1eea0
REPO_URL=https://github.com/Osmosis-AI/osmosis-sdk-python.git
PYTHON=${PYTHON:-$(command -v python3.12 || (PYENV_VERSION=3.12.1 pyenv which python3.12))}

mkdir -p "$DEST"
if [ ! -d "$DEST/osmosis-sdk.git" ]; then
  git clone --quiet --bare "$REPO_URL" "$DEST/osmosis-sdk.git"
fi
rm -rf "$DEST/osmosis-sdk"
mkdir -p "$DEST/osmosis-sdk"
git --git-dir="$DEST/osmosis-sdk.git" archive "$COMMIT" | tar -x -C "$DEST/osmosis-sdk"

"$PYTHON" -m venv "$DEST/venv"
export LITELLM_LOCAL_MODEL_COST_MAP=True
"$DEST/venv/bin/pip" install --quiet -e "$DEST/osmosis-sdk[mcp,platform,dev]" \
  fastmcp==2.12.4 litellm==1.80.0
"$DEST/venv/bin/osmosis" --help >/dev/null
echo "reference ready: $DEST/venv/bin/osmosis (source $DEST/osmosis-sdk)"
echo "use it with LITELLM_LOCAL_MODEL_COST_MAP=True (litellm then reads no cost map from the network)"
