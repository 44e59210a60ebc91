#!/usr/bin/env python3
"""Make tests/fixtures/encoder.json: reference embeddings of fixed sentences, computed independently of the Rust
code (no ONNX involved) from the files scripts/fetch-models.sh fetched: `minilm` by a plain numpy BERT forward pass
over model.safetensors, `minilm_int8` by the same pass following the int8 rule (the word-embedding table to int8 per
row; every linear layer's weight per output channel to ±63, its input per tensor to uint8 as ONNX
DynamicQuantizeLinear defines it, integer products, rescaled), `static` by numpy.

Run it in a throwaway venv:
    python3 -m venv /tmp/fx && /tmp/fx/bin/pip install tokenizers numpy safetensors
    /tmp/fx/bin/python scripts/make-encoder-fixture.py
Truncation follows the documented rule (max 256 tokens with [CLS]/[SEP], the first 32 body tokens + the rest from the
end); one long sentence exercises it.
"""
import json, struct, sys
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
MAX_TOKENS, HEAD = 256, 32

SENTENCES = [
    "Write a Python function that returns the n-th Fibonacci number.",
    "What is the capital of France?",
    "The quick brown fox jumps over the lazy dog.",
    "Résumé: naïve café owners prefer crème brûlée 🍮.",
    "",
    # long: a shared prefix followed by a distinct question, longer than the budget
    ("Answer the following multiple choice question. " * 60) + "Which gas do plants absorb? A) oxygen B) carbon dioxide",
]


def head_tail(ids, budget, head):
    if len(ids) <= budget:
        return list(ids)
    tail = budget - head
    return list(ids[:head]) + list(ids[len(ids) - tail:])


def minilm_tokens(texts):
    tok = Tokenizer.from_file(str(MODELS / "minilm/tokenizer.json"))
    tok.no_truncation(); tok.no_padding()
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    return [[cls] + head_tail(tok.encode(t, add_special_tokens=False).ids, MAX_TOKENS - 2, HEAD) + [sep] for t in texts]


WEIGHT_LEVELS = 63


def quantized_linear(w32):
    """The int8 rule for one layer: weight (out, in) to int8 per output channel, input to uint8 per tensor."""
    t = w32.T.astype(np.float32)                       # (in, out)
    m = np.abs(t).max(axis=0)
    scale = np.where(m > 0, m / np.float32(WEIGHT_LEVELS), np.float32(1)).astype(np.float32)
    q = np.clip(np.round(t / scale), -WEIGHT_LEVELS, WEIGHT_LEVELS).astype(np.int64)
    def apply(x):
        x = x.astype(np.float32)
        lo, hi = min(np.float32(0), x.min()), max(np.float32(0), x.max())
        xs = np.float32((hi - lo) / np.float32(255))
        if xs == 0:
            return np.zeros((x.shape[0], q.shape[1]))
        zp = np.clip(np.round(-lo / xs), 0, 255)
        xq = np.clip(np.round(x / xs) + zp, 0, 255).astype(np.int64)
        return ((xq - int(zp)) @ q).astype(np.float32) * (xs * scale)
    return apply


def minilm(texts, int8=False):
    """all-MiniLM-L6-v2, a numpy transcription of Hugging Face's BertModel + mean pooling; with `int8`, the
    linear layers follow the dynamic int8 rule (one sentence at a time, as the Rust encoder runs it) and the rest is
    computed in float32 as the encoder does: rounding to 8 bits is a step function, and float64 arithmetic shifts
    enough values across a step to move the embedding (a relative change of 1e-6 in the layers' inputs moved the
    long sentence's embedding to cosine 0.998)."""
    from safetensors.numpy import load_file
    raw = load_file(str(MODELS / "minilm/model.safetensors"))
    dt = np.float32 if int8 else np.float64
    w = {k: v.astype(dt) for k, v in raw.items()}
    qlin = {k[:-len(".weight")]: quantized_linear(v) for k, v in raw.items()
            if int8 and k.endswith(".weight") and v.ndim == 2 and k.startswith("encoder.")}
    word = w["embeddings.word_embeddings.weight"]
    if int8:  # the table in 8 bits per row, ties to even
        rs = np.abs(word).max(axis=1, keepdims=True) / np.float32(127)
        rs = np.where(rs > 0, rs, np.float32(1)).astype(np.float32)
        word = (np.clip(np.round(word / rs), -127, 127) * rs).astype(np.float32)
    heads, layers = 12, 6
    def ln(x, p):
        m = x.mean(-1, keepdims=True); v = ((x - m) ** 2).mean(-1, keepdims=True)
        return (x - m) / np.sqrt(v + dt(1e-12)) * w[p + ".weight"] + w[p + ".bias"]
    def lin(x, p):
        if p in qlin:
            return (qlin[p](x) + w[p + ".bias"]).astype(dt)
        return x @ w[p + ".weight"].T + w[p + ".bias"]
    from math import erf
    verf = np.vectorize(erf)
    out = []
    for ids in minilm_tokens(texts):
        n = len(ids)
        x = word[ids] + w["embeddings.position_embeddings.weight"][:n] \
            + w["embeddings.token_type_embeddings.weight"][0]
        x = ln(x, "embeddings.LayerNorm")
        for l in range(layers):
            p = f"encoder.layer.{l}."
            q, k, v = (lin(x, p + "attention.self." + t).reshape(n, heads, -1).transpose(1, 0, 2)
                       for t in ("query", "key", "value"))
            s = q @ k.transpose(0, 2, 1) / dt(np.sqrt(q.shape[-1]))
            s = np.exp(s - s.max(-1, keepdims=True)); s /= s.sum(-1, keepdims=True)
            c = (s @ v).transpose(1, 0, 2).reshape(n, -1)
            x = ln(lin(c, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
            f = lin(x, p + "intermediate.dense")
            f = (dt(0.5) * f * (1 + verf(f / dt(np.sqrt(2))).astype(dt))).astype(dt)
            x = ln(lin(f, p + "output.dense") + x, p + "output.LayerNorm")
        v = x.astype(np.float64).mean(axis=0)
        out.append((v / np.linalg.norm(v)).tolist())
    return out


def potion(texts):
    d = MODELS / "potion-base-8M"
    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    tok.no_truncation(); tok.no_padding()
    raw = (d / "model.safetensors").read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])["embeddings"]
    s, e = hdr["data_offsets"]
    table = np.frombuffer(raw[8 + n + s:8 + n + e], dtype="<f4").reshape(hdr["shape"])
    unk = tok.token_to_id("[UNK]")
    out = []
    for t in texts:
        ids = [i for i in tok.encode(t, add_special_tokens=False).ids if i != unk]
        ids = head_tail(ids, MAX_TOKENS, HEAD)
        v = table[ids].mean(axis=0) if ids else np.zeros(table.shape[1], dtype=np.float32)
        nv = np.linalg.norm(v)
        out.append((v / nv if nv > 0 else v).tolist())
    return out


def main():
    fx = {
        "made_by": "scripts/make-encoder-fixture.py (numpy %s)" % np.__version__,
        "max_tokens": MAX_TOKENS,
        "head_tokens": HEAD,
        "sentences": SENTENCES,
        "minilm": [[round(x, 6) for x in v] for v in minilm(SENTENCES)],
        "minilm_int8": [[round(x, 6) for x in v] for v in minilm(SENTENCES, int8=True)],
        "static": [[round(x, 6) for x in v] for v in potion(SENTENCES)],
    }
    dst = ROOT / "tests/fixtures/encoder.json"
    dst.write_text(json.dumps(fx) + "\n")
    print("wrote", dst, file=sys.stderr)


if __name__ == "__main__":
    main()
