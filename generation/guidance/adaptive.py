"""Adaptive guidance: CFG until the two branches agree, then the conditional branch alone."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import _utils as u
from .base import GuidanceRule, StepContext

if TYPE_CHECKING:
    import torch

    from .schedules import Schedule


class AdaptiveGuidance(GuidanceRule):
    r"""Adaptive guidance (Castillo et al., "Adaptive guidance: training-free acceleration of conditional
    diffusion models", https://arxiv.org/abs/2312.12487).

    .. math::
        \gamma_t = \frac{\langle u_c, u_\varnothing\rangle}{\|u_c\|\,\|u_\varnothing\|}, \qquad
        \tilde u = \begin{cases} u_\varnothing + w_p (u_c - u_\varnothing) & \gamma_s < \bar\gamma
            \text{ for all steps } s \le t \\ u_c & \text{otherwise} \end{cases}

    The cosine similarity is taken per sample over all non-batch dimensions (with a batch of several
    samples, all must reach :math:`\bar\gamma`). At the first step where :math:`\gamma_t \ge \bar\gamma` the
    conditional prediction is already returned, and the switch is sticky: from the next step on
    :meth:`branches` asks only for ``"cond"``, saving one UNet evaluation per remaining step.
    :attr:`switched_at_step` records that step (``None`` before the switch).

    State: the switch belongs to one trajectory. :meth:`reset` clears it, and so does a call to
    :meth:`combine` at step 0; :meth:`branches` at step 0 also ignores a switch left from an earlier
    trajectory. Where :math:`w_p = 1 + (w-1) m(p)` is 1 the conditional prediction is returned unchanged,
    only ``"cond"`` is requested and no cosine is computed.

    Args:
        scale: guidance scale ``w``.
        threshold: :math:`\bar\gamma` in [0, 1]; the paper's operating point for SD-class models is about
            0.991.
        schedule: how the scale varies over the trajectory (default constant).

    Shapes:
        predictions of one sample, ``(1, C, H, W)`` or ``(C, H, W)``; the output has the same shape.
    """

    name = "adaptive"
    space = "model"

    def __init__(self, scale: float = 7.5, threshold: float = 0.991, schedule: Schedule | str | dict | None = None):
        super().__init__(scale, schedule)
        self.threshold = u.between("threshold", threshold, 0.0, 1.0)
        self.switched_at_step: int | None = None
        #: cosine similarity at the last guided step (for logging), ``None`` if none yet.
        self.last_cosine: float | None = None

    def reset(self) -> None:
        self.switched_at_step = None
        self.last_cosine = None

    def switched(self, ctx: StepContext) -> bool:
        """Whether the conditional-only phase has begun before this step."""
        return self.switched_at_step is not None and ctx.step > 0 and ctx.step > self.switched_at_step

    def branches(self, ctx: StepContext) -> tuple[str, ...]:
        if self.switched(ctx) or u.is_one(self.scale_at(ctx)):
            return ("cond",)
        return ("cond", "uncond")

    def combine(self, preds: dict[str, torch.Tensor], ctx: StepContext) -> torch.Tensor:
        if ctx.step == 0:
            self.reset()
        cond = u.need(preds, "cond", type(self).__name__, ctx)
        if self.switched(ctx) or u.is_one(self.scale_at(ctx)):
            return cond
        uncond = u.need(preds, "uncond", type(self).__name__, ctx)
        self.last_cosine = cosine = _min_cosine(cond, uncond)
        if cosine >= self.threshold:
            self.switched_at_step = ctx.step
            return cond
        w = self.scale_at(ctx)
        return uncond + w * (cond - uncond)

    def config(self) -> dict:
        return {**super().config(), "threshold": self.threshold}


def _min_cosine(cond: torch.Tensor, uncond: torch.Tensor) -> float:
    """Smallest per-sample cosine similarity, computed in float64."""
    import torch

    c = u.as_batch(cond)[0].flatten(1).double()
    n = u.as_batch(uncond)[0].flatten(1).double()
    cos = torch.nn.functional.cosine_similarity(c, n, dim=1, eps=1e-12)
    return float(cos.min())
