#!/usr/bin/env python3
"""Make tests/fixtures/encoder.json: reference embeddings of fixed sentences, computed independently of the Rust
code from the files scripts/fetch-models.sh fetched: `minilm` by a plain numpy BERT forward pass over
model.safetensors (no ONNX involved), `minilm_int8` by Python onnxruntime on the int8 ONNX file, `static` by numpy.

Run it in a throwaway venv:
    python3 -m venv /tmp/fx && /tmp/fx/bin/pip install onnxruntime==1.32.0 tokenizers numpy safetensors
    /tmp/fx/bin/python scripts/make-encoder-fixture.py
Truncation follows the documented rule (max 256 tokens with [CLS]/[SEP], the first 32 body tokens + the rest from the
end); one long sentence exercises it.
"""
import json, struct, sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
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


def minilm(texts):
    """all-MiniLM-L6-v2 in fp32, a numpy transcription of Hugging Face's BertModel + mean pooling."""
    from safetensors.numpy import load_file
    w = {k: v.astype(np.float64) for k, v in load_file(str(MODELS / "minilm/model.safetensors")).items()}
    heads, layers = 12, 6
    def ln(x, p):
        m = x.mean(-1, keepdims=True); v = ((x - m) ** 2).mean(-1, keepdims=True)
        return (x - m) / np.sqrt(v + 1e-12) * w[p + ".weight"] + w[p + ".bias"]
    def lin(x, p):
        return x @ w[p + ".weight"].T + w[p + ".bias"]
    from math import erf
    verf = np.vectorize(erf)
    out = []
    for ids in minilm_tokens(texts):
        n = len(ids)
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n] \
            + w["embeddings.token_type_embeddings.weight"][0]
        x = ln(x, "embeddings.LayerNorm")
        for l in range(layers):
            p = f"encoder.layer.{l}."
            q, k, v = (lin(x, p + "attention.self." + t).reshape(n, heads, -1).transpose(1, 0, 2)
                       for t in ("query", "key", "value"))
            s = q @ k.transpose(0, 2, 1) / np.sqrt(q.shape[-1])
            s = np.exp(s - s.max(-1, keepdims=True)); s /= s.sum(-1, keepdims=True)
            c = (s @ v).transpose(1, 0, 2).reshape(n, -1)
            x = ln(lin(c, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
            f = lin(x, p + "intermediate.dense")
            f = 0.5 * f * (1 + verf(f / np.sqrt(2)))
            x = ln(lin(f, p + "output.dense") + x, p + "output.LayerNorm")
        v = x.mean(axis=0)
        out.append((v / np.linalg.norm(v)).tolist())
    return out


def minilm_int8(texts):
    tok = Tokenizer.from_file(str(MODELS / "minilm/tokenizer.json"))
    tok.no_truncation(); tok.no_padding()
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    sess = ort.InferenceSession(str(MODELS / "minilm/model.onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    out = []
    for t in texts:
        ids = [cls] + head_tail(tok.encode(t, add_special_tokens=False).ids, MAX_TOKENS - 2, HEAD) + [sep]
        a = np.array([ids], dtype=np.int64)
        feed = {"input_ids": a, "attention_mask": np.ones_like(a), "token_type_ids": np.zeros_like(a)}
        h = sess.run(None, {n: feed[n] for n in names})[0][0]
        v = h.mean(axis=0)
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
        "made_by": "scripts/make-encoder-fixture.py (Python onnxruntime %s)" % ort.__version__,
        "max_tokens": MAX_TOKENS,
        "head_tokens": HEAD,
        "sentences": SENTENCES,
        "minilm": [[round(x, 6) for x in v] for v in minilm(SENTENCES)],
        "minilm_int8": [[round(x, 6) for x in v] for v in minilm_int8(SENTENCES)],
        "static": [[round(x, 6) for x in v] for v in potion(SENTENCES)],
    }
    dst = ROOT / "tests/fixtures/encoder.json"
    dst.write_text(json.dumps(fx) + "\n")
    print("wrote", dst, file=sys.stderr)


if __name__ == "__main__":
    main()
