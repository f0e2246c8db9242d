"""Random-weight diffusion components built from configs (the diffusers way).

No diffusion, CLIP or IP-Adapter weights can be downloaded on machines like ours, so the generation code
paths are exercised with components whose *architecture* comes from a config and whose weights are
random under a fixed seed:

- ``size="tiny"``: a few thousand parameters (``block_out_channels=(4, 8)``-style), for tests and the
  CPU benchmark. Images are noise, but every tensor takes the path a real checkpoint takes.
- ``size="full"``: the published SD 1.5 / SDXL architectures (UNet, VAE, text encoders, CLIP image
  encoder) with random weights, for measuring speed and memory honestly on a GPU.

The tokenizer is a byte-level CLIP tokenizer with no merges (every character a token), built in memory.

Use ``random:sd15-tiny``, ``random:sdxl-tiny``, ``random:sd15-full`` or ``random:sdxl-full`` wherever a
model id is accepted (``pwb generate --model random:sdxl-tiny``) to try the plumbing without weights.
"""

from __future__ import annotations

from typing import Any

FAMILIES = ("sd15", "sdxl")
SIZES = ("tiny", "full")

# Tiny configs follow diffusers' own pipeline tests; full ones are the published architectures
# (runwayml/stable-diffusion-v1-5 and stabilityai/stable-diffusion-xl-base-1.0 config.json files).
_UNET = {
    ("sd15", "tiny"): dict(
        block_out_channels=(8, 16),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=4,
    ),
    ("sdxl", "tiny"): dict(
        block_out_channels=(8, 16),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        norm_num_groups=4,
        projection_class_embeddings_input_dim=6 * 8 + 32,
        cross_attention_dim=64,
    ),
    ("sd15", "full"): dict(
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        sample_size=64,
        in_channels=4,
        out_channels=4,
        cross_attention_dim=768,
        attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    ),
    ("sdxl", "full"): dict(
        block_out_channels=(320, 640, 1280),
        layers_per_block=2,
        sample_size=128,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(5, 10, 20),
        transformer_layers_per_block=(1, 2, 10),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816,
        cross_attention_dim=2048,
    ),
}
_VAE = {
    "tiny": dict(
        block_out_channels=(8, 16),
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=4,
        sample_size=32,
    ),
    "full": dict(
        block_out_channels=(128, 256, 512, 512),
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=2,
        sample_size=512,
    ),
}
# (hidden, layers, heads, intermediate, projection)
_TEXT = {
    ("sd15", "tiny"): [(32, 2, 4, 37, 32)],
    ("sdxl", "tiny"): [(32, 2, 4, 37, 32), (32, 2, 4, 37, 32)],
    ("sd15", "full"): [(768, 12, 12, 3072, 768)],
    ("sdxl", "full"): [(768, 12, 12, 3072, 768), (1280, 32, 20, 5120, 1280)],
}
# CLIP image encoder for IP-Adapter: (hidden, layers, heads, intermediate, projection, image size, patch)
_VISION = {"tiny": (32, 2, 4, 37, 32, 32, 8), "full": (1280, 32, 16, 5120, 1024, 224, 14)}
_SCHEDULER = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
    prediction_type="epsilon",
)


def parse_random_model(model: str) -> tuple[str, str] | None:
    """``"random:sdxl-tiny"`` -> ``("sdxl", "tiny")``; ``None`` for any other model id."""
    if not model.startswith("random:"):
        return None
    spec = model.split(":", 1)[1]
    family, _, size = spec.partition("-")
    size = size or "tiny"
    if family not in FAMILIES or size not in SIZES:
        raise ValueError(
            f"unknown random model {model!r}: use random:<family>-<size> with family in "
            f"{', '.join(FAMILIES)} and size in {', '.join(SIZES)} (e.g. random:sdxl-tiny)"
        )
    return family, size


def byte_level_clip_tokenizer(model_max_length: int = 77):
    """A CLIP tokenizer over the 256 byte-level characters, no merges: every character is a token."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    chars = sorted(ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=model_max_length)


def _text_encoder(spec: tuple, with_projection: bool, vocab_size: int):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    hidden, layers, heads, inter, proj = spec
    cfg = CLIPTextConfig(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=inter,
        projection_dim=proj,
        vocab_size=max(vocab_size, 514),
        bos_token_id=512,
        eos_token_id=513,
        pad_token_id=513,
        max_position_embeddings=77,
        hidden_act="gelu" if hidden < 100 else "quick_gelu",
    )
    return (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(cfg).eval()


def random_image_encoder(size: str = "tiny", seed: int = 0):
    """CLIP vision tower with projection (what IP-Adapter encodes references with) and its processor."""
    import torch
    import transformers
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    # the Pillow processor where transformers has it (no torchvision here); the same preprocessing
    CLIPImageProcessor = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor

    hidden, layers, heads, inter, proj, image_size, patch = _VISION[size]
    torch.manual_seed(seed)
    enc = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=inter,
            projection_dim=proj,
            image_size=image_size,
            patch_size=patch,
        )
    ).eval()
    proc = CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})
    return enc, proc


def build_random_pipeline(
    family: str = "sd15", size: str = "tiny", *, seed: int = 0, image_encoder: bool = True, torch_dtype: Any = None
):
    """A diffusers ``StableDiffusionPipeline`` / ``StableDiffusionXLPipeline`` with random weights.

    Args:
        family: ``"sd15"`` or ``"sdxl"``.
        size: ``"tiny"`` (tests, CPU) or ``"full"`` (the published architecture, for GPU benchmarks).
        seed: torch seed for the weights (same seed, same weights).
        image_encoder: also attach a random CLIP image encoder, so IP-Adapters can be loaded.
        torch_dtype: cast every component (e.g. ``torch.float16`` on a GPU).
    """
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

    if (family, size) not in _UNET:
        raise ValueError(f"unknown family/size {family!r}/{size!r}: family in {FAMILIES}, size in {SIZES}")
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**_UNET[(family, size)]).eval()
    vae = AutoencoderKL(**_VAE[size]).eval()
    tok = byte_level_clip_tokenizer()
    vocab = 49408 if size == "full" else 514
    enc, proc = random_image_encoder(size, seed) if image_encoder else (None, None)
    scheduler = DDIMScheduler(**_SCHEDULER)
    if family == "sd15":
        from diffusers import StableDiffusionPipeline

        pipe = StableDiffusionPipeline(
            vae=vae,
            text_encoder=_text_encoder(_TEXT[(family, size)][0], False, vocab),
            tokenizer=tok,
            unet=unet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=proc,
            image_encoder=enc,
            requires_safety_checker=False,
        )
    else:
        from diffusers import StableDiffusionXLPipeline

        t1, t2 = _TEXT[(family, size)]
        pipe = StableDiffusionXLPipeline(
            vae=vae,
            text_encoder=_text_encoder(t1, False, vocab),
            text_encoder_2=_text_encoder(t2, True, vocab),
            tokenizer=tok,
            tokenizer_2=byte_level_clip_tokenizer(),
            unet=unet,
            scheduler=scheduler,
            image_encoder=enc,
            feature_extractor=proc,
        )
    if torch_dtype is not None:
        from diffusers.utils import logging as dlog

        level = dlog.get_verbosity()
        dlog.set_verbosity_error()  # "modules to keep in float32: []" is noise for random weights
        try:
            pipe.to(dtype=torch_dtype)
        finally:
            dlog.set_verbosity(level)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def random_ip_adapter_state_dict(
    unet, *, image_embed_dim: int, kind: str = "plain", num_tokens: int = 4, id_mult: int = 2, seed: int = 0
) -> dict[str, Any]:
    """IP-Adapter weights in the published checkpoint layout, shaped from ``unet.config``.

    ``kind="plain"``: the h94/IP-Adapter layout (``image_proj.proj``: image embedding -> ``num_tokens``
    context tokens). ``kind="faceid"``: the IP-Adapter-FaceID layout (an MLP from a face-identity
    embedding of ``image_embed_dim`` to ``num_tokens`` tokens). Keys ``ip_adapter.<k>.to_k_ip.weight`` are
    numbered 1, 3, 5, ... over the UNet's attention processors, as the original checkpoints are.
    """
    import torch

    g = torch.Generator().manual_seed(seed)
    cross = unet.config.cross_attention_dim
    std = 0.02

    def rnd(*shape):
        return torch.randn(*shape, generator=g) * std

    if kind == "plain":
        proj = {
            "proj.weight": rnd(cross * num_tokens, image_embed_dim),
            "proj.bias": torch.zeros(cross * num_tokens),
            "norm.weight": torch.ones(cross),
            "norm.bias": torch.zeros(cross),
        }
    elif kind == "faceid":
        mid = image_embed_dim * id_mult
        proj = {
            "proj.0.weight": rnd(mid, image_embed_dim),
            "proj.0.bias": torch.zeros(mid),
            "proj.2.weight": rnd(cross * num_tokens, mid),
            "proj.2.bias": torch.zeros(cross * num_tokens),
            "norm.weight": torch.ones(cross),
            "norm.bias": torch.zeros(cross),
        }
    else:
        raise ValueError(f"unknown IP-Adapter kind {kind!r}: use 'plain' or 'faceid'")
    blocks = list(unet.config.block_out_channels)
    ip, key_id = {}, 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        if name.startswith("mid_block"):
            hidden = blocks[-1]
        elif name.startswith("up_blocks"):
            hidden = list(reversed(blocks))[int(name[len("up_blocks.")])]
        else:
            hidden = blocks[int(name[len("down_blocks.")])]
        ip[f"{key_id}.to_k_ip.weight"] = rnd(hidden, cross) * 10
        ip[f"{key_id}.to_v_ip.weight"] = rnd(hidden, cross) * 10
        key_id += 2
    return {"image_proj": proj, "ip_adapter": ip}


def save_ip_adapter(state_dict: dict[str, Any], path) -> None:
    """Write IP-Adapter weights as one flat safetensors file (``image_proj.*``, ``ip_adapter.*``)."""
    from pathlib import Path

    from safetensors.torch import save_file

    flat = {f"{part}.{k}": v.contiguous() for part, sd in state_dict.items() for k, v in sd.items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(flat, str(path))
