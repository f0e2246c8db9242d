"""Cohort personas: one persona for a group of users, defined by SQL or found by clustering.

* :func:`cohort_persona`: members chosen by a SQL ``WHERE`` expression over a per-user table of the
  split (see :func:`cohort_columns`: declared demographics, behaviour counts, liked tags), e.g.
  ``gender = 'F' AND age < 30 AND list_contains(liked_tags, 'Film-Noir')``.
* :func:`archetypes`: k-means (scikit-learn) over the members' persona embeddings; each cluster
  becomes an archetype persona.

A cohort persona aggregates its members' stored persona cards (so mine them first): interests are the
mean member trait weights, evidence the items carrying most member evidence weight, the embedding the
mean, demographics only those every member shares. It is stored like a user's persona under
``cohort:<name>`` (so ``pwb rewrite`` and the benchmark can use it) with its definition and members
in the ``cohorts`` table. :func:`planted_recovery` scores archetypes against planted personas.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import Any

import numpy as np

from workbench.records import Evidence, PersonaCard
from workbench.store.datasets import dataset_meta, load_users
from workbench.store.personas import cohort_members, load_personas, save_cohort
from workbench.store.splits import resolve_split, split_dataset, split_roles, split_users
from workbench.store.workspace import Workspace, WorkspaceError

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _member_columns(ws: Workspace, split_id: str) -> tuple[dict[str, list[Any]], dict[str, str]]:
    """The per-user table a cohort's ``WHERE`` runs over: ``(columns, SQL types of the non-text ones)``."""
    from persona.mining import load_context

    ctx = load_context(ws, split_id)
    users = sorted(ctx.users)
    cols: dict[str, list[Any]] = {"user_id": users}
    types: dict[str, str] = {}
    for key in ctx.meta.get("demographics", []):
        vals = [ctx.users[u].attributes.get(key) for u in users]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals if v not in (None, ""))
        cols[key] = [None if v in (None, "") else (float(v) if numeric else str(v)) for v in vals]
        types[key] = "DOUBLE" if numeric else "VARCHAR"
    roles = split_roles(ws, split_id)
    cols["role"] = [roles.get(u, "train") for u in users]
    n_vis, n_like, n_dis, mean_v, tags = [], [], [], [], []
    for u in users:
        xs = ctx.visible.get(u, [])
        vals = [x.value for x in xs if x.value is not None]
        n_vis.append(len(xs))
        n_like.append(sum(ctx.is_liked(x) for x in xs))
        n_dis.append(sum(ctx.is_disliked(x) for x in xs))
        mean_v.append(float(np.mean(vals)) if vals else None)
        tags.append(sorted({t for x in xs if ctx.is_liked(x) for t in ctx.items[x.item_id].tags}))
    cols.update(n_visible=n_vis, n_liked=n_like, n_disliked=n_dis, mean_value=mean_v, liked_tags=tags)
    types.update(
        n_visible="INTEGER", n_liked="INTEGER", n_disliked="INTEGER", mean_value="DOUBLE", liked_tags="VARCHAR[]"
    )
    return cols, types


def cohort_columns(ws: Workspace, split: str | None = None) -> list[str]:
    """Columns a cohort's ``WHERE`` expression may use."""
    return list(_member_columns(ws, resolve_split(ws, split))[0])


def select_members(ws: Workspace, split_id: str, where: str) -> list[str]:
    """User ids matching ``where`` (a SQL boolean expression over :func:`cohort_columns`)."""
    if not where or not where.strip():
        raise ValueError("--where must be a SQL condition, e.g. \"age < 30 AND gender = 'F'\"")
    if ";" in where:
        raise ValueError("--where must be a single SQL condition (no ';')")
    return cohort_members(ws, *_member_columns(ws, split_id), where)


def aggregate_cards(
    cohort_id: str,
    cards: list[PersonaCard],
    *,
    n_traits: int = 6,
    n_evidence: int = 10,
    item_noun: str = "items",
    backend=None,
) -> PersonaCard:
    """One persona for a group (see the module docstring)."""
    from persona.evidence import verbalize_cards

    if not cards:
        raise ValueError(f"cohort {cohort_id!r} has no members with personas")
    n = len(cards)
    tw: dict[tuple[str, str], float] = defaultdict(float)
    for c in cards:
        for t in c.traits:
            tw[(t["name"], t.get("kind", "interest"))] += t["weight"] / n
    interests = sorted(((k, v) for k, v in tw.items() if k[1] == "interest"), key=lambda kv: (-abs(kv[1]), kv[0]))
    cues = sorted(((k, v) for k, v in tw.items() if k[1] == "cue"), key=lambda kv: (-kv[1], kv[0]))
    traits = [{"name": k[0], "weight": round(v, 4), "kind": "interest"} for k, v in interests[:n_traits]]
    traits += [{"name": k[0], "weight": round(v, 4), "kind": "cue"} for k, v in cues[:3]]
    ev_w: dict[str, float] = defaultdict(float)
    snippets: dict[str, str] = {}
    for c in cards:
        for e in c.evidence:
            ev_w[e.item_id] += e.weight / n
            snippets.setdefault(e.item_id, e.snippet)
    evidence = [
        Evidence(i, round(w, 6), snippets[i])
        for i, w in sorted(ev_w.items(), key=lambda kv: (-kv[1], kv[0]))[:n_evidence]
    ]
    demo = {}
    first = cards[0].demographics
    for k, v in first.items():
        if all(c.demographics.get(k) == v for c in cards):
            demo[k] = v
    embs = [c.embedding for c in cards if c.embedding]
    emb = [round(float(x), 5) for x in np.mean(np.asarray(embs, dtype=np.float32), 0)] if len(embs) == n else None
    card = PersonaCard(cohort_id, "", traits, evidence, emb, f"{cards[0].model_version}+cohort", demo)
    return verbalize_cards([card], backend, item_noun=item_noun)[0]


def _member_cards(ws: Workspace, split_id: str, encoder: str, members: list[str]) -> list[PersonaCard]:
    """The stored persona cards of ``members`` who have one, in member order."""
    cards = load_personas(ws, split_id, encoder, members)
    if not cards:
        raise WorkspaceError(
            f"No {encoder} personas for these users in split {split_id!r}: run "
            f"`pwb personas mine --split {split_id} --encoder {encoder}` first."
        )
    return [cards[u] for u in members if u in cards]


def cohort_persona(
    ws: Workspace, name: str, where: str, *, split: str | None = None, encoder: str = "tfidf", backend=None
) -> dict[str, Any]:
    """Define cohort ``name`` by ``where``, aggregate its members' personas, store both."""
    if not _NAME.match(name or ""):
        raise ValueError(f"cohort name {name!r} must be 1-64 letters, digits, '_', '.' or '-'")
    split_id = resolve_split(ws, split)
    members = select_members(ws, split_id, where)
    if not members:
        raise ValueError(f"no users match --where {where!r} in split {split_id!r}")
    cards = _member_cards(ws, split_id, encoder, members)
    noun = dataset_meta(ws, split_dataset(ws, split_id)).get("item_noun", "items")
    card = aggregate_cards(f"cohort:{name}", cards, item_noun=noun, backend=backend)
    save_cohort(ws, split_id, encoder, card, "sql", where, [c.user_id for c in cards])
    return {"cohort": f"cohort:{name}", "members": len(cards), "matched": len(members), "card": card}


def archetypes(
    ws: Workspace,
    k: int = 8,
    *,
    split: str | None = None,
    encoder: str = "tfidf",
    seed: int = 0,
    roles: tuple[str, ...] = ("train", "heldout", "coldstart"),
    backend=None,
) -> list[dict[str, Any]]:
    """Cluster the split's persona embeddings into ``k`` archetypes (k-means), store each as a persona."""
    from sklearn.cluster import KMeans

    if k < 2:
        raise ValueError(f"k must be >= 2, got {k}")
    split_id = resolve_split(ws, split)
    users = split_users(ws, split_id, roles)
    cards = load_personas(ws, split_id, encoder, users)
    cards = {u: c for u, c in cards.items() if c.embedding}
    if len(cards) < k:
        raise WorkspaceError(
            f"only {len(cards)} {encoder} personas with embeddings in split {split_id!r}; need >= k={k}. "
            f"Run `pwb personas mine --split {split_id} --encoder {encoder}` first."
        )
    ids = sorted(cards)
    x = np.asarray([cards[u].embedding for u in ids], dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-12
    labels = KMeans(k, n_init=10, random_state=seed).fit_predict(x)
    noun = dataset_meta(ws, split_dataset(ws, split_id)).get("item_noun", "items")
    out = []
    for c in range(k):
        members = [u for u, lab in zip(ids, labels) if lab == c]
        card = aggregate_cards(f"archetype:{c}", [cards[u] for u in members], item_noun=noun, backend=backend)
        save_cohort(ws, split_id, encoder, card, "archetype", f"kmeans k={k} seed={seed}", members)
        out.append({"cohort": f"archetype:{c}", "members": len(members), "card": card, "member_ids": members})
    return out


def planted_recovery(
    ws: Workspace, k: int | None = None, *, split: str | None = None, encoder: str = "tfidf", seed: int = 0
) -> dict[str, Any]:
    """NMI and ARI of k-means clusters of persona embeddings against the planted personas of a synthetic
    dataset (``User.ground_truth['persona']``); ``k`` defaults to the number of planted personas."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    split_id = resolve_split(ws, split)
    users = load_users(ws, split_dataset(ws, split_id))
    truth = {u: (user.ground_truth or {}).get("persona") for u, user in users.items()}
    truth = {u: p for u, p in truth.items() if p is not None}
    if not truth:
        raise WorkspaceError(f"split {split_id!r} has no planted personas (import a synthetic dataset)")
    cards = {u: c for u, c in load_personas(ws, split_id, encoder, sorted(truth)).items() if c.embedding}
    if not cards:
        raise WorkspaceError(f"No {encoder} personas with embeddings in split {split_id!r}: mine them first.")
    ids = sorted(cards)
    x = np.asarray([cards[u].embedding for u in ids], dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-12
    y = [truth[u] for u in ids]
    k = k or len(Counter(y))
    labels = KMeans(k, n_init=10, random_state=seed).fit_predict(x)
    return {
        "encoder": encoder,
        "users": len(ids),
        "k": k,
        "nmi": float(normalized_mutual_info_score(y, labels)),
        "ari": float(adjusted_rand_score(y, labels)),
    }
