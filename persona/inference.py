"""Persona inference in batches: embeddings, attention, evidence, interests, cards and text for a block of users
at a time, the same on any executor.

A trained graph encoder's item states (:math:`i^{(0)}, i^{(1)}`) are computed once; each user then depends only on
their own edges and those states (the model has no per-user parameters). So a split's users are cut into
batches (:class:`UserBatch`: the users' input rows, edges and visible interactions, read from the split's
columns) and every batch goes through one pure function, :func:`infer_cards`, with what all batches share
(:class:`CardModel`: the model, the item states, the catalogue, the population a card is scored against). The
function runs in this process (``executor="local"``), in worker processes, or on a Ray cluster
(:mod:`workbench.executors`); given the same checkpoint the cards are the same wherever it ran, and the same as
:meth:`persona.models.gat.GatPersonaEncoder.encode` gives one user at a time (tested).

Each batch's cards come back as rows (:class:`CardRows`) that the driver streams to Parquet parts; the parts go
into the workspace in one bulk insert (:func:`workbench.store.personas.save_persona_parts`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workbench.records import Interaction, User

#: torch threads a batch runs with: one, so that batches on one worker or several, local or Ray, add their
#: numbers in the same order and give identical cards (and several workers do not fight over cores)
BATCH_THREADS = 1


@dataclass
class CardModel:
    """What every batch shares: the trained model and its item states, the catalogue and the population.

    Attributes:
        model: The trained :class:`~persona.models.gat_net.PersonaGAT` (eval mode).
        i0, i1: Item states ``(I, D)`` in ``item_ids`` order (:func:`persona.models.gat.infer_items`).
        item_ids: The graph's items, sorted.
        items: The catalogue, by id.
        meta: The dataset's meta (thresholds, demographics, item noun).
        population: The split's :class:`persona.traits.Population` (cards are scored against it).
        card: Card options (``traits``, ``n_traits``, ``token_budget``, ``recency_half_life``).
    """

    split_id: str
    dataset_id: str
    model: Any
    i0: Any
    i1: Any
    item_ids: list[str]
    items: dict[str, Any]
    meta: dict[str, Any]
    population: Any
    model_version: str
    card: dict[str, Any] = field(default_factory=dict)

    @property
    def attentive(self) -> bool:
        return bool(self.model.attentive)


@dataclass
class UserBatch:
    """One block of users: their graph inputs and their visible interactions, as arrays (cheap to send to a
    worker; the worker makes the records).

    Attributes:
        user_ids: The users, in graph order.
        attributes: Each user's attributes (JSON text or a dict), for names to scrub and declared demographics.
        x_user: Input rows ``(B, F_u)``.
        ptr: ``(B + 1,)`` offsets of each user's edges (and visible interactions: one per edge, same order).
        item: Graph item positions of the edges ``(E,)``.
        edge_attr, liked, disliked: The edges' features and flags.
        kinds, kind, value, has_value, timestamp, has_timestamp: The interactions' kinds (``kind`` indexes
            ``kinds``), values and times.
        texts: ``{edge position: text}`` of the interactions with one.
    """

    index: int
    user_ids: list[str]
    attributes: list[Any]
    x_user: Any
    ptr: np.ndarray
    item: Any
    edge_attr: Any
    liked: Any
    disliked: Any
    kinds: list[str]
    kind: np.ndarray
    value: np.ndarray
    has_value: np.ndarray
    timestamp: np.ndarray
    has_timestamp: np.ndarray
    texts: dict[int, str] = field(default_factory=dict)

    def visible(self, item_ids: list[str]) -> dict[str, list[Interaction]]:
        """Each user's visible interactions, in the split's order."""
        items = self.item.tolist()
        kind, value, ts = self.kind.tolist(), self.value.tolist(), self.timestamp.tolist()
        has_value, has_ts = self.has_value.tolist(), self.has_timestamp.tolist()
        out = {}
        for u, uid in enumerate(self.user_ids):
            out[uid] = [
                Interaction(
                    uid,
                    item_ids[items[r]],
                    self.kinds[kind[r]],
                    value[r] if has_value[r] else None,
                    ts[r] if has_ts[r] else None,
                    self.texts.get(r, ""),
                )
                for r in range(int(self.ptr[u]), int(self.ptr[u + 1]))
            ]
        return out


@dataclass
class CardRows:
    """A batch's cards as Arrow tables: ``personas`` (one row a user) and ``evidence`` (one row an evidence
    item), in the columns :func:`workbench.store.personas.save_persona_parts` reads."""

    index: int
    personas: Any
    evidence: Any

    def __len__(self) -> int:
        return self.personas.num_rows


def _schemas():
    """The Arrow schemas of :class:`CardRows`' two tables."""
    import pyarrow as pa

    personas = pa.schema(
        [
            ("user_id", pa.string()),
            ("summary", pa.string()),
            ("traits", pa.string()),
            ("demographics", pa.string()),
            ("embedding", pa.list_(pa.float32())),
            ("model_version", pa.string()),
        ]
    )
    evidence = pa.schema(
        [
            ("user_id", pa.string()),
            ("rank", pa.int32()),
            ("item_id", pa.string()),
            ("weight", pa.float64()),
            ("snippet", pa.string()),
        ]
    )
    return personas, evidence


def embed_batch(cm: CardModel, batch: UserBatch):
    """``(h_user (B, D), alpha (E,) or None)``: the users' pass over their own edges (as :func:`infer` makes it)."""
    import torch

    local = torch.repeat_interleave(torch.arange(len(batch.user_ids)), torch.from_numpy(np.diff(batch.ptr)))
    iu = torch.stack([batch.item, local])
    with torch.no_grad():
        return cm.model.users(
            batch.x_user, cm.i0, cm.i1, iu, batch.edge_attr, batch.liked, batch.disliked, attention=cm.attentive
        )


def ranked_items(cm: CardModel, batch: UserBatch, alpha) -> list[list[tuple[str, float]]]:
    """Each user's ``(item_id, weight)`` best first: attention (mean over heads and layers), or, for the
    attention-free ``sage``, the normalised centred rating (liked items first)."""
    import torch

    out = []
    for u in range(len(batch.user_ids)):
        lo, hi = int(batch.ptr[u]), int(batch.ptr[u + 1])
        items = batch.item[lo:hi].tolist()
        if alpha is not None:
            weights = alpha[lo:hi]
        else:
            weights = torch.softmax(batch.edge_attr[lo:hi, 0] + 2 * batch.liked[lo:hi].float(), 0)
        out.append(
            sorted(((cm.item_ids[i], float(w)) for i, w in zip(items, weights.tolist())), key=lambda t: (-t[1], t[0]))
        )
    return out


def infer_cards(cm: CardModel, batch: UserBatch) -> CardRows:
    """Every card of ``batch``: the users' embeddings and attention, then evidence, traits and the template
    summary (:func:`persona.evidence.build_card`), scrubbed as the store would scrub them. Pure: the same inputs
    give the same rows on any worker."""
    import pyarrow as pa
    import torch

    from persona.evidence import build_card
    from persona.models.base import PersonaContext
    from workbench.scrub import scrub_card

    threads = torch.get_num_threads()
    torch.set_num_threads(BATCH_THREADS)
    try:
        h, alpha = embed_batch(cm, batch)
    finally:
        torch.set_num_threads(threads)
    users = {
        u: User(u, json.loads(a) if isinstance(a, str) else dict(a or {}))
        for u, a in zip(batch.user_ids, batch.attributes)
    }
    visible = batch.visible(cm.item_ids)
    ctx = PersonaContext(
        cm.split_id, cm.dataset_id, users, cm.items, visible, cm.meta, cache={"population": cm.population}
    )
    persona_schema, evidence_schema = _schemas()
    personas: dict[str, list] = {c: [] for c in persona_schema.names}
    evidence: dict[str, list] = {c: [] for c in evidence_schema.names}
    for u, (uid, ranked) in enumerate(zip(batch.user_ids, ranked_items(cm, batch, alpha))):
        card = build_card(
            ctx,
            uid,
            ranked,
            [round(float(v), 5) for v in h[u].tolist()],
            cm.model_version,
            population=cm.population,
            **cm.card,
        )
        card = scrub_card(card)  # the store's last guard (save_personas does the same)
        personas["user_id"].append(uid)
        personas["summary"].append(card.summary)
        personas["traits"].append(json.dumps(card.traits, sort_keys=True, default=str))
        personas["demographics"].append(json.dumps(card.demographics, sort_keys=True, default=str))
        personas["embedding"].append(card.embedding)
        personas["model_version"].append(card.model_version)
        for rank, e in enumerate(card.evidence, start=1):
            evidence["user_id"].append(uid)
            evidence["rank"].append(rank)
            evidence["item_id"].append(e.item_id)
            evidence["weight"].append(e.weight)
            evidence["snippet"].append(e.snippet)
    return CardRows(batch.index, pa.table(personas, schema=persona_schema), pa.table(evidence, schema=evidence_schema))


def _take(values, positions: np.ndarray) -> list:
    """``values[positions]`` as a list, for a Python list or an Arrow array (taken without a Python row per value)."""
    if isinstance(values, list):
        return [values[int(u)] for u in positions]
    return values.take(positions).to_pylist()


def user_batches(frame, graph, positions: np.ndarray, attributes, batch_size: int):
    """:class:`UserBatch` es of the users at ``positions`` (graph order, increasing), ``batch_size`` at a time,
    read from the split's columns (``frame``) and graph (``graph``); ``attributes`` holds every graph user's (a list,
    or an Arrow array of JSON text)."""
    import torch

    ptr = frame.ptr
    text_rows = frame.text_rows
    for index, start in enumerate(range(0, len(positions), max(1, batch_size))):
        users = positions[start : start + batch_size]
        lo, hi = ptr[users], ptr[users + 1]
        counts = hi - lo
        # the rows of the batch's users: each user's span, in order
        rows = np.repeat(lo - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) + np.arange(int(counts.sum()))
        local_ptr = np.zeros(len(users) + 1, dtype=np.int64)
        np.cumsum(counts, out=local_ptr[1:])
        texts = {}
        if len(text_rows):
            at = np.minimum(np.searchsorted(text_rows, rows), len(text_rows) - 1)
            texts = {int(k): frame.texts[int(at[k])] for k in np.flatnonzero(text_rows[at] == rows)}
        index_t = torch.from_numpy(rows)
        yield UserBatch(
            index,
            [frame.user_ids[u] for u in users],
            _take(attributes, users),
            graph.x_user[torch.from_numpy(users)],
            local_ptr,
            graph.edge_index[1, index_t],
            graph.edge_attr[index_t],
            graph.edge_liked[index_t],
            graph.edge_disliked[index_t],
            list(frame.kinds),
            frame.kind[rows],
            frame.value[rows],
            frame.has_value[rows],
            frame.timestamp[rows],
            frame.has_timestamp[rows],
            texts,
        )
