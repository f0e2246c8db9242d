"""Classifier-free guidance applied in a limited interval of the trajectory."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import _utils as u
from .base import StepContext
from .cfg import CFG

if TYPE_CHECKING:
    from .schedules import Schedule


class Interval(CFG):
    r"""CFG only inside a window of the trajectory (Kynkäänniemi et al., "Applying guidance in a limited
    interval improves sample and distribution quality in diffusion models", https://arxiv.org/abs/2404.07724).

    .. math::
        \tilde u = \begin{cases} u_\varnothing + w_p (u_c - u_\varnothing) &
            \lfloor \mathrm{start}\cdot N \rfloor \le \mathrm{step} < \lfloor \mathrm{stop}\cdot N \rfloor \\
            u_c & \text{otherwise} \end{cases}

    with ``N`` the number of steps and :math:`w_p = 1 + (w - 1) m(p)`. The paper states the interval in
    noise levels; here ``start`` and ``stop`` are fractions of the trajectory (as in diffusers' guiders),
    so the window moves with the sampler's step spacing. Outside the window the conditional prediction is
    returned unchanged and :meth:`branches` asks only for ``"cond"``, saving a UNet evaluation per step.

    Wraps :class:`diffusers.guiders.ClassifierFreeGuidance` with its ``start``/``stop``; :meth:`branches`
    uses the very same window test, so it never skips a branch the guider would use.

    Args:
        scale: guidance scale ``w`` inside the window.
        start: fraction of the trajectory where guidance starts, in [0, 1).
        stop: fraction where it stops (exclusive), in [start, 1].
        schedule: how the scale varies over the trajectory (default constant).
        guidance_rescale: as in :class:`~generation.guidance.cfg.CFG`.

    Shapes:
        predictions of one sample, ``(1, C, H, W)`` or ``(C, H, W)``; the output has the same shape.
    """

    name = "interval"
    space = "model"

    def __init__(
        self,
        scale: float = 7.5,
        start: float = 0.2,
        stop: float = 0.8,
        schedule: Schedule | str | dict | None = None,
        guidance_rescale: float = 0.0,
    ):
        super().__init__(scale, schedule, guidance_rescale)
        self.start, self.stop = u.window(start, stop)
        self._guider = u.make_guider(
            "ClassifierFreeGuidance",
            guidance_scale=self.scale,
            guidance_rescale=self.guidance_rescale,
            start=self.start,
            stop=self.stop,
        )

    def in_window(self, ctx: StepContext) -> bool:
        """Whether ``ctx.step`` lies in the guidance window (diffusers' integer test)."""
        return u.in_window(self.start, self.stop, ctx)

    def _active(self, ctx: StepContext) -> bool:
        return self.in_window(ctx) and not u.is_one(self.scale_at(ctx))

    def config(self) -> dict:
        return {**super().config(), "start": self.start, "stop": self.stop}
