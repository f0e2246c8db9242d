"""Helpers shared by the rules: argument checks, sample batching, quiet construction of diffusers guiders.

Nothing here imports torch or diffusers at module import time.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from .base import StepContext


# -- argument checks (exact messages, diffusers style) ---------------------------------------------
def number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"Expected `{name}` to be a finite number, got {value!r}")
    return float(value)


def between(name: str, value: Any, lo: float, hi: float) -> float:
    """``lo <= value <= hi`` or ``ValueError("Expected `name` between lo and hi, got value")``."""
    v = number(name, value)
    if not lo <= v <= hi:
        raise ValueError(f"Expected `{name}` between {lo} and {hi}, got {value}")
    return v


def window(start: Any, stop: Any) -> tuple[float, float]:
    """Validate a ``[start, stop)`` window given as fractions of the trajectory (diffusers' convention:
    ``0 <= start < 1`` and ``start <= stop <= 1``)."""
    s = number("start", start)
    if s == 1.0:
        raise ValueError(f"Expected `start` below 1.0 (the window [start, stop) would be empty), got {start}")
    if not 0.0 <= s < 1.0:
        raise ValueError(f"Expected `start` between 0.0 and 1.0, got {start}")
    e = number("stop", stop)
    if not s <= e <= 1.0:
        raise ValueError(f"Expected `stop` between `start` ({s}) and 1.0, got {stop}")
    return s, e


def in_window(start: float, stop: float, ctx: StepContext) -> bool:
    """Exactly the test of diffusers' guiders: ``int(start * N) <= step < int(stop * N)``."""
    return int(start * ctx.num_steps) <= ctx.step < int(stop * ctx.num_steps)


def is_one(x: float) -> bool:
    """The scale at which CFG-type guidance is off (same tolerance as diffusers' ``math.isclose``)."""
    return math.isclose(x, 1.0)


def need(preds: dict, key: str, rule: str, ctx: StepContext) -> torch.Tensor:
    try:
        return preds[key]
    except KeyError:
        raise KeyError(
            f"{rule} needs the {key!r} prediction at step {ctx.step} (branches() asked for it); got {sorted(preds)}"
        ) from None


# -- per-sample tensors -------------------------------------------------------------------------------
def as_batch(x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """Give a per-sample tensor a leading batch dimension.

    Tensors with 4 or more dimensions are taken as batched along dim 0 (the loop passes ``(1, C, H, W)``);
    fewer dimensions (``(C, H, W)``, or a flat vector) are one sample and get a batch dim of 1. Norms,
    projections and cosines are then per sample over all non-batch dimensions. Returns the tensor and
    whether a dim was added (to undo with :func:`unbatch`).
    """
    if x.ndim <= 3:
        return x.unsqueeze(0), True
    return x, False


def unbatch(x: torch.Tensor, added: bool) -> torch.Tensor:
    return x.squeeze(0) if added else x


# -- diffusers guiders --------------------------------------------------------------------------------
@contextmanager
def quiet_diffusers() -> Iterator[None]:
    """Silence diffusers' "Guiders are currently an experimental feature" warning (and anything else the
    guider module logs below ERROR) for the duration of the block."""
    from diffusers.utils import logging as dlogging

    logger = dlogging.get_logger("diffusers.guiders.guider_utils")
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(previous)


def make_guider(cls_name: str, **kwargs: Any) -> Any:
    """Construct ``diffusers.guiders.<cls_name>(**kwargs)`` without its experimental-feature warning."""
    import diffusers.guiders as guiders

    with quiet_diffusers():
        return getattr(guiders, cls_name)(**kwargs)


def run_guider(
    guider: Any, guidance_scale: float, cond: torch.Tensor, uncond: torch.Tensor | None, ctx: StepContext
) -> torch.Tensor:
    """Set the step state and scale on a diffusers CFG-type guider and return its ``pred``.

    Per-sample tensors are batched first (:func:`as_batch`), so that the guider's per-sample reductions
    (rescale's std, APG's norms, CFG-Zero*'s projection) run over the whole sample, not per channel.
    """
    c, added = as_batch(cond)
    n = as_batch(uncond)[0] if uncond is not None else None
    guider.set_state(step=ctx.step, num_inference_steps=ctx.num_steps, timestep=ctx.timestep)
    guider.guidance_scale = guidance_scale
    return unbatch(guider.forward(pred_cond=c, pred_uncond=n).pred, added)
