"""beta-CFG: classifier-free guidance with a Beta-distribution time curve and gradient normalisation."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from . import _utils as u
from .base import GuidanceRule, StepContext

if TYPE_CHECKING:
    import torch

#: added to the norm before raising it to ``gamma``, so a zero difference gives a zero update.
EPS = 1e-8


class BetaCFG(GuidanceRule):
    r"""beta-CFG (Malarz, Kasymov, Zięba, Tabor, Spurek, "Classifier-free guidance with adaptive scaling",
    https://arxiv.org/abs/2502.10574).

    .. math::
        \tilde u = u_\varnothing + \beta(t)\, \frac{w\,(u_c - u_\varnothing)}
            {\big(\|u_c - u_\varnothing\| + \epsilon\big)^{\gamma}}, \qquad
        \beta(t) = \frac{t^{a-1}(1-t)^{b-1}}{B(a, b)}, \quad a, b > 1

    * :math:`t` is the normalised sampling time, ``t = step / (num_steps - 1)`` (0 at the first, noisiest
      step, 1 at the last; 0.5 for a one-step trajectory). This is what the authors' reference code does
      (``step / total_steps``), so their ``a``, ``b`` carry over; in particular :math:`\beta = 0` at the first
      and last step, where the result is exactly the unconditional prediction (the paper's "weak - strong -
      weak" boundary condition).
    * :math:`\beta` is the Beta *density* (unnormalised in height: its peak is 1.5 for ``a = b = 2``).
    * :math:`\|\cdot\|` is the L2 norm per sample over all non-batch dimensions, :math:`\epsilon = 10^{-8}`.

    Since the difference is divided by :math:`\|\Delta\|^\gamma`, the useful range of ``w`` depends on the
    prediction size (for ``gamma > 0``): a 4x64x64 SD latent has :math:`\|\Delta\|` of order 10 - 100.
    The time curve is the rule's schedule, so the rule takes no ``schedule`` argument, and ``w = 1`` is
    not "no guidance": both branches are always requested.

    Pure torch: diffusers has no beta-CFG guider.

    Args:
        scale: guidance weight ``w``.
        a: first Beta shape parameter, > 1.
        b: second Beta shape parameter, > 1.
        gamma: normalisation exponent in [0, 1]; 0 is no normalisation, 1 a unit-norm direction.

    Shapes:
        predictions of one sample, ``(1, C, H, W)`` or ``(C, H, W)``; the output has the same shape.
    """

    name = "beta_cfg"
    space = "model"

    def __init__(self, scale: float = 7.5, a: float = 2.0, b: float = 2.0, gamma: float = 0.5):
        super().__init__(scale, None)
        self.a = u.number("a", a)
        if self.a <= 1.0:
            raise ValueError(f"Expected `a` > 1.0 for beta-CFG, got {a}")
        self.b = u.number("b", b)
        if self.b <= 1.0:
            raise ValueError(f"Expected `b` > 1.0 for beta-CFG, got {b}")
        self.gamma = u.between("gamma", gamma, 0.0, 1.0)
        self._log_beta_fn = math.lgamma(self.a) + math.lgamma(self.b) - math.lgamma(self.a + self.b)

    @staticmethod
    def time(ctx: StepContext) -> float:
        """Normalised sampling time ``t = step / (num_steps - 1)`` (0.5 when ``num_steps == 1``)."""
        if ctx.num_steps <= 1:
            return 0.5
        return min(max(ctx.step / (ctx.num_steps - 1), 0.0), 1.0)

    def beta_at(self, ctx: StepContext) -> float:
        r"""The Beta(a, b) density at :meth:`time`: :math:`t^{a-1}(1-t)^{b-1}/B(a,b)`."""
        t = self.time(ctx)
        if t <= 0.0 or t >= 1.0:
            return 0.0
        return math.exp((self.a - 1.0) * math.log(t) + (self.b - 1.0) * math.log1p(-t) - self._log_beta_fn)

    def branches(self, ctx: StepContext) -> tuple[str, ...]:
        return ("cond", "uncond")

    def combine(self, preds: dict[str, torch.Tensor], ctx: StepContext) -> torch.Tensor:
        cond = u.need(preds, "cond", type(self).__name__, ctx)
        uncond = u.need(preds, "uncond", type(self).__name__, ctx)
        c, added = u.as_batch(cond)
        n, _ = u.as_batch(uncond)
        diff = c - n
        dims = tuple(range(1, diff.ndim))
        norm = diff.norm(p=2, dim=dims, keepdim=True)
        out = n + (self.beta_at(ctx) * self.scale) * diff / (norm + EPS) ** self.gamma
        return u.unbatch(out, added)

    def config(self) -> dict:
        return {"rule": self.name, "scale": self.scale, "a": self.a, "b": self.b, "gamma": self.gamma}
