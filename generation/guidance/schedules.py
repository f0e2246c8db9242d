"""Guidance schedules: a multiplier ``m(p)`` for trajectory progress ``p`` in [0, 1).

A rule's effective scale at progress ``p`` is ``1 + (scale - 1) * m(p)`` (see
:meth:`~generation.guidance.base.GuidanceRule.scale_at`): ``m = 1`` is the configured scale, ``m = 0``
the plain conditional prediction. Schedules are stateless, cheap (pure :mod:`math`) and JSON-describable:

>>> get_schedule("beta:a=3,b=3")(0.5)
1.0
>>> get_schedule({"name": "linear", "start_value": 1.0, "end_value": 0.5}).config()
{'name': 'linear', 'start_value': 1.0, 'end_value': 0.5}

Progress outside [0, 1] is clipped to it.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from workbench.registry import Registry


def _number(name: str, value: Any, where: str = "") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"Expected `{name}` to be a finite number{where}, got {value!r}")
    return float(value)


def _clip01(p: float) -> float:
    return min(max(float(p), 0.0), 1.0)


class Schedule:
    """Base class: subclasses set :attr:`name` and :attr:`params` and implement :meth:`__call__`."""

    name: ClassVar[str] = "base"
    #: constructor arguments, in order; they are also the keys of :meth:`config` besides ``name``.
    params: ClassVar[tuple[str, ...]] = ()

    def __call__(self, p: float) -> float:
        raise NotImplementedError

    def config(self) -> dict:
        """JSON-able description; ``get_schedule(s.config())`` rebuilds an equal schedule."""
        return {"name": self.name, **{k: getattr(self, k) for k in self.params}}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schedule) and self.config() == other.config()

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.config().items())))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.params)
        return f"{type(self).__name__}({args})"


class ConstantSchedule(Schedule):
    """``m(p) = 1``: the configured scale at every step."""

    name = "constant"

    def __call__(self, p: float) -> float:
        return 1.0


class _EndpointSchedule(Schedule):
    """A schedule that moves from ``start_value`` (``p = 0``) to ``end_value`` (``p = 1``)."""

    params = ("start_value", "end_value")

    def __init__(self, start_value: float = 1.0, end_value: float = 0.0):
        self.start_value = _number("start_value", start_value, f" for the {self.name} schedule")
        self.end_value = _number("end_value", end_value, f" for the {self.name} schedule")


class LinearSchedule(_EndpointSchedule):
    """``m(p) = start_value + (end_value - start_value) * p`` (default 1 -> 0: guidance fades out).

    Args:
        start_value: multiplier at the start of the trajectory (``p = 0``).
        end_value: multiplier at the end (``p -> 1``).
    """

    name = "linear"

    def __call__(self, p: float) -> float:
        p = _clip01(p)
        return self.start_value + (self.end_value - self.start_value) * p


class CosineSchedule(_EndpointSchedule):
    """``m(p) = end_value + (start_value - end_value) * (1 + cos(pi p)) / 2`` (default ``(1 + cos(pi p)) / 2``).

    Args:
        start_value: multiplier at ``p = 0``.
        end_value: multiplier at ``p = 1``.
    """

    name = "cosine"

    def __call__(self, p: float) -> float:
        p = _clip01(p)
        return self.end_value + (self.start_value - self.end_value) * 0.5 * (1.0 + math.cos(math.pi * p))


class BetaSchedule(Schedule):
    r"""The Beta(a, b) density shape, normalised so that its maximum (at the mode) is 1.

    .. math::
        m(p) = \frac{p^{a-1} (1-p)^{b-1}}{p^{*\,a-1} (1-p^*)^{b-1}}, \qquad p^* = \frac{a-1}{a+b-2}

    Zero at both ends of the trajectory, 1 at ``p*``: a "weak - strong - weak" profile (the time curve of
    beta-CFG, arXiv 2502.10574, without its normalisation; see :class:`~generation.guidance.beta_cfg.BetaCFG`).

    Args:
        a: first shape parameter, > 1.
        b: second shape parameter, > 1.
    """

    name = "beta"
    params = ("a", "b")

    def __init__(self, a: float = 2.0, b: float = 2.0):
        self.a = _number("a", a, " for the beta schedule")
        self.b = _number("b", b, " for the beta schedule")
        if self.a <= 1.0:
            raise ValueError(f"Expected `a` > 1.0 for the beta schedule, got {a}")
        if self.b <= 1.0:
            raise ValueError(f"Expected `b` > 1.0 for the beta schedule, got {b}")

    @property
    def mode(self) -> float:
        """Where the schedule peaks: ``(a - 1) / (a + b - 2)``."""
        return (self.a - 1.0) / (self.a + self.b - 2.0)

    def __call__(self, p: float) -> float:
        p = _clip01(p)
        m = self.mode
        return (p / m) ** (self.a - 1.0) * ((1.0 - p) / (1.0 - m)) ** (self.b - 1.0)


SCHEDULES = Registry(
    "schedule",
    {
        cls.name: f"{__name__}:{cls.__name__}"
        for cls in (ConstantSchedule, LinearSchedule, CosineSchedule, BetaSchedule)
    },
    normalize=lambda s: s.strip().lower(),
)


def available_schedules() -> list[str]:
    """Names accepted by :func:`get_schedule`, sorted."""
    return sorted(SCHEDULES)


def _build(name: str, kwargs: dict) -> Schedule:
    if not isinstance(name, str):
        raise ValueError(f"Expected a schedule name (str), got {name!r}")
    key = SCHEDULES.canonical(name, field="schedule")
    cls = SCHEDULES.get(key)
    extra = sorted(set(kwargs) - set(cls.params))
    if extra:
        expected = ", ".join(cls.params) if cls.params else "none"
        raise ValueError(
            f"unknown parameter(s) {', '.join(repr(k) for k in extra)} for schedule '{key}'; expected: {expected}"
        )
    return cls(**kwargs)


def _parse(spec: str) -> Schedule:
    """``"beta"`` or ``"beta:a=2,b=3"``."""
    name, _, rest = spec.partition(":")
    kwargs: dict[str, float] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"malformed schedule spec {spec!r}: expected 'name:key=value,...'")
        try:
            kwargs[key.strip()] = float(value)
        except ValueError:
            raise ValueError(f"malformed schedule spec {spec!r}: {value.strip()!r} is not a number") from None
    return _build(name, kwargs)


def get_schedule(spec: None | str | dict | Schedule = None) -> Schedule:
    """Resolve a schedule from ``None`` (constant), a name or ``"name:key=value,..."`` string, a dict as
    produced by :meth:`Schedule.config` (``{"name": ..., **params}``), or a :class:`Schedule` (returned
    as is: schedules are stateless)."""
    if spec is None:
        return ConstantSchedule()
    if isinstance(spec, Schedule):
        return spec
    if isinstance(spec, str):
        return _parse(spec)
    if isinstance(spec, dict):
        kwargs = dict(spec)
        if "name" not in kwargs:
            raise ValueError(f"schedule dict needs a 'name' key, got {spec!r}")
        return _build(kwargs.pop("name"), kwargs)
    raise ValueError(f"Expected a schedule name, dict or Schedule, got {spec!r}")


__all__ = [
    "BetaSchedule",
    "ConstantSchedule",
    "CosineSchedule",
    "LinearSchedule",
    "SCHEDULES",
    "Schedule",
    "available_schedules",
    "get_schedule",
]
