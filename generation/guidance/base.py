"""The guidance-rule interface shared by every rule in :mod:`generation.guidance`.

A rule is a small configured object, one instance per sample and trajectory (rules may keep state,
such as APG's momentum or adaptive guidance's switch). The denoising loop calls, at every step:

1. ``rule.branches(ctx)``: which network evaluations this sample needs now (``"cond"`` always,
   ``"uncond"`` when guidance is active, ``"perturbed"`` for PAG). Leaving a branch out is how a rule
   saves UNet evaluations.
2. ``rule.combine(preds, ctx)``: the guided prediction from the requested branches, each a tensor of
   one sample's shape, in the rule's :attr:`~GuidanceRule.space`: ``"model"`` (whatever the network
   predicts: epsilon or v) or ``"x0"`` (the denoised estimate; the loop converts both ways).
3. ``rule.renoise(preds, ctx)``: ``None`` for most rules; CFG++ returns the noise estimate to renoise
   with (the unconditional one), and the loop then takes the DDIM step itself.

Scales compose with a :class:`~generation.guidance.schedules.Schedule`: the effective scale at
trajectory progress ``p`` is ``1 + (scale - 1) * schedule(p)``, so a schedule value of 0 means "plain
conditional prediction" and the unconditional branch is skipped there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

    from .schedules import Schedule

Branch = Literal["cond", "uncond", "perturbed"]


@dataclass(frozen=True)
class StepContext:
    """Where a sample is on its trajectory when a rule is asked.

    Attributes:
        step: 0-based index of the denoising step.
        num_steps: number of denoising steps in the trajectory.
        timestep: the scheduler's timestep value at this step (train-time units, e.g. 999 ... 0).
        alpha_bar: cumulative signal rate ``bar-alpha_t`` at this timestep (VP schedules), or ``None``.
        alpha_bar_prev: ``bar-alpha`` of the next (less noisy) timestep, or ``None``.
    """

    step: int
    num_steps: int
    timestep: float = 0.0
    alpha_bar: float | None = None
    alpha_bar_prev: float | None = None

    @property
    def progress(self) -> float:
        """Fraction of the trajectory done before this step, in [0, 1): ``step / num_steps``."""
        return self.step / self.num_steps


class GuidanceRule:
    """Base class. Subclasses set :attr:`name` and :attr:`space` and override :meth:`combine`.

    Args:
        scale: guidance scale ``w`` (1 returns the conditional prediction).
        schedule: how the scale varies over the trajectory (default constant).
    """

    name: str = "base"
    space: Literal["model", "x0"] = "model"
    #: True when the rule may take the sampler step itself (CFG++): the loop then needs DDIM.
    needs_ddim: bool = False

    def __init__(self, scale: float = 7.5, schedule: Schedule | str | None = None):
        from .schedules import get_schedule

        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale != scale:
            raise ValueError(f"Expected `scale` to be a number, got {scale!r}")
        self.scale = float(scale)
        self.schedule = get_schedule(schedule)

    # -- the three calls the loop makes -----------------------------------------------------------
    def scale_at(self, ctx: StepContext) -> float:
        """Effective scale at this step: ``1 + (scale - 1) * schedule(progress)``."""
        return 1.0 + (self.scale - 1.0) * float(self.schedule(ctx.progress))

    def _active(self, ctx: StepContext) -> bool:
        """Whether guidance acts at this step; by default wherever the effective scale is not 1."""
        return not math.isclose(self.scale_at(ctx), 1.0)  # the same test as diffusers' guiders

    def branches(self, ctx: StepContext) -> tuple[Branch, ...]:
        """Evaluations needed at this step: ``uncond`` only where the rule is active."""
        return ("cond", "uncond") if self._active(ctx) else ("cond",)

    def combine(self, preds: dict[str, torch.Tensor], ctx: StepContext) -> torch.Tensor:
        raise NotImplementedError

    def renoise(self, preds: dict[str, torch.Tensor], ctx: StepContext) -> torch.Tensor | None:
        return None

    def reset(self) -> None:
        """Forget per-trajectory state (called before a new trajectory)."""

    # -- description ------------------------------------------------------------------------------
    def config(self) -> dict:
        """JSON-able description stored with each generation (name, scale, schedule, options)."""
        return {"rule": self.name, "scale": self.scale, "schedule": self.schedule.config()}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "rule")
        return f"{type(self).__name__}({opts})"
