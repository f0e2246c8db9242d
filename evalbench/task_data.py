"""A task's ``dataset`` section beyond the named sources: a dataset already in the workspace, or your own table.

Two spellings besides ``{source: movielens | synthetic | faces | stackexchange | dreambench, ...}``:

* ``dataset: NAME`` (or ``dataset: {name: NAME}``): the workspace's dataset ``NAME`` as it is, e.g. one
  imported with ``pwb data import table`` (and extended with ``--into``). A workspace without it is an
  error listing the datasets it has.
* ``dataset: {source: table, path: FILE, ...}``: a CSV/TSV/Parquet file (a saved ``datasets`` folder,
  ``hf:NAME``) read with :func:`persona.data.table.load_table` and the column mapping given as keys
  (``user``, ``item``, ``value``, ``timestamp``, ``kind``, ``default_kind``, ``text``, ``item_title``,
  ``item_text``, ``item_tags``, ``item_image``, ``user_attributes``, ``tags_separator``), with
  ``users`` / ``items`` files, ``delimiter``, ``like_threshold`` / ``dislike_threshold``, ``hf_split``,
  ``lenient`` and ``name`` (the dataset's id; default the file's stem). Relative paths are read from the
  task file's folder (``--data PATH`` replaces ``path``, from the current folder).

  The first run imports it. Every table import stores a fingerprint of the files' bytes, the mapping and
  the settings (:func:`persona.data.table.table_fingerprint`), so a later run, or a task naming a file
  already imported with ``pwb data import table`` under the same name and mapping, uses the stored dataset
  (with whatever was added to it since with ``--into``). A stored dataset of that name with another
  fingerprint (the file or the mapping changed) is an error: the task would otherwise score the old data
  under the new file's name; give ``dataset.name`` a new name to import this version beside it.

Errors name the task's field (``dataset.value: ...``), as ``metric_list`` errors do.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from workbench.errors import DataError, WorkbenchError

#: the column mapping's keys (:class:`persona.data.table.ColumnMapping`) and the importer's settings
MAPPING_KEYS = (
    "user",
    "item",
    "value",
    "timestamp",
    "kind",
    "default_kind",
    "text",
    "item_title",
    "item_text",
    "item_tags",
    "item_image",
    "user_attributes",
    "tags_separator",
)
SETTING_KEYS = ("path", "users", "items", "name", "delimiter", "like_threshold", "dislike_threshold", "hf_split")
TABLE_KEYS = ("source", *SETTING_KEYS, "lenient", *MAPPING_KEYS)


class TaskDataError(WorkbenchError, ValueError):
    """A task's ``dataset`` section that cannot be used; ``field`` names the key (``dataset.path``)."""


def check_dataset(ds: Any, task: str, *, data_path: str | None = None) -> dict[str, Any] | None:
    """The ``dataset`` section normalised (``NAME`` becomes ``{name: NAME}``) when it is a workspace dataset
    or ``source: table``, checked key by key; ``None`` for the other sources (checked by the caller)."""
    if isinstance(ds, str) and ds.strip():
        return {"name": ds.strip()}
    if not isinstance(ds, dict):
        raise TaskDataError(
            f"task {task}: dataset: expected a dataset name or a mapping with source, got {ds!r}.",
            field="dataset",
            fix="Write `dataset: NAME` (a workspace dataset) or `dataset: {source: table, path: FILE}`.",
        )
    if "source" not in ds:
        if set(ds) != {"name"} or not isinstance(ds.get("name"), str) or not ds["name"].strip():
            key = "dataset.source" if set(ds) - {"name"} else "dataset.name"
            raise TaskDataError(
                f"task {task}: {key}: without a source it names a workspace dataset ({{name: NAME}}), got {ds!r}.",
                field=key,
                fix="Add source: (movielens, synthetic, faces, stackexchange, dreambench or table), or give only name.",
            )
        return {"name": ds["name"].strip()}
    if ds["source"] != "table":
        return None
    for key in ds:
        if key not in TABLE_KEYS:
            raise TaskDataError(
                f"task {task}: dataset.{key}: unknown key for source table; allowed: {', '.join(TABLE_KEYS[1:])}",
                field=f"dataset.{key}",
            )
    for key in (*SETTING_KEYS, *MAPPING_KEYS):
        v = ds.get(key)
        if v is None or key == "user_attributes":
            continue
        number = key.endswith("threshold")
        if (number and (isinstance(v, bool) or not isinstance(v, (int, float)))) or (
            not number and (not isinstance(v, str) or not v.strip())
        ):
            raise TaskDataError(
                f"task {task}: dataset.{key}: expected {'a number' if number else 'a column or file name'}, got {v!r}",
                field=f"dataset.{key}",
            )
    attrs = ds.get("user_attributes")
    if (
        attrs is not None
        and not isinstance(attrs, str)
        and not (isinstance(attrs, list) and all(isinstance(a, str) and a for a in attrs))
    ):
        raise TaskDataError(
            f"task {task}: dataset.user_attributes: expected a list of columns (e.g. [age, gender]), got {attrs!r}",
            field="dataset.user_attributes",
        )
    if not isinstance(ds.get("lenient", False), bool):
        raise TaskDataError(f"task {task}: dataset.lenient: expected true or false", field="dataset.lenient")
    if not ds.get("path") and not data_path:
        raise TaskDataError(
            f"task {task}: dataset.path: source table needs the file of interactions.",
            field="dataset.path",
            fix="Add path: FILE (relative to the task file), or pass --data FILE.",
        )
    _mapping(ds, task)
    return dict(ds)


def _mapping(ds: dict[str, Any], task: str):
    from persona.data.table import ColumnMapping

    given = {k: ds[k] for k in MAPPING_KEYS if ds.get(k) is not None}
    try:
        return ColumnMapping(**given)
    except ValueError as exc:
        key = next((f.name for f in fields(ColumnMapping) if f"ColumnMapping.{f.name} " in str(exc)), "dataset")
        raise TaskDataError(f"task {task}: dataset.{key}: {exc}", field=f"dataset.{key}") from None


def workspace_dataset(ws, task) -> str:
    """The workspace's dataset the task names (``dataset: NAME``), or an error listing those it has."""
    from workbench.store.datasets import has_dataset, list_datasets

    name = task.dataset["name"]
    if has_dataset(ws, name):
        return name
    names = [r["dataset_id"] for r in list_datasets(ws)]
    raise TaskDataError(
        f"task {task.task}: dataset: no dataset {name!r} in the workspace {ws.path}; "
        f"it has: {', '.join(names) or '(none)'}.",
        field="dataset",
        fix="Name one of those, import it first (`pwb data import table FILE --name NAME`), "
        "or describe the file: dataset: {source: table, path: FILE}.",
    )


def table_dataset(ws, task, base_dir: str | None = None) -> str:
    """The dataset of a ``source: table`` task: the stored one of its name when its fingerprint is this
    file's and mapping's, else imported now (one transaction); see the module docstring."""
    from persona.data.table import load_table, table_fingerprint
    from workbench.store.datasets import dataset_params, has_dataset, list_datasets, write_dataset

    # 1. The files (relative to the task file's folder) and the settings
    ds = task.dataset
    here = Path(base_dir) if base_dir else Path.cwd()
    where = {k: _path(ds[k], here) for k in ("path", "users", "items") if ds.get(k)}
    if task.data_path:
        where["path"] = task.data_path
    mapping = _mapping(ds, task.task)
    settings = {
        "users": where.get("users"),
        "items": where.get("items"),
        "split": ds.get("hf_split") or "train",
        "like_threshold": ds.get("like_threshold"),
        "dislike_threshold": ds.get("dislike_threshold"),
        "delimiter": ds.get("delimiter"),
    }
    name = ds.get("name") or Path(str(where["path"]).removeprefix("hf:")).name.split(".")[0] or "table"
    # 2. Already imported with this content and mapping: used as stored
    try:
        fingerprint = table_fingerprint(where["path"], mapping, **settings)
        if has_dataset(ws, name):
            stored = dataset_params(ws, name).get("fingerprint")
            if stored == fingerprint:
                return name
            source = next(r["source"] for r in list_datasets(ws) if r["dataset_id"] == name)
            raise TaskDataError(
                f"task {task.task}: dataset.name: the workspace already holds a dataset {name!r} "
                + (
                    "imported from other content (the file, the mapping or the thresholds changed since)."
                    if stored
                    else f"({source})."
                ),
                field="dataset.name",
                fix="Give dataset.name a new name to import this file beside it, or write "
                f"`dataset: {name}` to use the stored one as it is.",
            )
        # 3. Else imported now
        bundle = load_table(where["path"], mapping, name=name, lenient=bool(ds.get("lenient")), **settings)
        write_dataset(ws, bundle)
    except DataError as exc:
        key = _key_of(ds, mapping, exc)
        raise TaskDataError(f"task {task.task}: {key}: {exc}", field=key) from exc
    return name


def _path(value: str, here: Path) -> str:
    return value if value.startswith("hf:") or Path(value).is_absolute() else str(here / value)


def _key_of(ds: dict[str, Any], mapping, exc: DataError) -> str:
    """The task's key behind a loader error: the mapping key whose column it names, else the file's key."""
    for key in MAPPING_KEYS:
        col = getattr(mapping, key)
        if exc.field and (exc.field == col or (key == "user_attributes" and exc.field in col)):
            return f"dataset.{key}"
    if exc.field in SETTING_KEYS:
        return f"dataset.{exc.field}"
    for key in ("users", "items"):
        if ds.get(key) and exc.file and Path(str(exc.file)).name == Path(ds[key]).name:
            return f"dataset.{key}"
    return "dataset.path"
