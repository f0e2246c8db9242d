"""The per-request work budget of generation jobs, in megapixel-steps: a job's work, and the tiers a spec can
state (:func:`apps.api.schemas.generate_in` publishes them; :mod:`apps.api.job_admission` enforces them)."""

from __future__ import annotations


def job_work(conditions: int, height: int, width: int, steps: int) -> float:
    """A job's work in megapixel-steps: conditions x height x width x steps / 1e6."""
    return conditions * height * width * steps / 1e6


def work_tiers(max_side: int, max_steps: int, max_work: float, max_conditions: int = 16) -> list[dict[str, int]]:
    """The per-request work budget as tiers a spec can state: a job fits when, for one tier, its sides are
    at most ``side``, its steps at most ``steps`` and it has at most ``conditions`` conditions; each tier
    keeps conditions x side^2 x steps / 1e6 within ``max_work`` megapixel-steps. (A product of fields
    cannot be written in JSON Schema; tiers can, and the server enforces exactly these.)"""
    sides, side = [], max_side - max_side % 8
    while side >= 16:
        sides.append(side)
        side = (side // 2) - (side // 2) % 8
    levels = sorted({max_steps, max(1, max_steps // 5), 1}, reverse=True)
    tiers = []
    for side in sides:
        for steps in levels:
            n = min(max_conditions, int(max_work // (side * side * steps / 1e6)))
            if n >= 1:
                tiers.append({"side": side, "steps": steps, "conditions": n})
    # drop tiers another tier contains
    return [
        t
        for t in tiers
        if not any(
            o is not t and o["side"] >= t["side"] and o["steps"] >= t["steps"] and o["conditions"] >= t["conditions"]
            for o in tiers
        )
    ]


def fits(tiers: list[dict[str, int]], n: int, height: int, width: int, steps: int) -> bool:
    return any(
        n <= t["conditions"] and height <= t["side"] and width <= t["side"] and steps <= t["steps"] for t in tiers
    )
