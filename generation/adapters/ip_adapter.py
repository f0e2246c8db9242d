"""IP-Adapter references with per-sample images and scales in one batch.

Loading goes through diffusers' own ``load_ip_adapter`` (an id on the Hub, a local folder or an in-memory
state dict), so a user's ``h94/IP-Adapter`` checkpoint and our random test weights take the same path.
After loading, the UNet's IP-Adapter attention processors are swapped for
:class:`PerSampleIPAdapterAttnProcessor`, which differs from diffusers' ``IPAdapterAttnProcessor2_0`` in one
way: the adapter scale is a *vector over the batch*, multiplied with the block-level scale diffusers'
``set_ip_adapter_scale`` computes. diffusers applies one scale to the whole batch and mixes per-sample
image embeddings when several references are passed for one adapter (diffusers issue #9813); here row
``i`` of the batch attends only to row ``i``'s image tokens, with row ``i``'s scale, so different users'
references and strengths share one UNet call without leaking into each other.

A row with scale 0 adds exactly nothing, so it equals a run without the adapter.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Block-level presets (InstantStyle, arXiv 2404.02733): on SDXL the second attention of up block 0 carries
# style and the second attention of down block 2 carries layout. We place them by architecture: "style"
# is the first cross-attention up block, "layout" the last cross-attention down block (each at its
# second attention, or its only one), so the presets also fit SD 1.5 and smaller UNets.
PRESETS = ("all", "style", "layout", "style+layout")


def preset_scale(unet, name: str) -> Any:
    """The block dictionary (diffusers' ``set_ip_adapter_scale`` form) of a named preset for this UNet."""
    if name not in PRESETS:
        raise ValueError(f"unknown IP-Adapter block preset {name!r}; available: {', '.join(PRESETS)}")
    if name == "all":
        return 1.0
    cfg = unet.config
    per_block = cfg.layers_per_block if isinstance(cfg.layers_per_block, int) else cfg.layers_per_block[0]
    out: dict[str, dict[str, list[float]]] = {}
    if "style" in name:
        i = next(k for k, t in enumerate(cfg.up_block_types) if "CrossAttn" in t)
        n = per_block + 1
        out["up"] = {f"block_{i}": [1.0 if j == min(1, n - 1) else 0.0 for j in range(n)]}
    if "layout" in name:
        i = max(k for k, t in enumerate(cfg.down_block_types) if "CrossAttn" in t)
        n = per_block
        out["down"] = {f"block_{i}": [1.0 if j == min(1, n - 1) else 0.0 for j in range(n)]}
    return out


@dataclass(frozen=True)
class AdapterSpec:
    """Where an IP-Adapter's weights come from: an id or folder plus the file, or a state dict.

    Attributes:
        source: Hub id (``"h94/IP-Adapter"``), local folder or file path, or an in-memory state dict.
        weight_name: file inside ``source`` (``"ip-adapter_sdxl.safetensors"``); taken from ``source``
            when it is a file path.
        subfolder: folder inside ``source`` (``"sdxl_models"``).
        image_encoder_folder: where the CLIP image encoder lives, relative to ``source`` (diffusers'
            convention), or ``None`` when the pipeline already has one or the adapter needs none (FaceID).
    """

    source: Any
    weight_name: str | None = None
    subfolder: str = ""
    image_encoder_folder: str | None = "image_encoder"

    @classmethod
    def parse(cls, value: Any, *, image_encoder_folder: str | None = "image_encoder") -> AdapterSpec:
        """``"h94/IP-Adapter:sdxl_models/ip-adapter_sdxl.safetensors"`` or a file path -> spec."""
        if isinstance(value, AdapterSpec):
            return value
        if isinstance(value, dict):
            return cls(value, None, "", image_encoder_folder)
        text = str(value)
        path = Path(text)
        if path.is_file():
            return cls(str(path.parent), path.name, "", image_encoder_folder)
        repo, sep, inner = text.partition(":")
        if not sep or not inner:
            raise ValueError(
                f"IP-Adapter {text!r}: give a weights file path, or <id or folder>:<subfolder/file>, "
                "e.g. h94/IP-Adapter:sdxl_models/ip-adapter_sdxl.safetensors"
            )
        sub, _, name = inner.rpartition("/")
        return cls(repo, name, sub, image_encoder_folder)

    def label(self) -> str:
        if isinstance(self.source, dict):
            return "<state dict>"
        return "/".join(p for p in (str(self.source), self.subfolder, self.weight_name or "") if p)


def load_adapters(pipe, specs: list[AdapterSpec]) -> None:
    """Load every adapter in one ``load_ip_adapter`` call (a second call would replace the first),
    then install the per-sample processors."""
    if not specs:
        return
    if len({s.image_encoder_folder for s in specs}) > 1:
        folder = next(s.image_encoder_folder for s in specs if s.image_encoder_folder)
    else:
        folder = specs[0].image_encoder_folder
    if getattr(pipe, "image_encoder", None) is not None:
        folder = None  # already there (tests, or loaded with the pipeline)
    from diffusers.utils import logging as dlog

    level = dlog.get_verbosity()
    dlog.set_verbosity_error()  # loader chatter (accelerate hints, dtype notes) is not for our users
    try:
        pipe.load_ip_adapter(
            [s.source for s in specs],
            subfolder=[s.subfolder for s in specs],
            weight_name=[s.weight_name for s in specs],
            image_encoder_folder=folder,
        )
    finally:
        dlog.set_verbosity(level)
    install_per_sample_processors(pipe.unet)


def install_per_sample_processors(unet) -> int:
    """Swap diffusers' IP-Adapter processors for :class:`PerSampleIPAdapterAttnProcessor` (same weights)."""
    from diffusers.models.attention_processor import IPAdapterAttnProcessor2_0

    procs, swapped = {}, 0
    for name, proc in unet.attn_processors.items():
        if isinstance(proc, IPAdapterAttnProcessor2_0) and not isinstance(proc, _cls()):
            new = _cls().from_processor(proc)
            procs[name] = new
            swapped += 1
        else:
            procs[name] = proc
    if swapped:
        unet.set_attn_processor(procs)
    return swapped


def ip_processors(unet) -> list[Any]:
    return [p for p in unet.attn_processors.values() if isinstance(p, _cls())]


def block_scales(unet, scale: Any, n_adapters: int) -> dict[str, list[float]]:
    """Expand a scale (a float, a preset name or a block dictionary) to one float per adapter and
    processor, with diffusers' own expansion (the one ``set_ip_adapter_scale`` uses)."""
    from diffusers.loaders.unet_loader_utils import _maybe_expand_lora_scales

    if isinstance(scale, str):
        scale = preset_scale(unet, scale)
    configs = _maybe_expand_lora_scales(unet, [scale] * n_adapters, default_scale=0.0)
    out: dict[str, list[float]] = {}
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        row = []
        for cfg in configs:
            if not isinstance(cfg, dict):  # a plain float applies everywhere
                row.append(float(cfg))
                continue
            key = next((k for k in cfg if name.startswith(k)), None)
            row.append(float(cfg[key]) if key is not None else 0.0)
        out[name] = row
    return out


def set_batch_scales(unet, per_sample: list[list[float]], block: list[dict[str, list[float]]] | None = None) -> None:
    """Give every IP-Adapter processor its per-row scales for the next UNet call.

    Args:
        per_sample: ``per_sample[a][r]`` is adapter ``a``'s scale for batch row ``r``.
        block: optional per-row block-level multipliers from :func:`block_scales` (``block[r][name][a]``).
    """
    import torch

    for name, proc in unet.attn_processors.items():
        if not isinstance(proc, _cls()):
            continue
        rows = []
        for a, scales in enumerate(per_sample):
            if block is None:
                rows.append(torch.tensor(scales, dtype=torch.float32))
            else:
                rows.append(torch.tensor([s * block[r][name][a] for r, s in enumerate(scales)], dtype=torch.float32))
        proc.sample_scale = rows


def clear_batch_scales(unet) -> None:
    for proc in ip_processors(unet):
        proc.sample_scale = None


def to_tokens(attn, hidden_states, temb=None):
    """An attention processor's input as ``(batch, tokens, channels)`` (spatial and group norm applied),
    with the 4-D shape to restore, or ``None`` (diffusers' ``AttnProcessor2_0`` preamble)."""
    if attn.spatial_norm is not None:
        hidden_states = attn.spatial_norm(hidden_states, temb)
    shape4 = None
    if hidden_states.ndim == 4:
        shape4 = hidden_states.shape
        b, c, h, w = shape4
        hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
    if attn.group_norm is not None:
        hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
    return hidden_states, shape4


def from_tokens(attn, hidden_states, shape4, residual):
    """The processor's output back in the input's shape, with the residual and output rescale."""
    if shape4 is not None:
        hidden_states = hidden_states.transpose(-1, -2).reshape(*shape4)
    if attn.residual_connection:
        hidden_states = hidden_states + residual
    return hidden_states / attn.rescale_output_factor


def add_image_attention(proc, attn, hidden_states, query, ip_hidden_states):
    """``hidden_states`` plus each adapter's attention over its image tokens, weighted by the adapter's
    block scale times, when ``proc.sample_scale`` is set, each row's own scale (an adapter whose weights are
    all zero is skipped)."""
    import torch
    import torch.nn.functional as F

    batch_size, head_dim = query.shape[0], query.shape[-1]
    for a, (ip_states, to_k_ip, to_v_ip) in enumerate(zip(ip_hidden_states, proc.to_k_ip, proc.to_v_ip)):
        block = float(proc.scale[a]) if not isinstance(proc.scale[a], list) else float(proc.scale[a][0])
        rows = None if proc.sample_scale is None else proc.sample_scale[a]
        if block == 0.0 or (rows is not None and not bool(torch.any(rows != 0))):
            continue
        if ip_states.ndim == 4:  # (batch, n_images, tokens, dim): images of one row as more tokens
            ip_states = ip_states.flatten(1, 2)
        ip_key = to_k_ip(ip_states).view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        ip_value = to_v_ip(ip_states).view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        ip_out = F.scaled_dot_product_attention(query, ip_key, ip_value, attn_mask=None, dropout_p=0.0, is_causal=False)
        ip_out = ip_out.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim).to(query.dtype)
        if rows is None:
            hidden_states = hidden_states + block * ip_out
        else:
            if rows.shape[0] != batch_size:
                raise ValueError(f"IP-Adapter per-sample scales have {rows.shape[0]} rows for a batch of {batch_size}")
            w = (rows * block).to(device=ip_out.device, dtype=ip_out.dtype).view(-1, 1, 1)
            hidden_states = hidden_states + w * ip_out
    return hidden_states


def _processor_base():
    from diffusers.models.attention_processor import IPAdapterAttnProcessor2_0

    return IPAdapterAttnProcessor2_0


def _build_processor_class():
    import torch
    import torch.nn.functional as F

    base = _processor_base()

    class PerSampleIPAdapterAttnProcessor(base):
        """``IPAdapterAttnProcessor2_0`` with a per-row scale vector (see the module docstring).

        ``self.scale`` keeps diffusers' per-adapter scale (1.0 after loading); ``self.sample_scale`` is a
        list (one per adapter) of tensors of shape ``(batch,)`` set by the loop before each UNet call.
        """

        sample_scale: list[torch.Tensor] | None = None

        @classmethod
        def from_processor(cls, proc):
            new = cls.__new__(cls)
            torch.nn.Module.__init__(new)
            new.hidden_size = proc.hidden_size
            new.cross_attention_dim = proc.cross_attention_dim
            new.num_tokens = proc.num_tokens
            new.scale = list(proc.scale)
            new.to_k_ip = proc.to_k_ip
            new.to_v_ip = proc.to_v_ip
            new.sample_scale = None
            return new

        def __call__(
            self,
            attn,
            hidden_states,
            encoder_hidden_states=None,
            attention_mask=None,
            temb=None,
            scale: float = 1.0,
            ip_adapter_masks=None,
        ):
            if ip_adapter_masks is not None:
                raise NotImplementedError("per-sample IP-Adapter processors do not take masks")
            residual = hidden_states
            ip_hidden_states: list[torch.Tensor] = []
            if isinstance(encoder_hidden_states, tuple):
                encoder_hidden_states, ip_hidden_states = encoder_hidden_states
            hidden_states, shape4 = to_tokens(attn, hidden_states, temb)
            batch_size = (hidden_states if encoder_hidden_states is None else encoder_hidden_states).shape[0]
            sequence_length = (hidden_states if encoder_hidden_states is None else encoder_hidden_states).shape[1]
            if attention_mask is not None:
                attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
                attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])
            query = attn.to_q(hidden_states)
            if encoder_hidden_states is None:
                encoder_hidden_states = hidden_states
            elif attn.norm_cross:
                encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
            key = attn.to_k(encoder_hidden_states)
            value = attn.to_v(encoder_hidden_states)
            inner_dim = key.shape[-1]
            head_dim = inner_dim // attn.heads
            query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
            key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
            value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
            hidden_states = F.scaled_dot_product_attention(
                query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False
            )
            hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim)
            hidden_states = hidden_states.to(query.dtype)
            hidden_states = add_image_attention(self, attn, hidden_states, query, ip_hidden_states)
            hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
            return from_tokens(attn, hidden_states, shape4, residual)

    return PerSampleIPAdapterAttnProcessor


_CLASS: list = []


def _cls():
    """The processor class, built on first use so this module imports without torch or diffusers."""
    if not _CLASS:
        _CLASS.append(_build_processor_class())
    return _CLASS[0]


def __getattr__(name: str):
    if name == "PerSampleIPAdapterAttnProcessor":
        return _cls()
    raise AttributeError(name)
