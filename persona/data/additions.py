"""A second table added to a stored dataset (``pwb data import table FILE --into DATASET``).

A newcomer's data often comes as several files about the same users and items: ratings, then free-text
tags (MovieLens' ``tags.csv``: userId, movieId, tag, timestamp), a users' demographics table, an items'
table of extra columns. :func:`read_addition` reads such files with the column mapping of
:func:`persona.data.table.load_table`; :func:`add_to_dataset` merges them into the stored dataset in one
transaction:

* **interactions** (a table with user and item columns) are added with their kind and text. One already
  stored (same user, item, kind, value, timestamp and text), or repeated in the file, is skipped and counted,
  so adding the same file twice adds nothing the second time;
* **users' attributes** (the ``user_attributes`` columns, on the interaction rows or in a users file) are
  merged into each user's attributes, and the columns join the dataset's ``demographics``;
* **items' columns** (title, text, image) fill what an item lacks (a title equal to its id, or a text equal
  to its title or id, is the importer's placeholder); tags are merged (the union, stored ones first).

Ids must name users and items of the dataset. Ids new to it are an error giving their number and the first
one, unless ``add_new`` (they are added, and counted) or ``lenient`` (their rows are skipped, and counted).
A value contradicting a stored one is an error naming the column and the first id, unless ``overwrite``.
Blank cells add nothing. Nothing is written unless the whole addition reads and merges cleanly.

Splits already made on the dataset keep their assignments, and added interactions follow them (the rule of
:func:`workbench.store.splits.visible_interactions`): a train user's are visible; a held-out or cold-start
user's are visible only on an item the split shows that user, stay hidden on an item hidden from that user,
and are left out on any other item. So an added interaction never brings a hidden item into the visible
history. The summary says where each such split puts the new interactions; a new split places them all.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from persona.data.table import ColumnMapping, _cell, _source_rows, interaction_rows, record_rows
from workbench.errors import DataError, Problems
from workbench.records import Interaction, Item, User
from workbench.store.datasets import (
    dataset_meta,
    dataset_params,
    extend_dataset,
    list_datasets,
    load_interactions,
    load_items,
    load_users,
    resolve_dataset,
)
from workbench.store.splits import dataset_splits, split_parts, split_roles
from workbench.store.workspace import Workspace
from workbench.tabular import parse_delimiter


@dataclass
class Addition:
    """What the files bring: per user the attribute values given, per item the fields given (only the mapped
    columns, blanks left out), the interactions, and where each id is first seen (for messages)."""

    mapping: ColumnMapping
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    interactions: list[Interaction] = field(default_factory=list)
    lines: list[tuple[str, int]] = field(default_factory=list)  # (file, line) of each interaction
    where: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)
    listed: dict[str, dict[str, tuple[str, int]]] = field(default_factory=lambda: {"user": {}, "item": {}})
    problems: Problems = field(default_factory=Problems)
    params: dict[str, Any] = field(default_factory=dict)

    def user(self, row: dict[str, Any], file: str, line: int, attrs: bool) -> bool:
        uid = _cell(row.get(self.mapping.user))
        values = {c: v for c in self.mapping.user_attributes if (v := _value(row.get(c))) != ""} if attrs else {}
        return self._merge("user", uid, self.users, values, file, line)

    def item(self, row: dict[str, Any], file: str, line: int, columns: bool) -> bool:
        m = self.mapping
        iid = _cell(row.get(m.item))
        values: dict[str, Any] = {}
        if columns:
            for name, col in (("title", m.item_title), ("text", m.item_text), ("image_uri", m.item_image)):
                if col and _cell(row.get(col)):
                    values[name] = _cell(row.get(col))
            if m.item_tags:
                tags = tuple(t.strip() for t in _cell(row.get(m.item_tags)).split(m.tags_separator) if t.strip())
                if tags:
                    values["tags"] = tags
        return self._merge("item", iid, self.items, values, file, line)

    def _merge(self, what: str, key: str, records: dict, values: dict, file: str, line: int) -> bool:
        """Record ``values`` for ``key``; a value contradicting an earlier row's is reported (``False``)."""
        old = records.setdefault(key, {})
        self.where.setdefault((what, key), (file, line))
        for name, value in values.items():
            if name in old and old[name] != value:
                column = name if what == "user" else item_column(self.mapping, name)
                self.problems.report(
                    DataError(
                        f"{what} {key!r} has conflicting {name} across rows ({old[name]!r}, then {value!r})",
                        file=file,
                        line=line,
                        field=column,
                        fix=f"Give each {what} one value per column.",
                    ),
                    "conflict",
                )
                return False
        old.update(values)
        return True


def item_column(m: ColumnMapping, name: str) -> str | None:
    """The column of the mapping that holds the item field ``name`` (``title``, ``text``, ``image_uri``, ``tags``)."""
    return {"title": m.item_title, "text": m.item_text, "image_uri": m.item_image, "tags": m.item_tags}[name]


def _value(v: Any) -> Any:
    return v.strip() if isinstance(v, str) else ("" if v is None else v)


def read_addition(
    interactions: str | os.PathLike | None = None,
    mapping: ColumnMapping | None = None,
    *,
    users: str | os.PathLike | None = None,
    items: str | os.PathLike | None = None,
    lenient: bool = False,
    split: str = "train",
    delimiter: str | None = None,
) -> Addition:
    """Read what is to be added: an interactions table (CSV/TSV/Parquet, a saved ``datasets`` folder or
    ``hf:NAME``) with the user and item columns on each row, and/or a users file (the user column and
    ``mapping.user_attributes``) and/or an items file (the item column and the item columns). Row-level
    problems raise, or under ``lenient`` are skipped and counted; see :func:`add_to_dataset`."""
    # 1. Something to read, and a users / items file has columns to add
    m = mapping or ColumnMapping()
    if interactions is None and users is None and items is None:
        raise DataError(
            "nothing to add", field="source", fix="Pass a table of interactions, a --users-file or an --items-file."
        )
    if users is not None and not m.user_attributes:
        raise DataError(
            "a users file adds attribute columns, and none is named",
            file=str(users),
            field="user_attributes",
            fix="Name them with --user-attrs COL,COL.",
        )
    if items is not None and not m.item_columns():
        raise DataError(
            "an items file adds item columns, and none is named",
            file=str(items),
            field="item columns",
            fix="Name them with --item-title-col, --item-text-col, --item-tags-col or --item-image-col.",
        )
    add = Addition(m, problems=Problems(lenient))
    sep = parse_delimiter(delimiter)
    add.params = {
        "interactions": str(interactions) if interactions is not None else None,
        "users": str(users) if users is not None else None,
        "items": str(items) if items is not None else None,
        "mapping": asdict(m),
        "split": split,
    }
    # 2. The users and items files (one row per id)
    for what, source in (("user", users), ("item", items)):
        if source is not None:
            _read_records(add, what, source, split, sep)
    # 3. The interactions, with the user and item columns on each row when those have no file
    if interactions is not None:
        _read_interactions(add, interactions, split, sep, users_file=users is not None, items_file=items is not None)
    return add


def _read_records(add: Addition, what: str, source: str | os.PathLike, split: str, sep: str | None) -> None:
    m = add.mapping
    column = m.user if what == "user" else m.item
    required = [column, *(m.user_attributes if what == "user" else m.item_columns())]
    file, rows = _source_rows(source, required, add.problems, split, sep)
    for line, row, key in record_rows(file, rows, what, column, add.problems):
        add.listed[what][key] = (file, line)
        add.user(row, file, line, True) if what == "user" else add.item(row, file, line, True)


def _read_interactions(
    add: Addition, source: str | os.PathLike, split: str, sep: str | None, *, users_file: bool, items_file: bool
) -> None:
    m, problems = add.mapping, add.problems
    required = m.interaction_columns() + ([] if users_file else m.user_attributes)
    required += [] if items_file else m.item_columns()
    file, rows = _source_rows(source, required, problems, split, sep)
    for line, row, x in interaction_rows(file, rows, m, problems):
        if not (add.user(row, file, line, not users_file) and add.item(row, file, line, not items_file)):
            continue
        add.interactions.append(x)
        add.lines.append((file, line))


def add_to_dataset(
    ws: Workspace, dataset: str, addition: Addition, *, add_new: bool = False, overwrite: bool = False
) -> dict[str, Any]:
    """Merge ``addition`` into the stored dataset ``dataset`` in one transaction (see the module docstring).

    Returns:
        What was added: ``interactions`` (with ``kinds``), new ``users`` and ``items``, ``attributes``
        (``{"users": {column: users given a value}, "items": {field: items changed}}``), the dataset's
        ``demographics``, ``skipped`` rows by reason (``duplicate``, ``unknown user``, ...), the dataset's
        ``totals`` after, and per split made before (``splits``) how many new interactions it shows
        (``visible``), keeps ``hidden`` (``on_negatives`` of them on items drawn as unseen negatives) or
        leaves out (``outside``).

    Raises:
        DataError: for ids new to the dataset (unless ``add_new`` or ``lenient``), a value contradicting a
            stored one (unless ``overwrite``); the workspace is then unchanged.
        WorkspaceError: when the workspace has no dataset ``dataset`` (listing those it has).
    """
    # 1. The dataset, and the ids the addition names that it lacks
    d = resolve_dataset(ws, dataset)
    users, items = load_users(ws, d), load_items(ws, d)
    add, m = addition, addition.mapping
    new_users = _unknown(add, "user", users, d, add_new)
    new_items = _unknown(add, "item", items, d, add_new)
    # 2. Users' attributes and items' columns merged into the stored ones
    changed_users, user_counts = _merge_users(add, users, d, overwrite)
    changed_items, item_counts = _merge_items(add, items, d, overwrite)
    kind = Counter(i.kind for i in items.values()).most_common(1)[0][0] if items else "item"
    added_users = [User(u, add.users[u]) for u in new_users]
    added_items = [_new_item(i, kind, add.items[i]) for i in new_items]
    # 3. The interactions, less those already stored or repeated in the file
    stored = {_key(x) for x in load_interactions(ws, d, sorted({x.user_id for x in add.interactions}))}
    fresh, duplicates = [], 0
    for x in add.interactions:
        if _key(x) in stored:
            duplicates += 1
            continue
        stored.add(_key(x))
        fresh.append(x)
    # 4. Where the splits made before put the new interactions
    placed = [_placement(ws, s, fresh) for s in dataset_splits(ws, d)]
    # 5. Store it all in one transaction (nothing at all when nothing changes)
    meta = dataset_meta(ws, d)
    before = list(meta.get("demographics") or [])
    demographics = before + [c for c in m.user_attributes if c not in before]
    counts = {"interactions": len(fresh), "users": len(added_users), "items": len(added_items)}
    summary = {
        "dataset": d,
        **counts,
        "kinds": dict(Counter(x.kind for x in fresh).most_common()),
        "attributes": {"users": user_counts, "items": item_counts},
        "demographics": demographics,
        "skipped": {**({"duplicate": duplicates} if duplicates else {}), **dict(add.problems.counts)},
    }
    if fresh or added_users or added_items or changed_users or changed_items or demographics != before:
        params = dataset_params(ws, d)
        entry = {
            **add.params,
            "add_new": add_new,
            "overwrite": overwrite,
            "added": {**counts, "kinds": summary["kinds"]},
        }
        params["additions"] = [*params.get("additions", []), entry]
        extend_dataset(
            ws,
            d,
            new_users=added_users,
            changed_users=changed_users,
            new_items=added_items,
            changed_items=changed_items,
            interactions=fresh,
            meta={**meta, "demographics": demographics},
            params=params,
        )
    row = next(r for r in list_datasets(ws) if r["dataset_id"] == d)
    summary["totals"] = {k: row[f"n_{k}"] for k in ("users", "items", "interactions")}
    summary["splits"] = placed
    if add.problems.examples:
        summary["examples_of_skipped"] = list(add.problems.examples)
    return summary


def _key(x: Interaction) -> tuple:
    return (x.user_id, x.item_id, x.kind, x.value, x.timestamp, x.text or "")


def _unknown(add: Addition, what: str, stored: dict[str, Any], d: str, add_new: bool) -> list[str]:
    """The ids of ``what`` the addition names and the dataset lacks: returned to be added (``add_new``), else
    (lenient) their rows skipped and counted, one per interaction and per users / items file row, else an error
    giving their number and the first."""
    records = add.users if what == "user" else add.items
    named = {x.user_id if what == "user" else x.item_id for x in add.interactions} | set(add.listed[what])
    for k in [k for k in records if k not in named]:
        del records[k]  # named only on rows skipped already (an unknown user's)
    new = [k for k in records if k not in stored]
    if not new or add_new:
        return new
    column = add.mapping.user if what == "user" else add.mapping.item
    if not add.problems.lenient:
        file, line = add.where[(what, new[0])]
        raise DataError(
            f"{len(new)} {what} id(s) are not in dataset {d!r} (first: {new[0]!r})",
            file=file,
            line=line,
            field=column,
            fix=f"Pass --add-new to add them as new {what}s, or --lenient to skip their rows; "
            f"check the {what} column holds the ids the dataset uses.",
        )
    gone, kept = set(new), []
    for x, (file, line) in zip(add.interactions, add.lines):
        k = x.user_id if what == "user" else x.item_id
        if k not in gone:
            kept.append((x, (file, line)))
            continue
        add.problems.report(
            DataError(f"{what} {k!r} is not in dataset {d!r}", file=file, line=line, field=column), f"unknown {what}"
        )
    add.interactions, add.lines = [x for x, _ in kept], [w for _, w in kept]
    for k in new:
        if k in add.listed[what]:
            file, line = add.listed[what][k]
            add.problems.report(
                DataError(f"{what} {k!r} is not in dataset {d!r}", file=file, line=line, field=column),
                f"unknown {what}",
            )
        del records[k]
    return []


def _same(a: Any, b: Any) -> bool:
    """Whether a stored value and a read one agree (``24`` and ``"24"`` do)."""
    if a == b or str(a).strip() == str(b).strip():
        return True
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return False


def _conflict(what: str, key: str, name: str, old: Any, new: Any, n: int, d: str, where: tuple[str, int], column: str):
    return DataError(
        f"{what} {key!r} has {name} {old!r} in dataset {d!r}, this file says {new!r}"
        + (f" ({n} conflicting values in all)" if n > 1 else ""),
        file=where[0],
        line=where[1],
        field=column,
        fix="Fix the file, or pass --overwrite to replace the stored values.",
    )


def _merge_users(add: Addition, users: dict[str, User], d: str, overwrite: bool) -> tuple[list[User], dict[str, int]]:
    """The stored users whose attributes change, and per column how many users get a value."""
    changed, counts, conflicts = [], Counter(), []
    for uid, values in add.users.items():
        if uid not in users:
            counts.update(values.keys())
            continue
        attrs = dict(users[uid].attributes or {})
        for c, v in values.items():
            old = attrs.get(c)
            if old is not None and old != "" and _same(old, v):
                continue
            if old is not None and old != "":
                conflicts.append((uid, c, old, v))
                if not overwrite:
                    continue
            attrs[c] = v
            counts[c] += 1
        if attrs != (users[uid].attributes or {}):
            changed.append(replace(users[uid], attributes=attrs))
    if conflicts and not overwrite:
        uid, c, old, v = conflicts[0]
        raise _conflict("user", uid, c, old, v, len(conflicts), d, add.where[("user", uid)], c)
    return changed, dict(counts)


def _merge_items(add: Addition, items: dict[str, Item], d: str, overwrite: bool) -> tuple[list[Item], dict[str, int]]:
    """The stored items whose fields change, and per field how many items change."""
    changed, counts, conflicts = [], Counter(), []
    for iid, values in add.items.items():
        if iid not in items:
            counts.update(values.keys())
            continue
        old = items[iid]
        placeholder = {
            "title": old.title in ("", iid),
            "text": old.text in ("", iid, old.title),
            "image_uri": not old.image_uri,
        }
        new = old
        for name, v in values.items():
            if name == "tags":
                merged = old.tags + tuple(t for t in v if t not in old.tags)
                if merged != old.tags:
                    new, counts["tags"] = replace(new, tags=merged), counts["tags"] + 1
                continue
            current = getattr(old, name)
            if current == v:
                continue
            if not placeholder[name]:
                conflicts.append((iid, name, current, v))
                if not overwrite:
                    continue
            new = replace(new, **{name: v})
            counts[name] += 1
            if name == "title" and "text" not in values and placeholder["text"]:
                new = replace(new, text=v)  # an item's text defaults to its title
        if new != old:
            changed.append(new)
    if conflicts and not overwrite:
        iid, name, old_v, v = conflicts[0]
        column = item_column(add.mapping, name)
        raise _conflict("item", iid, name, old_v, v, len(conflicts), d, add.where[("item", iid)], column)
    return changed, dict(counts)


def _new_item(iid: str, kind: str, values: dict[str, Any]) -> Item:
    title = values.get("title") or iid
    return Item(iid, kind, title, values.get("text") or title, values.get("image_uri"), tuple(values.get("tags", ())))


def _placement(ws: Workspace, split_id: str, xs: list[Interaction]) -> dict[str, Any]:
    """How many of ``xs`` the split shows, keeps hidden (and of those on unseen negatives) and leaves out."""
    roles = split_roles(ws, split_id)
    parts = split_parts(ws, split_id, sorted({x.user_id for x in xs if roles.get(x.user_id, "train") != "train"}))
    out = Counter({"visible": 0, "hidden": 0, "on_negatives": 0, "outside": 0})
    for x in xs:
        role = roles.get(x.user_id)
        part, label = parts.get((x.user_id, x.item_id), (None, None))
        if role == "train" or part == "visible":
            out["visible"] += 1
        elif part == "hidden":
            out["hidden"] += 1
            out["on_negatives"] += label == "unseen"
        else:
            out["outside"] += 1
    return {"split": split_id, **out}


def describe_addition(summary: dict[str, Any]) -> str:
    """The lines ``pwb data import table --into`` prints: what was added, what was skipped, and per split
    made before where it puts the new interactions."""
    kinds = summary["kinds"]
    what = f" ({', '.join(kinds) if len(kinds) == 1 else ', '.join(f'{k} {n}' for k, n in kinds.items())})"
    attrs = [
        f"{side} {name} +{n}" for side in ("users", "items") for name, n in summary["attributes"][side].items() if n
    ]
    lines = [
        f"added to {summary['dataset']}: interactions +{summary['interactions']}{what if kinds else ''}, "
        f"users +{summary['users']}, items +{summary['items']}, attributes: {', '.join(attrs) or 'none'}"
    ]
    if summary["skipped"]:
        lines.append("skipped: " + ", ".join(f"{k} {n}" for k, n in summary["skipped"].items()))
    lines += [f"  {e}" for e in summary.get("examples_of_skipped", [])]
    for s in summary["splits"]:
        if not summary["interactions"]:
            break
        lines.append(
            f"split {s['split']}, made before: {s['visible']} of them visible, {s['hidden']} hidden (on items hidden "
            f"from their users; {s['on_negatives']} on unseen negatives), {s['outside']} left out (items it never gave "
            "their users); re-mine with --force to use the visible ones, or make a new split (another --seed or "
            "--name) to place them all"
        )
    return "\n".join(lines)
