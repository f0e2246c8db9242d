"""Perturbed-attention guidance (PAG), combined with classifier-free guidance."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from . import _utils as u
from .base import GuidanceRule, StepContext

if TYPE_CHECKING:
    import torch

    from .schedules import Schedule


class PAG(GuidanceRule):
    r"""Perturbed-attention guidance (Ahn et al., "Self-rectifying diffusion sampling with perturbed-attention
    guidance", https://arxiv.org/abs/2403.17377), on top of CFG.

    .. math::
        \tilde u = u_\varnothing + w_p\,(u_c - u_\varnothing) + s_p\,(u_c - \hat u_c), \qquad
        w_p = 1 + (w-1)\,m(p), \quad s_p = s\, m(p)

    where :math:`\hat u_c` is the ``"perturbed"`` branch: the conditional prediction with the
    self-attention map replaced by the identity in the :attr:`layers` named here. The rule only declares
    those layers; the loop runs that branch. The schedule scales both terms, so a schedule value of 0 gives
    the plain conditional prediction. Branches requested: ``"uncond"`` only where :math:`w_p \ne 1`
    (PAG alone is :math:`u_c + s_p (u_c - \hat u_c)`), ``"perturbed"`` only where :math:`s_p \ne 0`;
    with neither the conditional prediction is returned unchanged.

    Pure torch (diffusers' ``PerturbedAttentionGuidance`` is tied to its own model hooks).

    Args:
        scale: CFG scale ``w`` (1 disables the CFG term).
        pag_scale: PAG scale ``s`` >= 0 (the paper's default is 3.0; 0 disables the PAG term).
        layers: names of the UNet blocks whose self-attention is perturbed (diffusers' ``pag_applied_layers``
            naming, e.g. ``"mid"``, ``"down.block_2"``, ``"up.block_1.attentions_0"``).
        schedule: how both scales vary over the trajectory (default constant).

    Shapes:
        predictions of one sample, ``(1, C, H, W)`` or ``(C, H, W)``; the output has the same shape.
    """

    name = "pag"
    space = "model"

    def __init__(
        self,
        scale: float = 7.5,
        pag_scale: float = 3.0,
        layers: Sequence[str] | str = ("mid",),
        schedule: Schedule | str | dict | None = None,
    ):
        super().__init__(scale, schedule)
        self.pag_scale = u.number("pag_scale", pag_scale)
        if self.pag_scale < 0.0:
            raise ValueError(f"Expected `pag_scale` >= 0.0, got {pag_scale}")
        if isinstance(layers, str):
            layers = (layers,)
        if (
            not isinstance(layers, (list, tuple))
            or not layers
            or not all(isinstance(x, str) and x.strip() for x in layers)
        ):
            raise ValueError(f"Expected `layers` to be a non-empty list of layer names, got {layers!r}")
        self.layers: tuple[str, ...] = tuple(layers)

    def pag_scale_at(self, ctx: StepContext) -> float:
        """Effective PAG scale: ``pag_scale * schedule(progress)``."""
        return self.pag_scale * float(self.schedule(ctx.progress))

    def branches(self, ctx: StepContext) -> tuple[str, ...]:
        out = ["cond"]
        if not u.is_one(self.scale_at(ctx)):
            out.append("uncond")
        if self.pag_scale_at(ctx) != 0.0:
            out.append("perturbed")
        return tuple(out)

    def combine(self, preds: dict[str, torch.Tensor], ctx: StepContext) -> torch.Tensor:
        name = type(self).__name__
        cond = u.need(preds, "cond", name, ctx)
        w, s = self.scale_at(ctx), self.pag_scale_at(ctx)
        out = cond
        if not u.is_one(w):
            uncond = u.need(preds, "uncond", name, ctx)
            out = uncond + w * (cond - uncond)
        if s != 0.0:
            perturbed = u.need(preds, "perturbed", name, ctx)
            out = out + s * (cond - perturbed)
        return out

    def config(self) -> dict:
        return {**super().config(), "pag_scale": self.pag_scale, "layers": list(self.layers)}
