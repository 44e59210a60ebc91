#!/usr/bin/env python3
"""Where a routing goal on a wide CSV with a `benchmark` (or `eval_name`) column stands: the test
quality of routing every query of a benchmark to one model, the model best on that benchmark's
train rows (a router that knows the benchmark, which dualrouter does not see), and the same with
models picked on the test rows themselves. Equal costs; standard library only.

    python3 scripts/benchmark-ceiling.py ../shared/data/routing/routerdc-7llm.csv
"""
import csv
import sys
from collections import defaultdict

SKIP = {"benchmark", "eval_name", "split", "idx", "sample_id", "question", "prompt", "prompt_text",
        "oracle_model_to_route_to"}


def score(v):
    try:
        return float(v)
    except ValueError:
        return None


def main(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    bench = "benchmark" if "benchmark" in rows[0] else "eval_name"
    models = [c for c in rows[0] if c not in SKIP and "|" not in c]
    means = {}
    for split in ("train", "test"):
        acc = defaultdict(lambda: defaultdict(list))
        for r in rows:
            if r["split"] == split:
                for m in models:
                    s = score(r[m])
                    if s is not None:
                        acc[r[bench]][m].append(s)
        means[split] = {b: {m: sum(v) / len(v) for m, v in d.items() if v} for b, d in acc.items()}
    test = [r for r in rows if r["split"] == "test"]
    for label, table in (("picked on train", means["train"]), ("picked on test", means["test"])):
        best = {b: max(d, key=d.get) for b, d in table.items()}
        got = [score(r[best[r[bench]]]) or 0.0 for r in test if r[bench] in best]
        print(f"one model per benchmark, {label}: {sum(got) / len(got):.4f} on {len(got)} test queries")
        for b in sorted(best):
            print(f"  {b:<16} {best[b]}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/routing/routerdc-7llm.csv")
