"""CFG-Zero*: classifier-free guidance with an optimised unconditional scale and zero-init."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import _utils as u
from .base import GuidanceRule, StepContext

if TYPE_CHECKING:
    import torch

    from .schedules import Schedule


class CFGZeroStar(GuidanceRule):
    r"""CFG-Zero* (Fan et al., "CFG-Zero*: Improved classifier-free guidance for flow matching models",
    https://arxiv.org/abs/2503.18886).

    .. math::
        s^\star = \frac{\langle u_c, u_\varnothing\rangle}{\|u_\varnothing\|^2 + \epsilon}, \qquad
        \tilde u = \begin{cases} 0 & \mathrm{step} < \texttt{zero\_init\_steps} \\
            s^\star u_\varnothing + w_p\,(u_c - s^\star u_\varnothing) & \text{otherwise} \end{cases}

    :math:`s^\star` is the least-squares scale of the unconditional prediction onto the conditional one,
    per sample over all non-batch dimensions (:math:`\epsilon = 10^{-8}`), and :math:`w_p = 1 + (w-1) m(p)`.
    With :math:`w_p = 1` (after zero-init) the conditional prediction is returned unchanged.

    Zero-init sets the *model prediction* to zero for the first ``zero_init_steps`` steps, whatever the
    scale. The paper targets flow-matching (velocity) models, where a zero velocity means "do not move";
    for an epsilon-prediction model it makes the step a pure rescaling of the latent
    (:math:`x_{t-1} = \sqrt{\bar\alpha_{t-1}/\bar\alpha_t}\, x_t` with DDIM), so use ``zero_init_steps=0``
    there unless that is what you want. During zero-init the output needs no network evaluation at all;
    :meth:`branches` still asks for ``"cond"`` (the loop always evaluates it, and it is the shape/dtype
    template for the zeros), but never for ``"uncond"``.

    Wraps :class:`diffusers.guiders.ClassifierFreeZeroStarGuidance`.

    Args:
        scale: guidance scale ``w``.
        zero_init_steps: number of initial steps whose prediction is zeroed (the paper suggests the first
            ~4% of steps; diffusers' default is 1).
        schedule: how the scale varies over the trajectory (default constant).

    Shapes:
        predictions of one sample, ``(1, C, H, W)`` or ``(C, H, W)``; the output has the same shape.
    """

    name = "cfg_zero_star"
    space = "model"

    def __init__(self, scale: float = 7.5, zero_init_steps: int = 1, schedule: Schedule | str | dict | None = None):
        super().__init__(scale, schedule)
        if isinstance(zero_init_steps, bool) or not isinstance(zero_init_steps, int) or zero_init_steps < 0:
            raise ValueError(f"Expected `zero_init_steps` to be a non-negative integer, got {zero_init_steps!r}")
        self.zero_init_steps = zero_init_steps
        self._guider = u.make_guider(
            "ClassifierFreeZeroStarGuidance", guidance_scale=self.scale, zero_init_steps=zero_init_steps
        )

    def zero_init(self, ctx: StepContext) -> bool:
        """Whether this step's prediction is zeroed."""
        return ctx.step < self.zero_init_steps

    def _active(self, ctx: StepContext) -> bool:
        return not self.zero_init(ctx) and not u.is_one(self.scale_at(ctx))

    def combine(self, preds: dict[str, torch.Tensor], ctx: StepContext) -> torch.Tensor:
        cond = u.need(preds, "cond", type(self).__name__, ctx)
        if self.zero_init(ctx):
            import torch

            return torch.zeros_like(cond)
        if not self._active(ctx):
            return cond
        uncond = u.need(preds, "uncond", type(self).__name__, ctx)
        return u.run_guider(self._guider, self.scale_at(ctx), cond, uncond, ctx)

    def config(self) -> dict:
        return {**super().config(), "zero_init_steps": self.zero_init_steps}
