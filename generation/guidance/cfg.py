"""Classifier-free guidance (CFG)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import _utils as u
from .base import GuidanceRule, StepContext

if TYPE_CHECKING:
    import torch

    from .schedules import Schedule


class CFG(GuidanceRule):
    r"""Classifier-free guidance (Ho & Salimans, https://arxiv.org/abs/2207.12598).

    .. math::
        \tilde u = u_\varnothing + w_p \, (u_c - u_\varnothing), \qquad w_p = 1 + (w - 1)\, m(p)

    with :math:`m` the schedule and :math:`p` the trajectory progress. Works in the network's own
    prediction space (epsilon or v: the combination is affine, so it is the same rule in every
    parameterisation). With ``guidance_rescale = phi > 0`` the result is then rescaled towards the
    conditional prediction's standard deviation (Lin et al., https://arxiv.org/abs/2305.08891, Sec. 3.4):
    :math:`\phi \, \tilde u \, \sigma(u_c)/\sigma(\tilde u) + (1-\phi)\, \tilde u`, per sample.

    Where :math:`w_p = 1` the rule asks only for the conditional branch and returns it unchanged.

    Wraps :class:`diffusers.guiders.ClassifierFreeGuidance` (diffusers-native formulation).

    Args:
        scale: guidance scale ``w`` (1 returns the conditional prediction).
        schedule: how the scale varies over the trajectory (default constant); see
            :func:`~generation.guidance.schedules.get_schedule`.
        guidance_rescale: ``phi`` in [0, 1]; 0 disables the rescale.

    Shapes:
        predictions of one sample, ``(1, C, H, W)`` or ``(C, H, W)``; the output has the same shape.
    """

    name = "cfg"
    space = "model"

    def __init__(
        self, scale: float = 7.5, schedule: Schedule | str | dict | None = None, guidance_rescale: float = 0.0
    ):
        super().__init__(scale, schedule)
        self.guidance_rescale = u.between("guidance_rescale", guidance_rescale, 0.0, 1.0)
        self._guider = u.make_guider(
            "ClassifierFreeGuidance", guidance_scale=self.scale, guidance_rescale=self.guidance_rescale
        )

    def _active(self, ctx: StepContext) -> bool:
        return not u.is_one(self.scale_at(ctx))

    def combine(self, preds: dict[str, torch.Tensor], ctx: StepContext) -> torch.Tensor:
        cond = u.need(preds, "cond", type(self).__name__, ctx)
        if not self._active(ctx):
            return cond
        uncond = u.need(preds, "uncond", type(self).__name__, ctx)
        return u.run_guider(self._guider, self.scale_at(ctx), cond, uncond, ctx)

    def config(self) -> dict:
        return {**super().config(), "guidance_rescale": self.guidance_rescale}
