"""What a generation job must pass before its 202: this server's size and step limits, guidance rules that
build, and the work budget (:mod:`apps.api.work_budget`)."""

from __future__ import annotations

from typing import Any

from apps.api.work_budget import fits, job_work, work_tiers


def validate_request(cfg, request: dict[str, Any]) -> list[Any]:
    """The request's :class:`~generation.conditions.UserCondition` list under ``cfg`` (a
    :class:`~apps.api.service.ServiceConfig`); ``ValueError`` names the field."""
    from generation.conditions import UserCondition

    for name in ("height", "width"):
        if request.get(name) and request[name] > cfg.max_side:
            raise ValueError(f"{name}: this server draws at most {cfg.max_side} px a side (pwb serve --max-side)")
    if request.get("steps") is None and cfg.default_steps > cfg.max_steps:
        request["steps"] = cfg.max_steps  # the backend's default would go past this server's limit
    steps = request.get("steps") or cfg.default_steps
    if steps > cfg.max_steps:
        raise ValueError(f"steps: this server takes at most {cfg.max_steps} steps (pwb serve --max-steps)")
    conds = []
    for i, c in enumerate(request["conditions"]):
        if not c["prompt"].strip():
            raise ValueError(f"conditions.{i}.prompt: the prompt is empty")
        cond = UserCondition(
            user_id=c["user_id"],
            prompt=c["prompt"],
            negative_prompt=c.get("negative_prompt"),
            seed=c.get("seed", 0),
            guidance=c.get("guidance", "cfg"),
            guidance_scale=c.get("guidance_scale"),
        )
        try:
            cond.make_rule()
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"conditions.{i}.guidance: {exc}") from exc
        conds.append(cond)
    h, w = request.get("height") or 96, request.get("width") or 96
    tiers = work_tiers(cfg.max_side, cfg.max_steps, cfg.max_work)
    if not fits(tiers, len(conds), h, w, steps):
        work = job_work(len(conds), h, w, steps)
        allowed = "; ".join(
            f"up to {t['conditions']} conditions at up to {t['side']} px and {t['steps']} steps" for t in tiers
        )
        raise ValueError(
            f"conditions: this job ({len(conds)} x {h}x{w} px x {steps} steps = {work:.1f} "
            f"megapixel-steps) is over this server's work budget of {cfg.max_work:g} "
            f"(pwb serve --max-work); a job may have {allowed}. Split it into smaller jobs"
        )
    return conds
