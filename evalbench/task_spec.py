"""Benchmark tasks as YAML: dataset, split, prompts, the systems to compare, metrics, bias targets, seed.

A task file (``evalbench/tasks/<name>.yaml``, or any path)::

    task: movielens_text
    version: 2
    dataset: {source: movielens}            # movielens | synthetic | faces | stackexchange (+ options)
                                            # or a workspace dataset: `dataset: NAME`; or your own file:
                                            # {source: table, path: FILE, user: ..., item: ...} (task_data)
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
    metric_list:                            # text tasks; default: text_preference alone
      - {name: text_preference, aggregation: mean, higher_is_better: true}
      - {name: rewrite_spread}              # further metrics of evalbench.metrics.METRICS, same units
    seed: 0

``run_task`` imports the dataset when absent (:mod:`evalbench.task_data` for a workspace dataset or a table),
makes the split, mines each encoder's personas, rewrites the prompts and scores every system as a
resumable bench run (the same config resumes the same run), with
the two reference rows (the history ceiling and the popularity control) per text encoder and prompt set,
then records one ``task`` run naming them. Each piece skips what is already stored, so a killed task
resumes. The report leads with every system's personal win rate (:mod:`evalbench.task_report`), with the
further metrics of ``metric_list`` beside it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from evalbench.metrics import PRIMARY, MetricListError, MetricSpec, parse_metric_list
from evalbench.task_data import check_dataset
from workbench.errors import UnknownNameError

BUNDLED = ("movielens_text", "stackexchange_text", "synthetic_recovery", "face_ratings_image", "dreambench_reference")
SOURCES = ("movielens", "synthetic", "faces", "stackexchange", "dreambench", "table")


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
    metric_list: list[MetricSpec] = field(default_factory=lambda: [MetricSpec(PRIMARY)])  # image tasks: none
    seed: int = 0
    description: str = ""
    data_path: str | None = None
    kind: str = "text"  # text: rewrites scored as text; image: generations per user; reference: per subject
    image: dict[str, Any] = field(default_factory=dict)  # image tasks: max_users, variations, size, n_refs, encoder
    partners: int = 0  # personal win rate: 0 compares with every other held-out user, K with K of them
    controls: bool = True  # text tasks: every system also runs as its shuffled control
    power: dict[str, Any] = field(default_factory=dict)  # the power calculation behind the split (stated, reported)

    def config(self) -> dict[str, Any]:
        """The task as its run stores (and hashes) it: the metric list as ``metrics``, each entry compact
        (:meth:`MetricSpec.compact`), so a task without ``metric_list`` keeps the id its runs had before."""
        cfg = asdict(self)
        del cfg["metric_list"]
        cfg["metrics"] = [m.compact() for m in self.metric_list]
        return cfg

    @property
    def more_metrics(self) -> tuple[MetricSpec, ...]:
        """The listed metrics beyond text_preference, scored on the same units as it (text tasks)."""
        return tuple(m for m in self.metric_list if m.name != PRIMARY)

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
            raise UnknownNameError("task", name_or_path, [*BUNDLED, "<path to a YAML file>"], field="task")
        text = ref.read_text("utf-8")
    raw = yaml.safe_load(text) or {}
    raw.update({k: v for k, v in overrides.items() if v is not None})
    task = parse_task(raw, source=str(name_or_path))
    if path.is_file():
        task.base_dir = str(path.resolve().parent)  # a table's relative paths are read from here (not hashed)
    return task


def parse_task(raw: dict[str, Any], source: str = "<dict>") -> Task:
    def need(key):
        if key not in raw:
            raise ValueError(f"task {source}: missing required key {key!r}")
        return raw[key]

    known = set(Task.__dataclass_fields__)
    unknown = set(raw) - known
    if unknown:
        raise ValueError(
            f"task {source}: unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(known))}"
        )
    ds = check_dataset(need("dataset"), source, data_path=raw.get("data_path"))
    if ds is not None:
        raw = {**raw, "dataset": ds}
    elif raw["dataset"].get("source") not in SOURCES:
        raise ValueError(
            f"task {source}: dataset.source must be one of {', '.join(SOURCES)} (or `dataset: NAME`, a workspace "
            f"dataset), got {raw['dataset']!r}"
        )
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
            raise ValueError(
                f"task {source}: {twins[0]!r} gets its shuffled control automatically (controls: true); "
                "drop the control system or set controls: false"
            )
    if raw.get("kind", "text") == "text" and raw.get("baseline", "no persona") in names:
        raise ValueError(
            f"task {source}: the baseline (the generic prompt) is not one of the systems; rename the system"
        )
    if raw.get("kind") in ("image", "reference") and raw.get("baseline") not in names:
        raise ValueError(f"task {source}: an image task's baseline must name one of its systems ({', '.join(names)})")
    te = raw.get("text_encoder", "minilm")
    if not (isinstance(te, str) and te) and not (
        isinstance(te, list) and te and all(isinstance(x, str) and x for x in te)
    ):
        raise ValueError(
            f"task {source}: text_encoder must be a name or a list of names (e.g. [minilm, mpnet]), got {te!r}"
        )
    partners = raw.get("partners", 0)
    if isinstance(partners, bool) or not isinstance(partners, int) or partners < 0:
        raise ValueError(
            f"task {source}: partners must be 0 (every other held-out user) or a positive number, got {partners!r}"
        )
    return Task(
        **{
            **raw,
            "systems": systems,
            "version": int(need("version")),
            "task": str(need("task")),
            "metric_list": _metric_list(raw, source),
        }
    )


def _metric_list(raw: dict[str, Any], source: str) -> list[MetricSpec]:
    """The task's ``metric_list`` checked (:func:`evalbench.metrics.parse_metric_list`); without one, a text
    task scores text_preference alone and an image task has none (its runner scores fixed metrics)."""
    kind = raw.get("kind", "text")
    if "metric_list" not in raw:
        return [MetricSpec(PRIMARY)] if kind == "text" else []
    if kind != "text":
        raise MetricListError(
            f"task {source}: metric_list: {kind} tasks score image preference, copy rate and diversity, not a list",
            field="metric_list",
            fix="Drop metric_list.",
        )
    try:
        return parse_metric_list(raw["metric_list"])
    except MetricListError as e:
        raise MetricListError(f"task {source}: {e.message}", field=e.field, fix=e.fix) from None


def _ensure_dataset(ws, task: Task) -> str:
    """The id of the task's dataset, imported first when the workspace lacks it."""
    from evalbench.task_data import table_dataset, workspace_dataset
    from workbench.store.datasets import has_dataset, write_dataset

    ds = dict(task.dataset)
    if "source" not in ds:
        return workspace_dataset(ws, task)
    if ds["source"] == "table":
        return table_dataset(ws, task, getattr(task, "base_dir", None))
    source = ds.pop("source")
    if source == "movielens":
        if not has_dataset(ws, "ml-100k"):
            from persona.data.movielens import load_movielens

            write_dataset(ws, load_movielens(**ds))
        return "ml-100k"
    if source == "synthetic":
        from persona.data.synthetic import generate_community

        bundle = generate_community(**{"n_users": 500, "n_items": 400, "seed": task.seed, **ds})
    else:
        bundle = _load_folder(task, source, ds)
    if not has_dataset(ws, bundle.name):
        write_dataset(ws, bundle)
    return bundle.name


def _load_folder(task: Task, source: str, ds: dict[str, Any]):
    """The dataset of a source read from a folder (``--data PATH``)."""
    path = task.data_path or ds.pop("path", None)
    if not path:
        raise ValueError(
            f"task {task.task} reads {source} data from a folder: pass --data PATH "
            f"(see ../shared/data/README.md for where it comes from and its licence)"
        )
    if source == "faces":
        from persona.data.faces import load_faces as load
    elif source == "stackexchange":
        from persona.data.stackexchange import load_stackexchange as load
    else:
        raise ValueError(
            f"dataset source {source!r} has no importer yet; supported: movielens, synthetic, faces, stackexchange"
        )
    return load(path, **ds)


def run_task(
    ws, task: Task, *, progress: bool = False, executor: str = "local", workers: int | None = None
) -> dict[str, Any]:
    """Run every system of ``task`` (resumable); returns the task run id and the systems' bench run ids."""
    from persona.data.splits import SplitParams, make_split

    if task.kind == "reference":
        return _record_task(ws, task, "-", _reference_members(ws, task, progress))
    split = make_split(ws, _ensure_dataset(ws, task), SplitParams(**{"seed": task.seed, **task.split}))["split"]
    if task.kind == "image":
        return _record_task(ws, task, split, _image_members(ws, task, split, progress))
    return _record_task(ws, task, split, _TextMembers(ws, task, split, progress, executor, workers).run())


def _record_task(ws, task: Task, split: str, members: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``task`` run naming the member runs (its id follows from the task, the split and the members)."""
    from workbench.store.runs import finish_run, start_run

    run_id, _ = start_run(ws, "task", {"task": task.config(), "split": split, "members": members}, len(members))
    finish_run(ws, run_id)
    return {"run_id": run_id, "task": task.task, "split": split, "systems": members, "status": "completed"}


def _reference_members(ws, task: Task, progress: bool) -> list[dict[str, Any]]:
    """Each system of a reference task as a DreamBench reference bench run."""
    from evalbench.image_runs import run_reference_bench

    path = task.data_path or task.dataset.get("path")
    if not path:
        raise ValueError(f"task {task.task} reads a DreamBench folder: pass --data PATH")
    members = []
    for s in task.systems:
        res = run_reference_bench(
            ws,
            path,
            {"name": s.name, "references": s.references or "own", "n_refs": s.n_refs or 1},
            seed=task.seed,
            progress=progress,
            **task.image,
        )
        members.append(
            {"name": s.name, "run_id": res["run_id"], "system": s.name, "kind": "reference", "classes": res["classes"]}
        )
    return members


def _image_members(ws, task: Task, split: str, progress: bool) -> list[dict[str, Any]]:
    """Each system of an image task as an image bench run on the split."""
    from evalbench.image_runs import run_image_bench

    members = []
    for s in task.systems:
        res = run_image_bench(
            ws, split, {"name": s.name, "references": s.references}, seed=task.seed, progress=progress, **task.image
        )
        members.append({"name": s.name, "run_id": res["run_id"], "system": s.name, "kind": "image"})
    return members


class _TextMembers:
    """The bench runs of a text task: per system its personas mined, its prompts rewritten and every text
    encoder's run (and its shuffled control's), with the reference rows once per encoder, users and prompt set."""

    def __init__(self, ws, task: Task, split: str, progress: bool, executor: str, workers: int | None):
        self.ws, self.task, self.split, self.progress = ws, task, split, progress
        self.executor, self.workers = executor, workers
        self.members: list[dict[str, Any]] = []
        self.done: set[tuple[str, str, int]] = set()

    def run(self) -> list[dict[str, Any]]:
        from persona.mining import mine_personas

        task = self.task
        self.references(task.prompts, 0)
        for s in task.systems:
            mined = mine_personas(
                self.ws, self.split, s.encoder, progress=self.progress, encoder_kwargs=s.encoder_params or None
            )
            prompts, max_users = s.prompts or task.prompts, s.max_users or 0
            self.references(prompts, max_users)
            self.system(s, mined["encoder"], prompts, max_users)
        return self.members

    def bench(self, cfg, name: str, **extra) -> None:
        """Run (or resume) one bench run and file it as member ``name``; two systems may not be one run."""
        from evalbench.runner import run_bench

        res = run_bench(self.ws, cfg, progress=self.progress, executor=self.executor, workers=self.workers)
        twin = next((m for m in self.members if m["run_id"] == res["run_id"]), None)
        if twin:
            raise ValueError(
                f"task {self.task.task}: systems {twin['name']!r} and {name!r} are the same run (same "
                "encoder, rewriter, model and control); make them differ or drop one"
            )
        self.members.append(
            {"name": name, "run_id": res["run_id"], "system": res["system"], "text_encoder": cfg.text_encoder, **extra}
        )

    def references(self, prompts: str, max_users: int) -> None:
        """The history ceiling and the popularity control, per encoder (and users and prompt set)."""
        from evalbench.runner import BenchConfig

        task, suffix = self.task, "" if not max_users else f" ({max_users} users)"
        common = {"text_encoder": None, "seed": task.seed, "partners": task.partners, "max_users": max_users}
        for te in task.text_encoders:
            common["text_encoder"] = te
            if (te, "history", max_users) not in self.done:
                self.done.add((te, "history", max_users))
                self.bench(
                    BenchConfig(self.split, reference="history", **common),
                    "history ceiling" + suffix,
                    reference="history",
                )
            if (te, prompts, max_users) not in self.done:
                self.done.add((te, prompts, max_users))
                self.bench(
                    BenchConfig(
                        self.split, prompts=prompts, reference="popularity", more_metrics=task.more_metrics, **common
                    ),
                    "popularity control" + ("" if prompts == task.prompts else f" [{prompts}]") + suffix,
                    reference="popularity",
                    prompts=prompts,
                )

    def system(self, s: SystemSpec, encoder: str, prompts: str, max_users: int) -> None:
        """One system's prompts rewritten, then its runs (and its shuffled control's) per text encoder."""
        from evalbench.runner import BenchConfig
        from prompting.params import RewriteParams
        from prompting.rewriter import rewrite_split

        task = self.task
        out = rewrite_split(
            self.ws,
            self.split,
            encoder=encoder,
            backend=s.backend,
            prompts=prompts,
            model=s.model,
            params=RewriteParams(**s.rewrite) if s.rewrite else None,
            progress=self.progress,
            backend_kwargs=s.backend_options or None,
            max_users=max_users or None,
        )
        controls = [s.control] if s.control != "none" or not task.controls else ["none", "shuffled"]
        for control in controls:
            name = s.name if control == s.control else f"{s.name} (shuffled control)"
            for te in task.text_encoders:
                cfg = BenchConfig(
                    self.split,
                    encoder=encoder,
                    backend=s.backend,
                    model=out["model"],
                    prompts=prompts,
                    text_encoder=te,
                    control=control,
                    seed=task.seed,
                    partners=task.partners,
                    max_users=max_users,
                    more_metrics=task.more_metrics,
                )
                self.bench(cfg, name, prompts=prompts, max_users=max_users)
