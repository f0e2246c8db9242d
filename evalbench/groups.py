"""The groups per-group scores are broken down by: each user's attribute value as text, ages in fixed bins,
and numeric attributes with many values (reputation, an age given as any number) in bins.

A numeric attribute (every value present reads as a number) with more than :data:`MAX_CATEGORIES`
distinct values is cut into :data:`DEFAULT_QUANTILES` quantile bins over the users being reported
(``[1, 26)``, ``[26, 130)``, ..., the last one closed: ``[900, 5000]``); ties never split across bins and
no bin is empty. ``age`` and ``rater_age`` keep :data:`AGE_BINS` unless :class:`Bins` are given. A
:class:`Bins` (``--bins reputation=quantiles:5``, ``--bins age=18,25,35,50``, or a task's
``bias.bins``) sets the bins of one attribute, or turns binning off (``values``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from workbench.errors import WorkbenchError

#: MovieLens-100k's age buckets (the bundled census targets use them), for ``age`` and ``rater_age``
AGE_BINS = [
    (0, 18, "<18"),
    (18, 25, "18-24"),
    (25, 35, "25-34"),
    (35, 45, "35-44"),
    (45, 55, "45-54"),
    (55, 200, "55+"),
]
AGE_KEYS = ("age", "rater_age")
#: a numeric attribute with more distinct values than this is binned
MAX_CATEGORIES = 8
DEFAULT_QUANTILES = 4
UNKNOWN = "unknown"
#: how to bring user attributes into a workspace (the options of ``pwb data import table``)
IMPORT_HINT = (
    "pwb data import table --into {dataset} --users-file USERS.csv --user-col ID_COLUMN --user-attrs age,gender"
)
BINS_HELP = (
    "ATTR=quantiles[:N] (N quantile bins, 4 by default), ATTR=EDGE,EDGE,... (bins at these edges) or ATTR=values"
)


@dataclass(frozen=True)
class Bins:
    """How one attribute is cut into groups.

    Args:
        kind: ``quantiles`` (``q`` bins over the users reported), ``edges`` (``< e1``, ``[e1, e2)``, ...,
            ``>= ek``) or ``values`` (one group per value, no binning).
        q: The number of quantile bins (``quantiles``).
        edges: Increasing bin edges (``edges``).
        field: Where the spec came from, for errors (``--bins reputation``, ``bias.bins.age``).
    """

    kind: str
    q: int = DEFAULT_QUANTILES
    edges: tuple[float, ...] = ()
    field: str = "--bins"


def parse_bins(specs: Iterable[str] | Mapping[str, Any] | None, field: str = "--bins") -> dict[str, Bins]:
    """``{attribute: Bins}`` from ``ATTR=SPEC`` strings (the CLI's ``--bins``) or a ``{attr: spec}`` mapping
    (a task's ``bias.bins``: a spec string, or a list of edges).

    >>> parse_bins(["age=18,25", "reputation=quantiles:5"])["reputation"].q
    5

    Raises:
        WorkbenchError: naming ``field`` (and the attribute) and the accepted forms.
    """
    out: dict[str, Bins] = {}
    if not specs:
        return out
    if isinstance(specs, Mapping):
        pairs = [(str(k), v) for k, v in specs.items()]
    else:
        pairs = []
        for spec in specs:
            attr, eq, value = str(spec).partition("=")
            if not eq or not attr.strip() or not value.strip():
                raise WorkbenchError(
                    f"{field} {spec!r}: expected {BINS_HELP}.",
                    field=field,
                    fix="For example --bins age=18,25,35,50 or --bins reputation=quantiles:5.",
                )
            pairs.append((attr.strip(), value.strip()))
    for attr, value in pairs:
        where = f"{field} {attr}" if field.startswith("-") else f"{field}.{attr}"
        if attr in out:
            raise WorkbenchError(f"{where} is given twice.", field=field, fix="Give each attribute's bins once.")
        out[attr] = _one_spec(value, where)
    return out


def _one_spec(value: Any, where: str) -> Bins:
    if isinstance(value, (list, tuple)):
        text = ",".join(str(v) for v in value)
    else:
        text = str(value).strip()
    if text == "values":
        return Bins("values", field=where)
    if text.startswith("quantiles"):
        n = text[len("quantiles") :].lstrip(":").strip() or str(DEFAULT_QUANTILES)
        if not n.isdigit() or int(n) < 2:
            raise WorkbenchError(
                f"{where}: {text!r}: the number of quantile bins must be a whole number of at least 2.",
                field=where,
                fix="For example quantiles:4.",
            )
        return Bins("quantiles", q=int(n), field=where)
    edges = [_number(v) for v in text.split(",")]
    if not edges or any(e is None for e in edges):
        raise WorkbenchError(f"{where}: {text!r}: expected {BINS_HELP}.", field=where, fix="For example 18,25,35,50.")
    if any(b <= a for a, b in zip(edges, edges[1:])):
        raise WorkbenchError(
            f"{where}: the edges {text!r} must increase.", field=where, fix="List them smallest first, e.g. 18,25,35."
        )
    return Bins("edges", edges=tuple(edges), field=where)


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, str) and not v.strip()) or (isinstance(v, float) and math.isnan(v))


def _number(v: Any) -> float | None:
    """``v`` as a finite float when it reads as a number (``3``, ``"3.5"``; not ``True``), else ``None``."""
    if isinstance(v, bool):
        return None
    try:
        x = float(v.strip() if isinstance(v, str) else v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _num_label(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:.6g}"


def assign_groups(values: Mapping[str, Any], key: str, bins: Bins | None = None) -> tuple[dict[str, str], list[str]]:
    """``({user: group}, the groups in order)`` of the users' ``key`` attribute (``values``: ``{user:
    value}``, one per user reported): ``unknown`` when missing (last), else as the module describes.

    Raises:
        WorkbenchError: when ``bins`` bins an attribute some of whose values are not numbers.
    """
    present = {u: v for u, v in values.items() if not _missing(v)}
    nums = {u: _number(v) for u, v in present.items()}
    numeric = bool(present) and all(x is not None for x in nums.values())
    kind = bins.kind if bins else None
    if kind in ("quantiles", "edges") and not numeric:
        bad = next(v for u, v in present.items() if nums[u] is None) if present else None
        raise WorkbenchError(
            f"{bins.field}: attribute {key!r} is not numeric (e.g. {bad!r}), so it cannot be binned."
            if present
            else f"{bins.field}: no user reported has a value for {key!r}.",
            field=bins.field,
            fix="Drop it from the bins to group by its values.",
        )
    if kind == "edges":
        labels, order = _edge_groups(nums, bins.edges)
    elif kind == "quantiles" or (
        kind is None and key not in AGE_KEYS and numeric and len(set(nums.values())) > MAX_CATEGORIES
    ):
        labels, order = _quantile_groups(nums, bins.q if bins else DEFAULT_QUANTILES)
    elif kind is None and key in AGE_KEYS:
        labels, order = _age_groups(present, nums)
    else:
        labels = {u: str(v) for u, v in present.items()}
        by = {str(v): (nums[u] if numeric else 0.0, str(v)) for u, v in present.items()}
        order = sorted(by, key=by.__getitem__)
    labels.update({u: UNKNOWN for u in values if u not in present})
    if len(present) < len(values):
        order = [g for g in order if g != UNKNOWN] + [UNKNOWN]
    return labels, order


def _age_groups(present: dict[str, Any], nums: dict[str, float | None]) -> tuple[dict[str, str], list[str]]:
    """Ages in :data:`AGE_BINS` (below 0 with the first, 200 and over with the last); other values as text."""
    labels = {}
    for u, v in present.items():
        x = nums[u]
        if x is None:
            labels[u] = str(v)
        else:
            labels[u] = next((lab for lo, hi, lab in AGE_BINS[1:-1] if lo <= x < hi), None) or (
                AGE_BINS[0][2] if x < AGE_BINS[1][0] else AGE_BINS[-1][2]
            )
    fixed = [lab for _, _, lab in AGE_BINS]
    seen = set(labels.values())
    return labels, [g for g in fixed if g in seen] + sorted(seen - set(fixed))


def _edge_groups(nums: dict[str, float | None], edges: tuple[float, ...]) -> tuple[dict[str, str], list[str]]:
    """``< e1``, ``[e1, e2)``, ..., ``>= ek``: the groups at explicit edges (the empty ones left out)."""
    import numpy as np

    names = (
        [f"<{_num_label(edges[0])}"]
        + [f"[{_num_label(a)}, {_num_label(b)})" for a, b in zip(edges, edges[1:])]
        + [f">={_num_label(edges[-1])}"]
    )
    users = list(nums)
    idx = np.searchsorted(np.asarray(edges, dtype=float), [nums[u] for u in users], side="right")
    labels = {u: names[int(i)] for u, i in zip(users, idx)}
    used = set(idx.tolist())
    return labels, [n for k, n in enumerate(names) if k in used]


def _quantile_groups(nums: dict[str, float | None], q: int) -> tuple[dict[str, str], list[str]]:
    """``q`` quantile bins (fewer where ties merge edges): edges are the values at the quantiles (no
    interpolation, so each bin holds at least its left edge), bins ``[a, b)``, the last ``[a, max]``."""
    import numpy as np

    users = list(nums)
    x = np.asarray([nums[u] for u in users], dtype=float)
    edges = np.unique(np.quantile(x, np.linspace(0.0, 1.0, q + 1), method="higher"))
    if edges.size == 1:
        edges = np.repeat(edges, 2)
    names = [f"[{_num_label(a)}, {_num_label(b)})" for a, b in zip(edges[:-2], edges[1:-1])]
    names.append(f"[{_num_label(edges[-2])}, {_num_label(edges[-1])}]")
    idx = np.searchsorted(edges[1:-1], x, side="right")
    return {u: names[int(i)] for u, i in zip(users, idx)}, names


def carried_attributes(users_attributes: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The attributes some user has a value for, sorted (``users_attributes``: ``{user: attributes}``)."""
    return sorted({k for a in users_attributes.values() for k, v in a.items() if not _missing(v)})


def no_groups_note(
    dataset_id: str,
    users_attributes: Mapping[str, Mapping[str, Any]],
    keys: list[str],
    fix: str,
    unasked: str | None = None,
) -> str | None:
    """Why a breakdown by ``keys`` has no groups to show, or ``None`` when it has some: the dataset's users
    carry no attributes (with how to import them), no keys were asked for (``unasked`` says by whom:
    ``dataset D declares no demographics`` by default), or the users carry none of ``keys``; the last two
    with the attributes the users do carry and ``fix``, how to group by one of those."""
    carried = carried_attributes(users_attributes)
    if not carried:
        return (
            f"no group breakdown: dataset {dataset_id} has no user attributes (demographics); import them "
            f"with {IMPORT_HINT.format(dataset=dataset_id)}"
        )
    if not keys:
        who = unasked or f"dataset {dataset_id} declares no demographics"
        return f"no group breakdown: {who} (its users carry {', '.join(carried)}); {fix}"
    empty = [k for k in keys if k not in carried]
    if len(empty) == len(keys):
        return (
            f"no group breakdown: no user of dataset {dataset_id} has a value for {', '.join(empty)} "
            f"(its users carry {', '.join(carried)}); {fix}"
        )
    return None


def check_bins_attributes(
    bins: Mapping[str, Bins], users_attributes: Mapping[str, Mapping[str, Any]], dataset_id: str
) -> None:
    """An error naming the bins' field when one bins an attribute no user of the dataset carries."""
    carried = carried_attributes(users_attributes)
    for attr, b in bins.items():
        if attr not in carried:
            raise WorkbenchError(
                f"{b.field}: no user of dataset {dataset_id} has attribute {attr!r}.",
                field=b.field,
                fix=f"Its users carry: {', '.join(carried)}."
                if carried
                else f"Import them: {IMPORT_HINT.format(dataset=dataset_id)}.",
            )
