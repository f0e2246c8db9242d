"""Adaptive projected guidance (APG)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import _utils as u
from .base import GuidanceRule, StepContext

if TYPE_CHECKING:
    import torch

    from .schedules import Schedule


class APG(GuidanceRule):
    r"""Adaptive projected guidance (Sadat et al., "Eliminating oversaturation and artifacts of high guidance
    scales in diffusion models", https://arxiv.org/abs/2410.02416).

    In the denoised-prediction space (``space = "x0"``: the loop converts the network's epsilon/v to
    :math:`\hat x_0` and back), with :math:`D = \hat x_0^c - \hat x_0^\varnothing`:

    .. math::
        \bar D_t &= D_t + \beta\, \bar D_{t-1}                 && \text{(momentum, } \bar D_{-1} = 0)\\
        \bar D_t &\leftarrow \bar D_t \min\big(1, r / \|\bar D_t\|\big)   && \text{(norm threshold)}\\
        \bar D_t &= \bar D^{\parallel} + \bar D^{\perp}, \quad
            \bar D^{\parallel} = \frac{\langle \bar D_t, \hat x_0^c\rangle}{\|\hat x_0^c\|^2}\, \hat x_0^c \\
        \hat x_0^{\mathrm{APG}} &= \hat x_0^c + (w_p - 1)\,\big(\bar D^{\perp} + \eta\, \bar D^{\parallel}\big)

    norms and inner products per sample over all non-batch dimensions, :math:`w_p = 1 + (w-1) m(p)`.
    This is the paper's Algorithm 1; it equals diffusers'
    :class:`~diffusers.guiders.AdaptiveProjectedGuidance` with ``use_original_formulation=True`` and
    ``guidance_scale = w_p - 1``, which is what this rule wraps. (Diffusers' default formulation,
    :math:`\hat x_0^\varnothing + w\,(\dots)`, differs from the paper once the update is projected.)

    Defaults: ``eta = 0`` (drop the parallel, saturating component entirely, as the paper recommends),
    reverse momentum ``beta = -0.5`` (the paper's negative-momentum setting), and ``r = 15`` (diffusers'
    default; a reasonable threshold for SD-class 4x64x64 latents, at the top of the commonly used 1 - 15
    range; the paper tunes ``r`` per model). Note that diffusers' own defaults differ: ``eta = 1.0`` keeps
    the parallel component (no projection at all) and its momentum is off.

    State: the momentum buffer belongs to one trajectory. :meth:`reset` clears it, and so does any call to
    :meth:`combine` at step 0 (as diffusers recreates it at step 0). Two instances never share it. Where
    :math:`w_p = 1` the conditional prediction is returned unchanged, only ``"cond"`` is requested, and the
    buffer is not updated.

    Args:
        scale: guidance scale ``w``.
        eta: weight of the parallel component, in [0, 1].
        momentum: ``beta``, strictly between -1 and 1; negative is the paper's reverse momentum, 0 disables.
        norm_threshold: ``r`` >= 0; 0 disables the clipping.
        schedule: how the scale varies over the trajectory (default constant).

    Shapes:
        ``preds["cond"]`` and ``preds["uncond"]`` are x0 estimates of one sample, ``(1, C, H, W)`` or
        ``(C, H, W)``; the output has the same shape.
    """

    name = "apg"
    space = "x0"

    def __init__(
        self,
        scale: float = 7.5,
        eta: float = 0.0,
        momentum: float = -0.5,
        norm_threshold: float = 15.0,
        schedule: Schedule | str | dict | None = None,
    ):
        super().__init__(scale, schedule)
        self.eta = u.between("eta", eta, 0.0, 1.0)
        self.momentum = u.number("momentum", momentum)
        if not -1.0 < self.momentum < 1.0:
            raise ValueError(f"Expected `momentum` strictly between -1.0 and 1.0, got {momentum}")
        self.norm_threshold = u.number("norm_threshold", norm_threshold)
        if self.norm_threshold < 0.0:
            raise ValueError(f"Expected `norm_threshold` >= 0.0 (0 disables it), got {norm_threshold}")
        self._guider = u.make_guider(
            "AdaptiveProjectedGuidance",
            guidance_scale=self.scale - 1.0,
            adaptive_projected_guidance_momentum=self.momentum if self.momentum != 0.0 else None,
            adaptive_projected_guidance_rescale=self.norm_threshold,
            eta=self.eta,
            use_original_formulation=True,
        )
        self.reset()

    def reset(self) -> None:
        """Start a new trajectory: a fresh momentum buffer (diffusers' ``MomentumBuffer``)."""
        if self.momentum != 0.0:
            from diffusers.guiders.adaptive_projected_guidance import MomentumBuffer

            self._guider.momentum_buffer = MomentumBuffer(self.momentum)
        else:
            self._guider.momentum_buffer = None

    @property
    def momentum_buffer(self):
        """The running average of the guidance difference (``0`` before the first guided step)."""
        buf = self._guider.momentum_buffer
        return None if buf is None else buf.running_average

    def _active(self, ctx: StepContext) -> bool:
        return not u.is_one(self.scale_at(ctx))

    def combine(self, preds: dict[str, torch.Tensor], ctx: StepContext) -> torch.Tensor:
        if ctx.step == 0:
            self.reset()
        cond = u.need(preds, "cond", type(self).__name__, ctx)
        if not self._active(ctx):
            return cond
        uncond = u.need(preds, "uncond", type(self).__name__, ctx)
        # original formulation: pred = cond + guidance_scale * update, so guidance_scale = w - 1
        return u.run_guider(self._guider, self.scale_at(ctx) - 1.0, cond, uncond, ctx)

    def config(self) -> dict:
        return {**super().config(), "eta": self.eta, "momentum": self.momentum, "norm_threshold": self.norm_threshold}
