#!/usr/bin/env bash
# Builds every guest crate in plugins/ for wasm32-wasip2 into plugins/dist/ and records in
# plugins/dist/MANIFEST the hash of the sources they were built from and each artifact's SHA-256
# (tests/plugins.rs checks both). Safe to run twice: when the committed artifacts match the
# sources it does nothing.
#   scripts/build-plugins.sh           build if the sources changed
#   scripts/build-plugins.sh --force   build anyway
# Without the wasm32-wasip2 target it runs `rustup target add wasm32-wasip2`; if that fails
# (offline), it keeps the committed artifacts and says whether they are stale.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m[plugins]\033[0m %s\n' "$*"; }

# crate name in plugins/  ->  artifact plugins/dist/<name with _>.wasm
crates=(auggie cursor-agent http-executor code-features test-executor test-extractor test-wrong-version)

sources_sha256() {
  find wit plugins -type f -not -path 'plugins/target/*' -not -path 'plugins/dist/*' -not -name '*.md' -print0 \
    | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1
}

want=$(sources_sha256)
have=$(awk '$1 == "sources-sha256" { print $2 }' plugins/dist/MANIFEST 2>/dev/null || true)
all_present=1
for c in "${crates[@]}"; do
  [ -f "plugins/dist/${c//-/_}.wasm" ] || all_present=0
done
if [ "${1:-}" != "--force" ] && [ "$want" = "$have" ] && [ "$all_present" = 1 ]; then
  say "plugins/dist is current with its sources"
  exit 0
fi

# `grep -x` without `-q` reads the whole list: stopping at the match could SIGPIPE rustup, and
# under pipefail that reads as "not installed".
if ! rustup target list --installed 2>/dev/null | grep -x wasm32-wasip2 >/dev/null; then
  say "adding the wasm32-wasip2 target"
  if ! rustup target add wasm32-wasip2; then
    if [ "$all_present" = 1 ] && [ "$want" = "$have" ]; then
      say "cannot add wasm32-wasip2; the committed plugins/dist artifacts are current"
    else
      say "WARNING: cannot add wasm32-wasip2 (offline?); keeping the committed plugins/dist artifacts, which do NOT match the sources (the freshness test will fail)"
    fi
    exit 0
  fi
fi

say "building ${crates[*]} for wasm32-wasip2 (release)"
# Paths are remapped so the artifacts do not depend on where the checkout or cargo home is.
cargo_home=${CARGO_HOME:-$HOME/.cargo}
RUSTFLAGS="--remap-path-prefix=$PWD=/dualrouter --remap-path-prefix=$cargo_home=/cargo" \
  cargo build --quiet --release --locked --target wasm32-wasip2 --manifest-path plugins/Cargo.toml

mkdir -p plugins/dist
{
  echo "# Written by scripts/build-plugins.sh; checked by tests/plugins.rs. Do not edit."
  echo "# $(rustc --version)"
  echo "sources-sha256 $want"
  for c in "${crates[@]}"; do
    f="${c//-/_}.wasm"
    cp "plugins/target/wasm32-wasip2/release/$f" "plugins/dist/$f"
    echo "$(sha256sum "plugins/dist/$f" | cut -d' ' -f1)  $f"
  done
} > plugins/dist/MANIFEST.tmp
mv plugins/dist/MANIFEST.tmp plugins/dist/MANIFEST
say "plugins/dist updated: $(cd plugins/dist && ls -1 *.wasm | tr '\n' ' ')"
