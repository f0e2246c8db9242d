"""Metrics by name (lazy). Each metric's name carries the encoder it was computed with.

A task's ``metric_list`` names metrics of :data:`METRICS`; :func:`parse_metric_list` checks each entry
against its class (what a text bench run can score, how it aggregates, which way is better).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from workbench.errors import UnknownNameError, WorkbenchError
from workbench.registry import Registry

METRICS = Registry(
    "metric",
    {
        "text_preference": "evalbench.metrics.preference:TextPreference",
        "rewrite_spread": "evalbench.metrics.preference:RewriteSpread",
        "diversity": "evalbench.metrics.single_image:Diversity",
        "single_image_fd": "evalbench.metrics.single_image:SingleImageFD",
        "copy_rate": "evalbench.metrics.single_image:CopyRate",
        "cmmd": "evalbench.metrics.distribution:CMMD",
        "image_preference": "evalbench.metrics.distribution:ImagePreference",
        "prompt_alignment": "evalbench.metrics.fidelity:PromptAlignment",
    },
)

#: the metric every text bench run scores: its personal win rate and win rate against the generic prompt
#: lead every report
PRIMARY = "text_preference"
ENTRY_KEYS = ("name", "aggregation", "higher_is_better")


class MetricListError(WorkbenchError, ValueError):
    """A ``metric_list`` that cannot be scored; ``field`` names the entry at fault (``metric_list[0].name``)."""


@dataclass(frozen=True)
class MetricSpec:
    """One ``metric_list`` entry: a metric by registry name, how its unit values become its result, and
    which way is better (checked against the metric's class)."""

    name: str
    aggregation: str = "mean"
    higher_is_better: bool = True

    def compact(self) -> str | dict[str, Any]:
        """The entry as configs store it: its name alone when it aggregates by ``mean``, else every key."""
        return self.name if self.aggregation == "mean" else asdict(self)

    @classmethod
    def of(cls, stored: str | dict[str, Any]) -> MetricSpec:
        """The entry :meth:`compact` stored."""
        return cls(stored) if isinstance(stored, str) else cls(**stored)


def text_metric_names() -> list[str]:
    """The metrics a text bench run scores per unit (those whose class says which unit values it reads)."""
    return [n for n in METRICS if hasattr(METRICS.get(n), "inputs")]


def parse_metric_list(raw: Any, field: str = "metric_list") -> list[MetricSpec]:
    """``metric_list`` of a text task, checked: a non-empty list of ``{name, aggregation, higher_is_better}``
    (only ``name`` required), each a text metric of :data:`METRICS`, :data:`PRIMARY` among them, no name
    twice. Raises :class:`MetricListError` naming the entry's field, with "did you mean" for a misspelt name."""
    if not isinstance(raw, list) or not raw:
        raise MetricListError(
            f"{field} must be a list of metrics such as [{{name: {PRIMARY}}}], got {raw!r}", field=field
        )
    specs = [_entry(e, f"{field}[{i}]") for i, e in enumerate(raw)]
    names = [s.name for s in specs]
    if PRIMARY not in names:
        raise MetricListError(
            f"{field} has no {PRIMARY}: a text task's report leads with its personal win rate",
            field=field,
            fix=f"Add {{name: {PRIMARY}}}.",
        )
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice:
        raise MetricListError(f"{field} names {twice!r} twice", field=field, fix="Keep one entry per metric.")
    return specs


def _entry(entry: Any, where: str) -> MetricSpec:
    if not isinstance(entry, dict) or "name" not in entry:
        raise MetricListError(f"{where} must be a mapping with a name, got {entry!r}", field=where)
    unknown = sorted(set(entry) - set(ENTRY_KEYS))
    if unknown:
        raise MetricListError(
            f"{where} has unknown key(s) {', '.join(unknown)}; allowed: {', '.join(ENTRY_KEYS)}", field=where
        )
    try:
        name = METRICS.canonical(entry["name"], field=f"{where}.name")
    except UnknownNameError as e:
        raise MetricListError(f"{where}.name: {e}", field=f"{where}.name") from None
    cls = METRICS.get(name)
    if not hasattr(cls, "inputs"):
        raise MetricListError(
            f"{where}.name: {name!r} does not score text rewrites; text metrics: {', '.join(text_metric_names())}",
            field=f"{where}.name",
        )
    aggregation = entry.get("aggregation", "mean")
    if aggregation not in cls.aggregations:
        raise MetricListError(
            f"{where}.aggregation: {name} aggregates by {', '.join(cls.aggregations)}, got {aggregation!r}",
            field=f"{where}.aggregation",
        )
    better = entry.get("higher_is_better", cls.higher_is_better)
    if better is not cls.higher_is_better:
        raise MetricListError(
            f"{where}.higher_is_better: {name} is {'higher' if cls.higher_is_better else 'lower'}"
            f"-is-better, got {better!r}",
            field=f"{where}.higher_is_better",
            fix=f"Drop the key or set it to {str(cls.higher_is_better).lower()}.",
        )
    return MetricSpec(name, aggregation, cls.higher_is_better)
