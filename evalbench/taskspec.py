"""Benchmark tasks as YAML: dataset, split, prompts, the systems to compare, metrics, bias targets, seed.

A task file (``evalbench/tasks/<name>.yaml``, or any path)::

    task: movielens_text
    version: 2
    dataset: {source: movielens}            # movielens | synthetic | faces | stackexchange (+ options)
    split: {seed: 0, heldout_frac: 0.2, hidden_frac: 0.5, negatives_per_like: 3}
    power: {...}                            # the power calculation the split was chosen by (reported as is)
    prompts: parti12
    text_encoder: [minilm, mpnet]           # one encoder or several: every system is scored by each
    partners: 0                             # 0: every other held-out user; K: K partners per user
    baseline: no persona                    # the generic prompt
    systems:
      - {name: gat+template, encoder: gat, backend: template}
      - {name: gat+template N=8, encoder: gat, backend: template, rewrite: {candidates: 8}}
      - {name: gat (share)+template, encoder: gat, encoder_params: {traits: share}, backend: template}
      - {name: gat+template (shuffled control), encoder: gat, backend: template, control: shuffled}
      - {name: gat+embedded, encoder: gat, backend: embedded, prompts: parti3}   # a smaller prompt set
    bias: {attributes: [gender, age], targets: us_census_2020}
    seed: 0

``run_task`` imports the dataset when absent, makes the split, mines each encoder's personas, rewrites
the prompts and scores every system as a resumable bench run (the same config resumes the same run), with
the two reference rows (the history ceiling and the popularity control) per text encoder and prompt set,
then records one ``task`` run naming them. Each piece skips what is already stored, so a killed task
resumes. The report leads with every system's personal win rate (:mod:`evalbench.taskreport`).
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

BUNDLED = ("movielens_text", "stackexchange_text", "synthetic_recovery", "face_ratings_image", "dreambench_reference")
SOURCES = ("movielens", "synthetic", "faces", "stackexchange", "dreambench")


@dataclass
class SystemSpec:
    """One system: a persona encoder and a rewriter (with its model and options), or the control."""

    name: str
    encoder: str = "none"
    backend: str = "template"
    model: str | None = None
    control: str = "none"
    encoder_params: dict[str, Any] = field(default_factory=dict)
    rewrite: dict[str, Any] = field(default_factory=dict)  # RewriteParams fields (shots, candidates, ...)
    prompts: str | None = None  # this system's prompt set, when not the task's (e.g. fewer for a slow LLM)
    max_users: int | None = None  # only the first this many held-out users (partners among them too)
    backend_options: dict[str, Any] = field(default_factory=dict)
    references: str | None = None  # image: liked | popular | shuffled; reference: own | shuffled
    n_refs: int | None = None  # reference tasks: how many of the subject's photos the generator draws from


@dataclass
class Task:
    task: str
    version: int
    dataset: dict[str, Any]
    systems: list[SystemSpec]
    prompts: str = "parti12"
    split: dict[str, Any] = field(default_factory=dict)
    text_encoder: str | list[str] = "minilm"
    baseline: str = "no persona"
    bias: dict[str, Any] = field(default_factory=dict)
    metrics: list[str] = field(default_factory=lambda: ["text_preference"])
    seed: int = 0
    description: str = ""
    data_path: str | None = None
    kind: str = "text"  # text: rewrites scored as text; image: generations per user; reference: per subject
    image: dict[str, Any] = field(default_factory=dict)  # image tasks: max_users, variations, size, n_refs, encoder
    partners: int = 0  # personal win rate: 0 compares with every other held-out user, K with K of them
    controls: bool = True  # text tasks: every system also runs as its shuffled control
    power: dict[str, Any] = field(default_factory=dict)  # the power calculation behind the split (stated, reported)

    def config(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def text_encoders(self) -> list[str]:
        """The metric's text encoders, in the task's order."""
        return [self.text_encoder] if isinstance(self.text_encoder, str) else list(self.text_encoder)


def load_task(name_or_path: str, **overrides: Any) -> Task:
    """A bundled task by name (``movielens_text``, ...) or a YAML file; ``overrides`` replace top-level keys."""
    import yaml

    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"task file {name_or_path!r} does not exist")
        text = path.read_text("utf-8")
    else:
        ref = resources.files("evalbench.tasks").joinpath(f"{name_or_path}.yaml")
        if not ref.is_file():
            close = difflib.get_close_matches(name_or_path, BUNDLED, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(f"unknown task {name_or_path!r}; {hint}bundled: {', '.join(BUNDLED)}, or give a YAML path")
        text = ref.read_text("utf-8")
    raw = yaml.safe_load(text) or {}
    raw.update({k: v for k, v in overrides.items() if v is not None})
    return parse_task(raw, source=str(name_or_path))


def parse_task(raw: dict[str, Any], source: str = "<dict>") -> Task:
    def need(key):
        if key not in raw:
            raise ValueError(f"task {source}: missing required key {key!r}")
        return raw[key]

    known = set(Task.__dataclass_fields__)
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"task {source}: unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(known))}")
    ds = need("dataset")
    if not isinstance(ds, dict) or ds.get("source") not in SOURCES:
        raise ValueError(f"task {source}: dataset.source must be one of {', '.join(SOURCES)}, got {ds!r}")
    systems = []
    for i, s in enumerate(need("systems") or []):
        kind = raw.get("kind", "text")
        needed = ("name", "encoder") if kind == "text" else ("name",)
        if not isinstance(s, dict) or any(k not in s for k in needed):
            raise ValueError(f"task {source}: systems[{i}] needs at least {' and '.join(needed)}, got {s!r}")
        bad = set(s) - set(SystemSpec.__dataclass_fields__)
        if bad:
            raise ValueError(f"task {source}: systems[{i}] has unknown key(s) {', '.join(sorted(bad))}")
        systems.append(SystemSpec(**s))
    if not systems:
        raise ValueError(f"task {source}: list at least one system")
    names = [s.name for s in systems]
    if raw.get("kind", "text") not in ("text", "image", "reference"):
        raise ValueError(f"task {source}: kind must be text, image or reference, got {raw.get('kind')!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"task {source}: system names must be unique")
    if raw.get("controls", True) and raw.get("kind", "text") == "text":
        twins = [n for n in names if f"{n} (shuffled control)" in names]
        if twins:
            raise ValueError(f"task {source}: {twins[0]!r} gets its shuffled control automatically (controls: true); "
                             "drop the control system or set controls: false")
    if raw.get("kind", "text") == "text" and raw.get("baseline", "no persona") in names:
        raise ValueError(f"task {source}: the baseline (the generic prompt) is not one of the systems; rename the system")
    if raw.get("kind") in ("image", "reference") and raw.get("baseline") not in names:
        raise ValueError(f"task {source}: an image task's baseline must name one of its systems ({', '.join(names)})")
    te = raw.get("text_encoder", "minilm")
    if not (isinstance(te, str) and te) and not (isinstance(te, list) and te and all(isinstance(x, str) and x for x in te)):
        raise ValueError(f"task {source}: text_encoder must be a name or a list of names (e.g. [minilm, mpnet]), got {te!r}")
    partners = raw.get("partners", 0)
    if isinstance(partners, bool) or not isinstance(partners, int) or partners < 0:
        raise ValueError(f"task {source}: partners must be 0 (every other held-out user) or a positive number, "
                         f"got {partners!r}")
    return Task(**{**raw, "systems": systems, "version": int(need("version")), "task": str(need("task"))})


def _ensure_dataset(ws, task: Task) -> str:
    from evalbench.store.datasets import write_dataset

    ds = dict(task.dataset)
    source = ds.pop("source")
    if source == "movielens":
        if not ws.scalar("SELECT count(*) FROM datasets WHERE dataset_id = 'ml-100k'"):
            from persona.data.movielens import load_movielens

            write_dataset(ws, load_movielens(**ds))
        return "ml-100k"
    if source == "synthetic":
        from persona.data.synthetic import generate_community

        params = {"n_users": 500, "n_items": 400, "seed": task.seed, **ds}
        bundle = generate_community(**params)
        did = bundle.name
        if not ws.scalar("SELECT count(*) FROM datasets WHERE dataset_id = ?", [did]):
            write_dataset(ws, bundle)
        return did
    path = task.data_path or ds.pop("path", None)
    if not path:
        raise ValueError(f"task {task.task} reads {source} data from a folder: pass --data PATH "
                         f"(see ../shared/data/README.md for where it comes from and its licence)")
    if source == "faces":
        from persona.data.faces import load_faces as load
    elif source == "stackexchange":
        from persona.data.stackexchange import load_stackexchange as load
    else:
        raise ValueError(f"dataset source {source!r} has no importer yet; supported: movielens, synthetic, faces, stackexchange")
    bundle = load(path, **ds)
    did = bundle.name
    if not ws.scalar("SELECT count(*) FROM datasets WHERE dataset_id = ?", [did]):
        write_dataset(ws, bundle)
    return did


def run_task(ws, task: Task, *, progress: bool = False, executor: str = "local", workers: int | None = None) -> dict[str, Any]:
    """Run every system of ``task`` (resumable); returns the task run id and the systems' bench run ids."""
    from evalbench.runner import BenchConfig, run_bench
    from evalbench.store.runs import finish_run, start_run
    from persona.data.splits import SplitParams, make_split
    from persona.mining import mine_personas
    from prompting.params import RewriteParams
    from prompting.rewriter import rewrite_split

    if task.kind == "reference":
        from evalbench.imagebench import run_reference_bench

        path = task.data_path or task.dataset.get("path")
        if not path:
            raise ValueError(f"task {task.task} reads a DreamBench folder: pass --data PATH")
        members = []
        for s in task.systems:
            res = run_reference_bench(ws, path, {"name": s.name, "references": s.references or "own",
                                                 "n_refs": s.n_refs or 1}, seed=task.seed, progress=progress, **task.image)
            members.append({"name": s.name, "run_id": res["run_id"], "system": s.name, "kind": "reference",
                            "classes": res["classes"]})
        config = {"task": task.config(), "split": "-", "members": members}
        run_id, _ = start_run(ws, "task", config, len(members))
        finish_run(ws, run_id)
        return {"run_id": run_id, "task": task.task, "split": "-", "systems": members, "status": "completed"}
    dataset_id = _ensure_dataset(ws, task)
    split = make_split(ws, dataset_id, SplitParams(**{"seed": task.seed, **task.split}))["split"]
    if task.kind == "image":
        from evalbench.imagebench import run_image_bench

        members = []
        for s in task.systems:
            res = run_image_bench(ws, split, {"name": s.name, "references": s.references}, seed=task.seed,
                                  progress=progress, **task.image)
            members.append({"name": s.name, "run_id": res["run_id"], "system": s.name, "kind": "image"})
        config = {"task": task.config(), "split": split, "members": members}
        run_id, _ = start_run(ws, "task", config, len(members))
        finish_run(ws, run_id)
        return {"run_id": run_id, "task": task.task, "split": split, "systems": members, "status": "completed"}

    members = []
    done_prompt_sets: set[tuple[str, str]] = set()

    def bench(cfg: BenchConfig, name: str, **extra) -> None:
        res = run_bench(ws, cfg, progress=progress, executor=executor, workers=workers)
        twin = next((m for m in members if m["run_id"] == res["run_id"]), None)
        if twin:
            raise ValueError(f"task {task.task}: systems {twin['name']!r} and {name!r} are the same run (same encoder, "
                             "rewriter, model and control); make them differ or drop one")
        members.append({"name": name, "run_id": res["run_id"], "system": res["system"],
                        "text_encoder": cfg.text_encoder, **extra})

    def references(prompts: str, max_users: int) -> None:
        """The history ceiling and the popularity control, per encoder (and users and prompt set)."""
        suffix = "" if not max_users else f" ({max_users} users)"
        for te in task.text_encoders:
            if (te, "history", max_users) not in done_prompt_sets:
                done_prompt_sets.add((te, "history", max_users))
                bench(BenchConfig(split, reference="history", text_encoder=te, seed=task.seed, partners=task.partners,
                                  max_users=max_users), "history ceiling" + suffix, reference="history")
            if (te, prompts, max_users) not in done_prompt_sets:
                done_prompt_sets.add((te, prompts, max_users))
                bench(BenchConfig(split, prompts=prompts, reference="popularity", text_encoder=te, seed=task.seed,
                                  partners=task.partners, max_users=max_users),
                      "popularity control" + ("" if prompts == task.prompts else f" [{prompts}]") + suffix,
                      reference="popularity", prompts=prompts)

    references(task.prompts, 0)
    for s in task.systems:
        mined = mine_personas(ws, split, s.encoder, progress=progress, encoder_kwargs=s.encoder_params or None)
        prompts, max_users = s.prompts or task.prompts, s.max_users or 0
        references(prompts, max_users)
        params = RewriteParams(**s.rewrite) if s.rewrite else None
        out = rewrite_split(ws, split, encoder=mined["encoder"], backend=s.backend, prompts=prompts, model=s.model,
                            params=params, progress=progress, backend_kwargs=s.backend_options or None,
                            max_users=max_users or None)
        controls = [s.control] if s.control != "none" or not task.controls else ["none", "shuffled"]
        for control in controls:
            name = s.name if control == s.control else f"{s.name} (shuffled control)"
            for te in task.text_encoders:
                cfg = BenchConfig(split, encoder=mined["encoder"], backend=s.backend, model=out["model"], prompts=prompts,
                                  text_encoder=te, control=control, seed=task.seed, partners=task.partners,
                                  max_users=max_users)
                bench(cfg, name, prompts=prompts, max_users=max_users)
    config = {"task": task.config(), "split": split, "members": members}
    run_id, _ = start_run(ws, "task", config, len(members))
    finish_run(ws, run_id)
    return {"run_id": run_id, "task": task.task, "split": split, "systems": members, "status": "completed"}
