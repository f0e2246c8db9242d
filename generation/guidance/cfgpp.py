"""CFG++: manifold-constrained classifier-free guidance."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import _utils as u
from .base import GuidanceRule, StepContext

if TYPE_CHECKING:
    import torch

    from .schedules import Schedule


class CFGPlusPlus(GuidanceRule):
    r"""CFG++ (Chung et al., "CFG++: Manifold-constrained classifier free guidance for diffusion models",
    https://arxiv.org/abs/2406.08070).

    Interpolate (never extrapolate) the denoised estimates, then renoise with the *unconditional* noise:

    .. math::
        \hat x_0^{\lambda} = (1-\lambda)\,\hat x_0^\varnothing + \lambda\,\hat x_0^c, \qquad
        x_{t-1} = \sqrt{\bar\alpha_{t-1}}\,\hat x_0^{\lambda} + \sqrt{1-\bar\alpha_{t-1}}\,\hat\epsilon_\varnothing

    :meth:`combine` returns :math:`\hat x_0^\lambda` and :meth:`renoise` returns
    :math:`\hat\epsilon_\varnothing`; the loop then takes that DDIM step itself (``needs_ddim = True``).

    Inputs (``space = "x0"``): the loop passes ``preds`` with the x0 estimates under ``"cond"`` and
    ``"uncond"`` **and** the epsilon estimates they came from under ``"cond_eps"`` and ``"uncond_eps"``.

    Scale: ``scale`` is :math:`\lambda \in [0, 1]` (default 0.6, a mid-range value). A
    schedule interpolates it like any rule's scale, :math:`\lambda_p = \mathrm{clip}(1 + (\lambda - 1) m(p),
    0, 1)`, so :math:`m = 1` gives the configured :math:`\lambda` and smaller :math:`m` moves it towards 1.
    Note :math:`\lambda = 1` is *not* plain conditional sampling (the renoise still uses
    :math:`\hat\epsilon_\varnothing`). Only where the schedule value is exactly 0 is guidance off, as for every
    rule: there :meth:`branches` asks only for ``"cond"``, :meth:`combine` returns :math:`\hat x_0^c`
    unchanged and :meth:`renoise` returns ``None`` (the loop's ordinary step). Elsewhere both branches are
    needed.

    Args:
        scale: :math:`\lambda` in [0, 1].
        schedule: how :math:`\lambda` varies over the trajectory (default constant).

    Shapes:
        tensors of one sample, ``(1, C, H, W)`` or ``(C, H, W)``; outputs have the same shape.
    """

    name = "cfgpp"
    space = "x0"
    needs_ddim = True

    scale_bounds = (0.0, 1.0)  # the API's spec states it (apps.api.schemas)

    def __init__(self, scale: float = 0.6, schedule: Schedule | str | dict | None = None):
        super().__init__(scale, schedule)
        if not 0.0 <= self.scale <= 1.0:
            raise ValueError(f"Expected `scale` (lambda) between 0.0 and 1.0 for CFG++, got {scale}")

    def lambda_at(self, ctx: StepContext) -> float:
        """Effective :math:`\\lambda` at this step: the scheduled scale clipped to [0, 1]."""
        return min(max(self.scale_at(ctx), 0.0), 1.0)

    def _active(self, ctx: StepContext) -> bool:
        return float(self.schedule(ctx.progress)) != 0.0

    def combine(self, preds: dict[str, torch.Tensor], ctx: StepContext) -> torch.Tensor:
        cond = u.need(preds, "cond", type(self).__name__, ctx)
        if not self._active(ctx):
            return cond
        uncond = u.need(preds, "uncond", type(self).__name__, ctx)
        lam = self.lambda_at(ctx)
        return (1.0 - lam) * uncond + lam * cond

    def renoise(self, preds: dict[str, torch.Tensor], ctx: StepContext) -> torch.Tensor | None:
        if not self._active(ctx):
            return None
        return u.need(preds, "uncond_eps", type(self).__name__, ctx)
