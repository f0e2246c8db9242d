"""Mine personas for a split's users with a registered encoder and store them."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from persona.models import ENCODERS
from persona.models.base import PersonaContext
from workbench.records import PersonaCard
from workbench.store.datasets import dataset_meta, load_items, load_users
from workbench.store.personas import (
    load_personas,
    persona_progress,
    persona_user_ids,
    save_personas,
    users_without_persona,
)
from workbench.store.splits import resolve_split, split_dataset, split_record, split_users, visible_interactions
from workbench.store.workspace import Workspace, WorkspaceError, dumps

ROLES = ("train", "heldout", "coldstart")


def load_context(ws: Workspace, split_id: str) -> PersonaContext:
    """Users, items and visible interactions of a split (hidden items are never loaded here)."""
    dataset_id = split_dataset(ws, split_id)
    visible = defaultdict(list)
    for x in visible_interactions(ws, split_id):
        visible[x.user_id].append(x)
    return PersonaContext(
        split_id,
        dataset_id,
        load_users(ws, dataset_id),
        load_items(ws, dataset_id),
        dict(visible),
        dataset_meta(ws, dataset_id),
    )


def persona_set(encoder: str, encoder_kwargs: dict[str, Any] | None = None) -> str:
    """The name a split's personas are stored under: the encoder, plus the options it was given
    (``gat``, ``gat[traits=share]``, ``sage[epochs=3]``), so personas of one encoder made with other
    options sit beside each other instead of answering for each other. Rewrites and benchmark runs
    name their personas by it (``pwb rewrite --encoder 'gat[traits=share]'``).

    >>> persona_set("gat"), persona_set("gat", {"traits": "share", "progress": True})
    ('gat', 'gat[traits=share]')
    """
    extra = {k: v for k, v in sorted((encoder_kwargs or {}).items()) if k not in ("progress", "checkpoint")}
    if not extra:
        return encoder
    return f"{encoder}[{','.join(f'{k}={v}' for k, v in extra.items())}]"


def mine_personas(
    ws: Workspace,
    split: str | None = None,
    encoder: str = "tfidf",
    *,
    roles: tuple[str, ...] = ROLES,
    force: bool = False,
    progress: bool = False,
    encoder_kwargs: dict[str, Any] | None = None,
    batch_size: int | None = None,
    executor: str = "local",
    workers: int | None = None,
    address: str | None = None,
) -> dict[str, Any]:
    """Fit ``encoder`` on the split's visible interactions and store a persona for each user in ``roles``.

    The personas are stored under :func:`persona_set` (the encoder and its options; the result's
    ``encoder``). Users who already have a persona there are skipped unless ``force``. Options that only
    change how cards are written (the encoder's ``card_options``, e.g. ``traits``) reuse the trained
    checkpoint of the same split and training options.

    Graph encoders (``gat``, ``gat-noalign``, ``sage``) read the split as columns, train (or reuse their
    checkpoint), then infer users ``batch_size`` at a time (default 2,048) on ``executor`` (``local``,
    ``process`` or ``ray``; ``workers`` and a Ray ``address``: :mod:`workbench.executors`), stream the cards to
    Parquet parts and store them in one bulk insert (:func:`_mine_graph`). Every executor gives the same cards.
    """
    cls = ENCODERS.get(encoder)
    label = persona_set(encoder, encoder_kwargs)
    bad = [r for r in roles if r not in ROLES]
    if bad:
        raise ValueError(f"roles must be among {', '.join(ROLES)}, got {', '.join(bad)}")
    split_id = resolve_split(ws, split)
    if hasattr(cls, "prepare"):  # counted in SQL: a split of millions of users needs no list of them to start
        n_users, n_done = persona_progress(ws, split_id, label, roles)
        n_done = 0 if force else n_done
        out = {"split": split_id, "encoder": label, "mined": 0, "already_stored": n_done, "users": n_users}
        if n_done < n_users:
            job = _GraphJob(ws, split_id, encoder, cls, label, dict(encoder_kwargs or {}), force, progress)
            out.update(job.mine(roles, n_done, batch_size or 2048, executor, workers, address))
        return out
    users = split_users(ws, split_id, roles)
    done = set() if force else set(persona_user_ids(ws, split_id, label)) & set(users)
    todo = [u for u in users if u not in done]
    batch_size = batch_size or 256
    ckpt, training = None, None
    if todo:
        context = load_context(ws, split_id)
        kwargs = dict(encoder_kwargs or {})
        ckpt = checkpoint_path(ws, split_id, encoder, kwargs) if hasattr(cls, "save") else None
        if ckpt is not None and ckpt.exists() and not force and "checkpoint" not in kwargs:
            kwargs["checkpoint"] = str(ckpt)
        if ckpt is not None and progress:
            kwargs.setdefault("progress", True)
        model = cls(**kwargs).fit(context)
        if ckpt is not None and not kwargs.get("checkpoint"):
            model.save(ckpt)
        training = _training_note(model, reused=bool(kwargs.get("checkpoint")))
        todo = [u for u in todo if u in context.visible]
        from workbench.progress import progress_bar

        bar = progress_bar(total=len(todo), desc=f"mining personas ({label})", unit="user", disable=not progress)
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            save_personas(ws, split_id, label, model.encode(batch))
            bar.update(len(batch))
        bar.close()
    out = {"split": split_id, "encoder": label, "mined": len(todo), "already_stored": len(done), "users": len(users)}
    if ckpt is not None:
        out["checkpoint"] = str(ckpt)
    if training:
        out["training"] = training
    return out


def _training_note(model, reused: bool) -> str | None:
    """What training did (steps run, why it stopped), for encoders that report it; ``None`` otherwise."""
    report = getattr(model, "report", None)
    if report is None:
        return "reused the checkpoint" if reused else None
    return f"reused the checkpoint: {report.note()}" if reused else report.note()


def checkpoint_path(ws: Workspace, split_id: str, encoder: str, kwargs: dict[str, Any]):
    """Where a trained encoder of this split and configuration is kept: ``<workspace dir>/models/``.

    Options that only change how cards are written (the encoder class's ``card_options``) are not part of
    the key, so ``gat`` and ``gat[traits=share]`` share one trained model; the split's dataset and settings
    are, so a model is never reused for another split of the same name."""
    from pathlib import Path

    from workbench.store.runs import config_hash

    card_options = getattr(ENCODERS.get(encoder), "card_options", ()) if encoder in ENCODERS else ()
    base = Path(str(ws.path)).parent if str(ws.path) != ":memory:" else Path(".pwb")
    cfg = {k: v for k, v in sorted(kwargs.items()) if k not in ("progress", "checkpoint") and k not in card_options}
    # the split's own settings too: two workspaces in one folder may hold different splits of one name
    stored = split_record(ws, split_id)
    if stored is not None:
        cfg["_split"] = [stored[0], dumps(stored[1])]  # the stored text, so existing checkpoints keep their names
    return base / "models" / f"{split_id.replace('/', '_')}-{encoder}-{config_hash(cfg)[:12]}.pt"


def get_persona(ws: Workspace, user_id: str, split: str | None = None, encoder: str = "tfidf") -> PersonaCard:
    split_id = resolve_split(ws, split)
    cards = load_personas(ws, split_id, encoder, [user_id])
    if user_id not in cards:
        raise WorkspaceError(
            f"No {encoder} persona for user {user_id!r} in split {split_id!r}: "
            f"run `pwb personas mine --split {split_id} --encoder {encoder}` first "
            "(or check the user id)."
        )
    return cards[user_id]


class _GraphJob:
    """Mining with a graph encoder at any scale (:func:`mine_personas`): the split read as columns, the model
    trained or reused, users inferred in batches on an executor, cards streamed to Parquet and stored in bulk."""

    def __init__(self, ws, split_id, encoder, cls, label, kwargs, force, progress):
        self.ws, self.split_id, self.encoder, self.cls, self.label = ws, split_id, encoder, cls, label
        self.kwargs, self.force, self.progress = kwargs, force, progress
        self.timings: dict[str, float] = {}
        self.peaks: dict[str, float] = {}  # the process's peak memory (GiB) once each stage is done

    def _timed(self, name: str, fn):
        import time

        t = time.perf_counter()
        out = fn()
        self.timings[name] = round(time.perf_counter() - t, 2)
        self.peaks[name] = _peak_gib()
        return out

    def mine(self, roles, n_done: int, batch_size: int, executor: str, workers, address) -> dict[str, Any]:
        """The users of ``roles`` to mine (every one when none is done: no list of them), then :meth:`run`, with
        DuckDB's memory bounded throughout (``$PWB_DUCKDB_MEMORY``: the job's own arrays need the rest)."""
        ws, split_id = self.ws, self.split_id
        with ws.memory_limit():
            if n_done == 0 and set(roles) == set(ROLES):
                todo = None
            elif self.force:
                todo = split_users(ws, split_id, roles)
            else:
                todo = users_without_persona(ws, split_id, self.label, roles)
            return self.run(todo, batch_size, executor, workers, address)

    def run(self, todo: list[str] | None, batch_size: int, executor: str, workers, address) -> dict[str, Any]:
        """Mine ``todo`` (``None``: every user of the split with a visible interaction)."""
        import time

        import numpy as np

        from persona.graph import build_graph_frame
        from persona.inference import CardModel, infer_cards, user_batches
        from persona.models.base import PersonaContext
        from persona.models.gat import infer_items, save_item_states
        from workbench.executors import get_executor
        from workbench.progress import progress_bar
        from workbench.store.datasets import load_items
        from workbench.store.frames import attribute_values, visible_frame, visible_user_attributes
        from workbench.store.personas import save_persona_parts

        ws, split_id = self.ws, self.split_id
        # 1. The split as columns, and its graph
        started = time.perf_counter()
        with ws.memory_limit():  # sorted out of core past it: the read holds the columns, not DuckDB's buffers
            frame = self._timed("read split", lambda: visible_frame(ws, split_id))
        d = frame.dataset_id
        items, meta = load_items(ws, d), dataset_meta(ws, d)
        keys = list(meta.get("demographics", []))
        kwargs = dict(self.kwargs)
        ckpt = checkpoint_path(ws, split_id, self.encoder, kwargs)
        if ckpt.exists() and not self.force and "checkpoint" not in kwargs:
            kwargs["checkpoint"] = str(ckpt)
        if self.progress:
            kwargs.setdefault("progress", True)
        enc = self.cls(**kwargs)
        graph = self._timed(
            "graph",
            lambda: build_graph_frame(
                frame,
                items,
                meta,
                visible_user_attributes(ws, d, frame.user_ids, keys),
                attribute_values(ws, d, keys),
                text_encoder=enc.text_encoder,
                image_encoder=enc.image_encoder,
            ),
        )
        frame.release_positions()  # the graph's edge index holds them now
        # 2. The model: trained within the budget, or the checkpoint of these settings
        ctx = PersonaContext(split_id, d, {}, items, {}, meta)
        self._timed("train", lambda: enc.prepare(ctx, graph, started=started))
        if not kwargs.get("checkpoint"):
            enc.save(ckpt)
        i0, i1 = self._timed("item states", lambda: infer_items(enc.model, graph, item_fanout=enc.item_fanout))
        parts: dict[str, Any] = {}
        population = self._timed(
            "population",
            lambda: population_of_frame(
                frame, items, meta, parts=parts, liked=graph.edge_liked.numpy(), item=graph.edge_index[1].numpy()
            ),
        )
        save_item_states(ckpt, graph, i0, i1, parts)  # a server's new users need these, not the split
        cm = CardModel(
            split_id,
            d,
            enc.model,
            i0,
            i1,
            list(graph.item_ids),
            items,
            meta,
            population,
            enc.model_version,
            {
                "traits": enc.traits,
                "n_traits": enc.n_traits,
                "token_budget": enc.token_budget,
                "recency_half_life": enc.recency_half_life,
            },
        )
        # 3. Users in batches on the executor, their cards streamed to Parquet parts
        if todo is None:
            positions = np.arange(len(frame.user_ids), dtype=np.int64)  # every visible user (no index of ids)
        else:
            position = {u: k for k, u in enumerate(frame.user_ids)}
            positions = np.array(sorted(position[u] for u in todo if u in position), dtype=np.int64)
        attrs = visible_user_attributes(ws, d, frame.user_ids)
        folder = _parts_folder(ws, ckpt, self.label, positions, cm.card, batch_size)
        done = {int(p.stem.split("-")[1]) for p in folder.glob("personas-*.parquet")}
        bar = progress_bar(
            total=len(positions), desc=f"mining personas ({self.label})", unit="user", disable=not self.progress
        )
        t = time.perf_counter()
        batches = _skipping(user_batches(frame, graph, positions, attrs, batch_size), done, bar)
        pool = get_executor(executor, workers=workers, address=address)
        try:
            for _, rows in pool.map_shared(infer_cards, cm, batches):
                _write_part(folder, rows)
                bar.update(len(rows))
        finally:
            pool.close()
            bar.close()
        self.timings["cards"] = round(time.perf_counter() - t, 2)
        self.peaks["cards"] = _peak_gib()
        stored = self._timed("store", lambda: save_persona_parts(ws, split_id, self.label, folder))
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
        out = {"mined": stored, "checkpoint": str(ckpt)}
        note = _training_note(enc, reused=bool(kwargs.get("checkpoint")))
        if note:
            out["training"] = note
        return {**out, "executor": executor, "seconds": self.timings, "peak_gib": self.peaks}


def _peak_gib() -> float:
    """This process's peak resident memory so far, in GiB (Linux reports KiB)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**30 if sys.platform == "darwin" else 2**20), 2)


def _skipping(batches, done: set[int], bar):
    """``batches`` less those whose parts a killed run of the same job left (counted on the progress bar)."""
    for b in batches:
        if b.index in done:
            bar.update(len(b.user_ids))
        else:
            yield b


def population_of_frame(
    frame, items: dict, meta: dict, chunk: int = 20_000, parts: dict | None = None, liked=None, item=None
):
    """The split's :class:`persona.traits.Population` from its columns: :func:`persona.traits.population_of`'s,
    without a record per interaction (likes counted per item; the users who wrote something of their own read
    ``chunk`` at a time, in user order). ``parts``, when given, receives the counts it was made from (``likes``,
    ``said``: :func:`persona.traits.population_from`'s arguments). ``liked``, ``item``: each row's like flag and
    item position, when known (the graph's)."""
    import numpy as np

    from persona.graph import edge_columns
    from persona.models.base import PersonaContext
    from persona.traits import _liked_words, population_from
    from workbench.records import Interaction

    if liked is None:  # the graph's edge_liked, when it is built already
        _, liked, _, _ = edge_columns(frame, meta)
    item = frame.item if item is None else item  # the graph's item column, when the frame gave its own up
    counts = np.bincount(item[liked], minlength=len(frame.item_ids))
    likes = {frame.item_ids[i]: int(n) for i, n in enumerate(counts) if n}
    said: list[tuple[str, str]] = []
    if frame.texts:
        text_of = dict(zip(frame.text_rows.tolist(), frame.texts))
        ptr = frame.ptr
        writers = np.unique(np.searchsorted(ptr, frame.text_rows, side="right") - 1)  # the rows' users
        for start in range(0, len(writers), chunk):
            visible = {}
            for u in writers[start : start + chunk]:
                uid = frame.user_ids[u]
                visible[uid] = [
                    Interaction(
                        uid,
                        frame.item_ids[item[r]],
                        frame.kinds[frame.kind[r]],
                        float(frame.value[r]) if frame.has_value[r] else None,
                        float(frame.timestamp[r]) if frame.has_timestamp[r] else None,
                        text_of.get(r, ""),
                    )
                    for r in range(int(ptr[u]), int(ptr[u + 1]))
                ]
            said += _liked_words(PersonaContext(frame.split_id, frame.dataset_id, {}, items, visible, meta))
    if parts is not None:
        parts.update(likes=likes, said=said)
    return population_from(PersonaContext(frame.split_id, frame.dataset_id, {}, items, {}, meta), likes, said)


def _parts_folder(ws: Workspace, ckpt, label: str, positions, card: dict, batch_size: int):
    """Where a mining job's Parquet parts go: a folder named for the model (its weights), the users
    and the card options, so that a job killed part-way reuses the parts it wrote when run again (and a model
    trained again to other weights does not)."""
    import hashlib
    import json
    from pathlib import Path

    from persona.models.gat import model_fingerprint

    key = [label, card, batch_size, model_fingerprint(ckpt)]
    h = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode())
    h.update(positions.tobytes())
    base = Path(str(ws.path)).parent if str(ws.path) != ":memory:" else Path(".pwb")
    folder = base / "models" / f"{ckpt.stem}.cards-{h.hexdigest()[:12]}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _write_part(folder, rows) -> None:
    """One batch's cards as ``personas-<batch>.parquet`` and ``evidence-<batch>.parquet`` (written, then renamed:
    a part is either whole or absent)."""
    import pyarrow.parquet as pq

    for name, table in (("evidence", rows.evidence), ("personas", rows.personas)):
        # personas last: a batch counts as done when its personas part exists
        path = folder / f"{name}-{rows.index:06d}.parquet"
        tmp = folder / f".{path.name}.tmp"
        pq.write_table(table, tmp)
        tmp.replace(path)
