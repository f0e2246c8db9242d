"""Per-user conditions through our diffusers loop: three users, three guidance rules, one batch.

Runs offline in a few seconds with random weights built from configs (``random:sdxl-tiny``) and a random
IP-Adapter written to disk, which is the code path a real SDXL checkpoint and ``h94/IP-Adapter`` take: swap

    MODEL = "stabilityai/stable-diffusion-xl-base-1.0"
    ADAPTER = "h94/IP-Adapter:sdxl_models/ip-adapter_sdxl.safetensors"

and pass ``torch_dtype=torch.float16`` on a GPU. Usage: ``python examples/generate_users.py [OUT_DIR]``.
"""

import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from generation.backends.diffusers_sd import DiffusersBackend
from generation.conditions import UserCondition
from generation.pipeline import generate
from generation.random_weights import build_random_pipeline, random_ip_adapter_state_dict, save_ip_adapter
from workbench.images import read_provenance

out = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="pwb-gen-"))
MODEL = "random:sdxl-tiny"

# Random IP-Adapter weights shaped from the UNet config, saved like a published checkpoint.
probe = build_random_pipeline("sdxl")
ADAPTER = out / "ip-adapter_sdxl_random.safetensors"
save_ip_adapter(
    random_ip_adapter_state_dict(probe.unet, image_embed_dim=probe.image_encoder.config.projection_dim), ADAPTER
)

# A "liked image" per user (in a product: the user's own liked images or a product photo).
rng = np.random.default_rng(0)
liked = [Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)) for _ in range(2)]

conditions = [
    UserCondition(
        "u1",
        "a lighthouse at dusk, film noir, high-contrast shadows",
        references=[liked[0]],
        reference_scale=0.7,
        guidance="apg",
        guidance_scale=7.0,
        seed=1,
    ),
    UserCondition(
        "u2",
        "a lighthouse at dusk, pastel animation style",
        references=[liked[1]],
        reference_scale="style",
        guidance="interval",
        guidance_options={"start": 0.2, "stop": 0.7},
        seed=1,
    ),
    UserCondition(
        "u3",
        "a lighthouse at dusk, sweeping western vista",
        guidance="adaptive",
        guidance_options={"threshold": 0.99},
        seed=1,
    ),
]

backend = DiffusersBackend(MODEL, ip_adapter=str(ADAPTER), device="cpu")
gens = generate(
    conditions, backend=backend, out_dir=out / "images", steps=10, height=64, width=64, batch_size=3, progress=False
)
for g in gens:
    meta = read_provenance(g.image_path)
    print(
        f"{g.user_id}: {meta['guidance']['rule']:<9} {g.unet_evals:>2} UNet evaluations  {Path(g.image_path).name[:16]}...png"
    )
print(f"cfg would use {2 * 10} evaluations per image; images and provenance under {out / 'images'}")
