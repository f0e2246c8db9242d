"""Personalize a cohort end to end (``pwb personalize``, ``POST /v1/personalize``): who, what, how, where.

* **who**: stored users (:attr:`PersonalizeConfig.users`), cohorts defined by SQL over the users' columns
  or stored earlier (``cohorts``), ``archetypes`` (k-means over persona embeddings), and new users given a
  few interactions each (``new_users``: one pass of the trained graph encoder, :mod:`persona.coldstart`);
* **what**: a prompt file (txt, tsv, csv, json, jsonl) or a stored or bundled prompt set;
* **how**: a rewriter backend with ``candidates`` per prompt (the selector keeps one; it never sees the
  benchmark's encoder), the ``patch`` generator (no weights; references from a pool) or ``diffusers`` with a
  model, images per prompt, size, guidance, seed, and the no-persona ``baseline`` beside each image;
* **where**: ``out``: ``images/`` (content-addressed, signed and, from 256 px, watermarked),
  ``manifest.parquet`` and ``manifest.csv``, ``personas.jsonl``, ``run.json`` and ``index.html``
  (:mod:`evalbench.flows.personalize_outputs`).

Resumable: every drawn image is journalled (``out/.journal.jsonl``, one fsynced line per image) once its file
and rows are written; a rerun with the same settings skips what the journal holds and writes the same
manifest a clean run writes (the signed files' own hashes aside: signatures differ run to run).
:func:`plan` reads the workspace (and stores the cohorts and rewrites it makes); :func:`execute` draws
without holding it, handing generation rows to a ``record`` callback (the CLI writes them to the
workspace, the API to its journal).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workbench.records import PersonaCard
    from workbench.store.workspace import Workspace

GENERATORS = ("patch", "diffusers")
GRAPH_ENCODERS = ("gat", "gat-noalign", "sage")
JOURNAL = ".journal.jsonl"


@dataclass
class PersonalizeConfig:
    """What :func:`personalize` makes (see the module docstring); :meth:`check` names a bad field."""

    prompts: str
    out: str
    users: list[str] = field(default_factory=list)
    cohorts: list[tuple[str, str | None]] = field(default_factory=list)  # (name, SQL or None: a stored cohort)
    archetypes: int | None = None
    new_users: dict[str, list[str]] = field(default_factory=dict)  # new user id -> item ids
    split: str | None = None
    encoder: str | None = None  # None: gat when the split has gat personas, else tfidf
    rewriter: str = "template"
    rewriter_model: str | None = None
    candidates: int = 1
    generator: str = "patch"
    model: str | None = None
    pool: str = "samples"
    images: int = 1
    size: int = 256
    steps: int | None = None
    guidance: str = "cfg"
    guidance_scale: float | None = None
    seed: int = 0
    baseline: bool = False
    max_prompts: int | None = None  # the set's first N prompts (None: all)

    def check(self) -> None:
        """Raise ``ValueError`` naming the field and the fix."""
        if not (self.users or self.cohorts or self.archetypes or self.new_users):
            raise ValueError(
                "who: pass users, cohorts, archetypes or new users (--users, --cohort, --archetypes, --new-users)"
            )
        if self.generator not in GENERATORS:
            raise ValueError(f"generator: {self.generator!r} is not one of {', '.join(GENERATORS)}")
        if self.generator == "diffusers" and not self.model:
            raise ValueError("model: the diffusers generator needs --model (a model id or folder, or random:sdxl-tiny)")
        checks = [
            ("images", self.images, 1, 16),
            ("size", self.size, 32, 2048),
            ("candidates", self.candidates, 1, 64),
            ("seed", self.seed, 0, 2**31 - 1),
        ]
        for name, value, lo, hi in checks:
            if not isinstance(value, int) or not lo <= value <= hi:
                raise ValueError(f"{name}: must be an integer from {lo} to {hi}, got {value!r}")
        if self.archetypes is not None and self.archetypes < 2:
            raise ValueError(f"archetypes: must be at least 2, got {self.archetypes}")
        for name, where in self.cohorts:
            if where is not None and not where.strip():
                raise ValueError(f"cohorts: cohort {name!r} has an empty --where; give a SQL condition")
        for uid, items in self.new_users.items():
            if not items:
                raise ValueError(f"new_users: new user {uid!r} has no interactions; give at least one item id")


@dataclass
class Target:
    """Whom a persona speaks for: a user, a cohort, an archetype or a new user."""

    target_id: str
    kind: str  # user | cohort | archetype | new-user
    card: PersonaCard
    persona_id: str
    members: int | None = None
    definition: str | None = None


@dataclass
class Job:
    """One image to draw: a condition and what the manifest says of it."""

    condition: Any  # generation.conditions.UserCondition
    row: dict[str, Any]


@dataclass
class Plan:
    """What :func:`plan` resolved: targets, prompts, rewrites and the images to draw."""

    config: PersonalizeConfig
    split_id: str
    encoder: str
    prompt_set: str
    prompts: list[tuple[str, str]]
    targets: list[Target]
    jobs: list[Job]
    signing_dir: str
    seconds: dict[str, float]


def plan(ws: Workspace, cfg: PersonalizeConfig, *, progress: bool = True) -> Plan:
    """Resolve who, what and how in ``ws``: targets (storing the cohorts and archetypes it defines), prompts,
    rewrites (cached in the workspace) and one job per target x prompt x image (plus baselines)."""
    from workbench.images import ensure_writable
    from workbench.store.prompts import load_prompts, register_prompt_set
    from workbench.store.splits import resolve_split

    cfg.check()
    t0 = time.perf_counter()
    split_id = resolve_split(ws, cfg.split)
    encoder = cfg.encoder or _default_encoder(ws, split_id)
    prompt_set = register_prompt_set(ws, cfg.prompts)
    prompts = load_prompts(ws, prompt_set)[: cfg.max_prompts]
    if not prompts:
        raise ValueError(f"prompts: prompt set {prompt_set!r} is empty")
    targets = _targets(ws, cfg, split_id, encoder)
    ensure_writable(Path(cfg.out) / "images")  # before minutes of rewriting and drawing, not after
    t1 = time.perf_counter()
    rewrites = _rewrite(ws, cfg, targets, prompts, progress)
    t2 = time.perf_counter()
    jobs = _jobs(cfg, targets, prompt_set, prompts, rewrites)
    signing = Path(str(ws.path)).parent if str(ws.path) != ":memory:" else Path(".pwb")
    secs = {"personas": t1 - t0, "rewrite": t2 - t1}
    return Plan(cfg, split_id, encoder, prompt_set, prompts, targets, jobs, str(signing), secs)


def users_from(spec: str) -> list[str]:
    """``--users``: a file (txt: one id a line; csv/tsv: its ``user_id`` column, else its first) or
    comma-separated ids."""
    path = Path(spec)
    if not path.is_file():
        ids = [s.strip() for s in spec.split(",") if s.strip()]
        if not ids:
            raise ValueError("users: give a file of user ids or comma-separated ids")
        return ids
    if path.suffix.lower() in (".csv", ".tsv"):
        rows = _table(path)
        key = "user_id" if rows and "user_id" in rows[0] else next(iter(rows[0]), None) if rows else None
        ids = [str(r[key]).strip() for r in rows if key and str(r.get(key) or "").strip()]
    else:
        ids = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not ids:
        raise ValueError(f"users: {spec} lists no user ids")
    return ids


def new_users_from(path: str | Path) -> dict[str, list[str]]:
    """``--new-users``: ``{user id: item ids}`` from a csv/tsv with ``user_id`` and ``item_id`` columns (one
    row per interaction) or json/jsonl records ``{"user_id", "items": [...]}`` (or ``"item_id"``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"new_users: no file {str(path)!r}")
    if path.suffix.lower() in (".csv", ".tsv"):
        records = _table(path)
    elif path.suffix.lower() == ".json":
        records = json.loads(path.read_text(encoding="utf-8"))
    else:
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    out: dict[str, list[str]] = {}
    for n, r in enumerate(records if isinstance(records, list) else [], 1):
        if not isinstance(r, dict) or not str(r.get("user_id") or "").strip():
            raise ValueError(f"new_users: record {n} of {path.name} has no user_id (columns: user_id, item_id)")
        items = r.get("items") if "items" in r else [r.get("item_id")]
        items = [str(i).strip() for i in (items or []) if str(i or "").strip()]
        if not items:
            raise ValueError(f"new_users: record {n} of {path.name} (user {r['user_id']!r}) has no item_id or items")
        out.setdefault(str(r["user_id"]).strip(), []).extend(items)
    if not out:
        raise ValueError(f"new_users: {path.name} holds no users")
    return {u: list(dict.fromkeys(items)) for u, items in out.items()}


def _table(path: Path) -> list[dict[str, Any]]:
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t" if path.suffix.lower() == ".tsv" else ","))


def _default_encoder(ws: Workspace, split_id: str) -> str:
    from workbench.store.personas import persona_user_ids

    return "gat" if persona_user_ids(ws, split_id, "gat") else "tfidf"


def _targets(ws: Workspace, cfg: PersonalizeConfig, split_id: str, encoder: str) -> list[Target]:
    """Users, cohorts, archetypes and new users, in that order; unknown users and empty cohorts are errors."""
    from persona.cohorts import archetypes, cohort_persona
    from workbench.store.personas import cohort_info, load_personas

    out: list[Target] = []
    if cfg.users:
        cards = load_personas(ws, split_id, encoder, cfg.users)
        missing = [u for u in cfg.users if u not in cards]
        if missing:
            raise ValueError(
                f"users: no {encoder} persona for {len(missing)} user(s) in split {split_id!r}: "
                f"{', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''} (unknown ids, or run `pwb personas "
                f"mine --split {split_id} --encoder {encoder}`)"
            )
        out += [Target(u, "user", cards[u], f"{split_id}/{encoder}/{u}") for u in dict.fromkeys(cfg.users)]
    for name, where in cfg.cohorts:
        if where is None:
            info = cohort_info(ws, split_id, encoder, f"cohort:{name}")
            if info is None:
                raise ValueError(
                    f"cohorts: no stored cohort {name!r} for {encoder} personas in split {split_id!r}; "
                    "define it with --where SQL (or `pwb personas cohort NAME --where SQL`)"
                )
            card = load_personas(ws, split_id, encoder, [f"cohort:{name}"])[f"cohort:{name}"]
            members, definition = info["n_members"], info["definition"]
        else:
            try:
                made = cohort_persona(ws, name, where, split=split_id, encoder=encoder)
            except ValueError as exc:
                raise ValueError(f"cohorts: cohort {name!r}: {exc}") from None
            card, members, definition = made["card"], made["members"], where
        out.append(Target(card.user_id, "cohort", card, f"{split_id}/{encoder}/{card.user_id}", members, definition))
    if cfg.archetypes:
        for a in archetypes(ws, cfg.archetypes, split=split_id, encoder=encoder, seed=cfg.seed):
            card = a["card"]
            out.append(
                Target(card.user_id, "archetype", card, f"{split_id}/{encoder}/{card.user_id}", a["members"], "kmeans")
            )
    if cfg.new_users:
        out += _new_users(ws, cfg, split_id, encoder)
    seen: set[str] = set()
    for t in out:
        if t.target_id in seen:
            raise ValueError(f"who: {t.target_id!r} is given twice")
        seen.add(t.target_id)
    return out


def _new_users(ws: Workspace, cfg: PersonalizeConfig, split_id: str, encoder: str) -> list[Target]:
    """Cold-start personas for ``cfg.new_users`` from the split's trained graph encoder."""
    from evalbench.flows.coldstart import load_coldstart, read_coldstart

    name, kwargs = _parse_set(encoder)
    if name not in GRAPH_ENCODERS:  # a text encoder's personas: the split's gat serves the new users
        encoder, name, kwargs = "gat", "gat", {}
    model = load_coldstart(read_coldstart(ws, split_id, name, kwargs))
    out = []
    for uid, items in cfg.new_users.items():
        liked, unknown = model.interactions(uid, [(i, "like", None) for i in items])
        if not liked:
            raise ValueError(
                f"new_users: none of new user {uid!r}'s items are in split {split_id!r}'s catalogue "
                f"({', '.join(unknown[:5])}); give catalogue item ids"
            )
        card = model.maker.persona(uid, liked, {})
        out.append(Target(uid, "new-user", card, f"{split_id}/{encoder}-coldstart/{uid}", None, f"{len(liked)} items"))
    return out


def _parse_set(persona_set: str) -> tuple[str, dict[str, Any]]:
    """``"sage[epochs=3]"`` -> ``("sage", {"epochs": 3})`` (the inverse of :func:`persona.mining.persona_set`)."""
    import yaml

    if "[" not in persona_set or not persona_set.endswith("]"):
        return persona_set, {}
    name, _, rest = persona_set[:-1].partition("[")
    kwargs = {}
    for part in filter(None, rest.split(",")):
        k, _, v = part.partition("=")
        kwargs[k.strip()] = yaml.safe_load(v)
    return name, kwargs


def _rewrite(ws, cfg: PersonalizeConfig, targets: list[Target], prompts, progress: bool):
    """``{(target id, prompt id): Rewrite}`` (the workspace's cache answers repeated requests)."""
    from prompting.params import RewriteParams
    from prompting.rewriter import Rewriter
    from workbench.progress import progress_bar

    rw = Rewriter(cfg.rewriter, cfg.rewriter_model, workspace=ws)
    params = RewriteParams(candidates=cfg.candidates, seed=cfg.seed)
    chunk = max(1, 256 // len(prompts))  # targets per call: one cache lookup and one backend batch each
    out = {}
    bar = progress_bar(total=len(targets), desc="rewrite", unit="persona", disable=not progress, leave=False)
    with bar:
        for i in range(0, len(targets), chunk):
            part = targets[i : i + chunk]
            cards = [t.card for t in part for _ in prompts]
            got = rw.rewrite(cards, [p for _ in part for _, p in prompts], params)
            keys = [(t.target_id, pid) for t in part for pid, _ in prompts]
            out.update(zip(keys, got))
            bar.update(len(part))
    return out


def _jobs(cfg: PersonalizeConfig, targets: list[Target], prompt_set: str, prompts, rewrites) -> list[Job]:
    """One job per target x prompt x image, then its baseline when asked, in manifest order."""
    from generation.conditions import UserCondition
    from prompting.rewriter import persona_hash

    guide = {"guidance": cfg.guidance, "guidance_scale": cfg.guidance_scale}
    jobs = []
    for t in targets:
        phash = persona_hash(t.card)
        for pid, prompt in prompts:
            r = rewrites[(t.target_id, pid)]
            for j in range(cfg.images):
                base = {
                    "target_id": t.target_id,
                    "target_kind": t.kind,
                    "members": t.members,
                    "prompt_set": prompt_set,
                    "prompt_id": pid,
                    "prompt": prompt,
                    "image_index": j,
                    "seed": cfg.seed + j,
                }
                cond = UserCondition(
                    t.target_id,
                    r.rewritten,
                    negative_prompt=r.negative or None,
                    seed=cfg.seed + j,
                    persona_id=t.persona_id,
                    prompt_id=f"{prompt_set}/{pid}",
                    **guide,
                )
                row = {
                    **base,
                    "variant": "persona",
                    "persona_id": t.persona_id,
                    "persona_hash": phash,
                    "rewrite": r.rewritten,
                    "negative": r.negative or None,
                    "selector_score": r.selector_score,
                    "rewriter": f"{r.backend}:{r.model}" if r.model else r.backend,
                }
                jobs.append(Job(cond, row))
                if cfg.baseline:
                    bcond = UserCondition(
                        t.target_id, prompt, seed=cfg.seed + j, prompt_id=f"{prompt_set}/{pid}", **guide
                    )
                    brow = {**base, "variant": "baseline", "persona_id": None, "persona_hash": None}
                    brow |= {"rewrite": None, "negative": None, "selector_score": None, "rewriter": None}
                    jobs.append(Job(bcond, brow))
    return jobs


def read_journal(out: str | Path) -> dict[str, dict[str, Any]]:
    """``{condition id: manifest row}`` of the images a run in ``out`` finished (a torn last line, from a
    kill mid-write, is ignored; a row whose image file is gone is dropped, so it is drawn again)."""
    path = Path(out) / JOURNAL
    done: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return done
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and (Path(out) / str(row.get("image", ""))).is_file():
            done[row["condition_id"]] = row
    return done


class Stopped(RuntimeError):
    """:func:`execute` was told to stop (``should_stop``) before every image was drawn; a rerun resumes."""


def execute(
    p: Plan, *, record=None, progress: bool = True, backend: Any = None, on_image=None, should_stop=None
) -> dict[str, Any]:
    """Draw the plan's images not yet in ``out``'s journal, then write the run's files.

    ``record(rows)`` takes each image's ``(table, row)`` generation records (:func:`generation.pipeline.
    record_rows`); ``backend`` reuses a built generation backend; ``on_image(row)`` hears of each image drawn;
    ``should_stop()``, asked before each image, stops the run with :class:`Stopped`. Returns the run summary
    (``run.json``)."""
    # 1. The folder, what an earlier run finished, the backend
    from evalbench.flows.personalize_outputs import write_outputs
    from generation.pipeline import generate, get_backend, record_rows
    from workbench.images import ensure_writable
    from workbench.progress import progress_bar

    cfg, out = p.config, Path(p.config.out)
    ensure_writable(out / "images")
    started = time.time()
    done = read_journal(out)
    todo = [j for j in p.jobs if j.condition.condition_id not in done]
    _write_run(out, p, status="running", started=started, drawn=0, reused=len(p.jobs) - len(todo))
    if backend is None and todo:
        kwargs: dict[str, Any] = {"pool": cfg.pool} if cfg.generator == "patch" else {}
        backend = get_backend(cfg.generator, model=cfg.model, **kwargs)
    # 2. Draw one image at a time: each is journalled once its file and rows are written
    secs = {"draw": 0.0, "save_and_sign": 0.0, "records": 0.0}
    journal = open(out / JOURNAL, "a", encoding="utf-8")  # noqa: SIM115 - kept open across the loop
    try:
        bar = progress_bar(todo, desc="personalize", unit="image", disable=not progress)
        for job in bar:
            if should_stop is not None and should_stop():
                raise Stopped(f"stopped with {len(done)} of {len(p.jobs)} images drawn; run it again to resume")
            t0 = time.perf_counter()
            (g,) = generate(
                [job.condition],
                backend=backend,
                out_dir=out / "images",
                signing_dir=p.signing_dir,
                height=cfg.size,
                width=cfg.size,
                steps=cfg.steps,
                progress=False,
            )
            t1 = time.perf_counter()
            if record is not None:
                record(record_rows([job.condition], [g]))
            t2 = time.perf_counter()
            secs["draw"] += (t1 - t0) - g.save_s  # the generator's own time and its per-call set-up
            secs["save_and_sign"] += g.save_s
            secs["records"] += t2 - t1
            row = _image_row(job, g, out)
            journal.write(json.dumps(row, sort_keys=True) + "\n")
            journal.flush()
            os.fsync(journal.fileno())
            done[row["condition_id"]] = row
            if on_image is not None:
                on_image(row)
    finally:
        journal.close()
    # 3. The manifest, personas, contact sheet and run.json
    t3 = time.perf_counter()
    rows = [done[j.condition.condition_id] for j in p.jobs]
    write_outputs(p, rows)
    secs["write"] = time.perf_counter() - t3
    timings = {**{k: round(v, 4) for k, v in p.seconds.items()}, **{k: round(v, 4) for k, v in secs.items()}}
    return _write_run(
        out, p, status="completed", started=started, drawn=len(todo), reused=len(p.jobs) - len(todo), timings=timings
    )


def _image_row(job: Job, g, out: Path) -> dict[str, Any]:
    """The manifest row of a drawn image."""
    from workbench.provenance import watermark_id

    params = g.params
    kind = params.get("provenance")
    return {
        **job.row,
        "condition_id": job.condition.condition_id,
        "generation_id": g.generation_id,
        "generator": g.backend,
        "model": str(g.model),
        "guidance": job.condition.guidance,
        "guidance_scale": job.condition.guidance_scale,
        "height": g.image.height,
        "width": g.image.width,
        "image": os.path.relpath(g.image_path, out),
        "content_sha256": params.get("image_sha256"),
        "sha256": params.get("file_sha256"),
        "provenance": kind,
        "watermark_id": f"{watermark_id(g.generation_id):08x}" if kind == "c2pa+watermark" else None,
        "seconds": round(g.latency_s, 4),
    }


def _write_run(out: Path, p: Plan, *, status: str, started: float, drawn: int, reused: int, timings=None) -> dict:
    """``run.json``: the config, code version, counts and timings (written at the start and at the end)."""
    from workbench.images import write_atomic
    from workbench.provenance import software_version

    run = {
        "status": status,
        "config": asdict(p.config),
        "code_version": software_version(),
        "split": p.split_id,
        "encoder": p.encoder,
        "prompt_set": p.prompt_set,
        "targets": len(p.targets),
        "prompts": len(p.prompts),
        "images": len(p.jobs),
        "drawn": drawn,
        "reused": reused,
        "started_at": started,
        "finished_at": time.time() if status == "completed" else None,
        "timings_s": timings or {},
        "files": ["manifest.parquet", "manifest.csv", "personas.jsonl", "index.html", "images/"],
    }
    write_atomic(out / "run.json", json.dumps(run, indent=2, default=str))
    return run


def personalize(ws: Workspace, cfg: PersonalizeConfig, *, progress: bool = True) -> dict[str, Any]:
    """:func:`plan` then :func:`execute` with the generation rows written to ``ws``."""
    from workbench.store.generations import save_generation_rows

    p = plan(ws, cfg, progress=progress)
    return execute(p, record=lambda rows: save_generation_rows(ws, rows), progress=progress)
