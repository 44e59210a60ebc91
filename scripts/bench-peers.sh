#!/usr/bin/env bash
# Peers side by side (benches/peers.rs): dualrouter pass-through and routed, nginx (Debian) as a
# plain reverse proxy, and the LiteLLM proxy (PyPI), against the same demo upstream in one run.
# Installs what it needs (safe to run twice): nginx from apt, LiteLLM into .venv-peers.
set -euo pipefail
cd "$(dirname "$0")/.."
LITELLM_VERSION="${LITELLM_VERSION:-1.80.0}"

if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
  echo "==> installing nginx (Debian)"
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light
fi
# `sed` reads pip's whole answer: `grep -q` would stop at the match, and under pipefail pip's
# SIGPIPE on the lines after it made the check fail now and then (and LiteLLM reinstall).
installed="$(.venv-peers/bin/pip show litellm 2>/dev/null | sed -n 's/^Version: //p' || true)"
if [ ! -x .venv-peers/bin/litellm ] || [ "$installed" != "$LITELLM_VERSION" ]; then
  echo "==> installing litellm[proxy]==${LITELLM_VERSION} into .venv-peers (PyPI)"
  python3 -m venv .venv-peers
  .venv-peers/bin/pip install -q "litellm[proxy]==${LITELLM_VERSION}"
fi
scripts/fetch-models.sh
# The release profile: the binaries `make run` builds are reused.
exec cargo bench --profile release --bench peers
