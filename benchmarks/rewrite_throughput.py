"""Rewriter throughput: rewrites/s and generated tokens/s per backend and batch size.

Each (backend, batch size) rewrites the same ``--n`` (persona, prompt) pairs (PartiPrompts x planted
personas) through :class:`prompting.rewriter.Rewriter` without a cache, guard and retries included:
what a user pays. Tokens are counted with :func:`persona.evidence.count_tokens` (words and
punctuation, an approximation of model tokens), the same way for every backend. The template backend
is the baseline measured in the same run.

Usage::

    python benchmarks/rewrite_throughput.py                          # template + embedded, batch 1, 8
    python benchmarks/rewrite_throughput.py --backends transformers --model /models/Qwen2.5-1.5B-Instruct
    python benchmarks/rewrite_throughput.py --backends openai --model served-name -o base_url=http://host:8000/v1

Prints a table and writes ``benchmarks/results/rewrite_throughput.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def pairs(n: int):
    from importlib import resources

    from workbench.records import Evidence, PersonaCard

    rows = resources.files("evalbench.tasks.prompts").joinpath("parti36.tsv").read_text("utf-8").splitlines()[1:]
    prompts = [r.split("\t")[1] for r in rows if r.strip()]
    tastes = [
        ("Film-Noir", "Mystery", "Vertigo"),
        ("Sci-Fi", "Adventure", "Blade Runner"),
        ("Animation", "Comedy", "Toy Story"),
        ("Western", "Drama", "Unforgiven"),
    ]
    cards = [
        PersonaCard(
            f"u{k}",
            "",
            [{"name": a, "weight": 0.5, "kind": "interest"}, {"name": b, "weight": 0.3, "kind": "interest"}],
            [Evidence("e", 0.5, t)],
            None,
            "bench",
            {},
        )
        for k, (a, b, t) in enumerate(tastes)
    ]
    return [cards[k % len(cards)] for k in range(n)], [prompts[k % len(prompts)] for k in range(n)]


def measure(backend: str, batch: int, n: int, model: str | None, options: dict, params=None) -> dict:
    from persona.evidence import count_tokens
    from prompting.params import RewriteParams
    from prompting.rewriter import Rewriter

    params = params or RewriteParams()
    rw = Rewriter(backend, model, **options)
    cards, prompts = pairs(n)
    rw.rewrite(cards[:1], prompts[:1], RewriteParams(seed=999))  # warm-up: model load, first call
    t = time.perf_counter()
    outs = []
    for start in range(0, n, batch):
        outs += rw.rewrite(cards[start : start + batch], prompts[start : start + batch], params)
    dt = time.perf_counter() - t
    tokens = sum(count_tokens(o.rewritten) for o in outs)
    return {
        "backend": backend,
        "model": rw.model,
        "options": options,
        "params": params.to_dict(),
        "batch": batch,
        "rewrites": n,
        "seconds": dt,
        "rewrites_per_s": n / dt,
        "tokens_per_s": tokens / dt,
        "fallbacks": sum(1 for o in outs if o.fallback),
        "example": outs[0].rewritten,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="template,embedded")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--n", type=int, default=32, help="Rewrites per (backend, batch size).")
    ap.add_argument("--model", default=None, help="Model for the LLM backends (GGUF path, id or served name).")
    ap.add_argument("-o", "--option", action="append", default=[], help="Backend option KEY=VALUE.")
    ap.add_argument("--max-tokens", type=int, default=None, help="RewriteParams.max_tokens (default: its default).")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "rewrite_throughput.json"))
    args = ap.parse_args(argv)
    options = dict(o.split("=", 1) for o in args.option)
    from prompting.params import RewriteParams

    params = RewriteParams(**({"max_tokens": args.max_tokens} if args.max_tokens else {}))
    rows = []
    for b in args.backends.split(","):
        for bs in (int(x) for x in args.batches.split(",")):
            print(f"[rewrite_throughput] {b} batch {bs} ...", file=sys.stderr, flush=True)
            rows.append(
                measure(
                    b, bs, args.n, args.model if b != "template" else None, options if b != "template" else {}, params
                )
            )
    base = next((r["rewrites_per_s"] for r in rows if r["backend"] == "template"), None)
    print("backend | model | batch | rewrites/s | tokens/s | vs template | fallbacks")
    print("--- | --- | --- | --- | --- | --- | ---")
    for r in rows:
        ratio = f"{r['rewrites_per_s'] / base:.2g}x" if base else "-"
        print(
            f"{r['backend']} | {r['model']} | {r['batch']} | {r['rewrites_per_s']:.2f} | {r['tokens_per_s']:.1f} | {ratio} | "
            f"{r['fallbacks']}/{r['rewrites']}"
        )
    from _results import write_result

    write_result(args.out, "rewrite_throughput", rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
