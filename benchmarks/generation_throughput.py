"""Generation throughput: images/s, peak memory and UNet evaluations per image, per guidance rule,
batch size and IP-Adapter on/off, through our per-sample loop (generation.backends.diffusers_sd).

On a GPU it builds full-size SD 1.5 and SDXL architectures with random weights (UNet, VAE, text and image
encoders from their published configs, fp16 by default): random weights cost the same FLOPs as trained
ones, so images/s and memory are honest. On CPU it runs the tiny test models only and says so: those
figures show the loop's overhead and the evaluation counts, not real speed.

Each row times one call drawing ``batch`` images of different users (different prompts and references)
after a warm-up call. Ratios are against cfg at the same family, batch and adapter setting, and for the
adapter against the same rule without it, all measured in the same run.

Usage::

    python benchmarks/generation_throughput.py                       # CPU: tiny sd15 + sdxl
    python benchmarks/generation_throughput.py --size full --dtype float16 --batches 1,4,8 --steps 30

Prints a table and writes ``benchmarks/results/generation_throughput.json``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPTS = [
    "a lighthouse at dusk, oil painting",
    "a cozy reading nook with warm light",
    "a neon city street in the rain",
    "a bowl of ramen, studio photo",
    "a mountain cabin in winter",
    "a robot tending a garden",
    "a vintage bicycle against a brick wall",
    "a jazz club, film noir style",
]
RULES = {"cfg": {}, "interval": {"start": 0.2, "stop": 0.7}, "adaptive": {"threshold": 0.991}, "apg": {}}


def _references(n: int):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)) for _ in range(n)]


def _backend(family: str, size: str, dtype, device: str, adapter: bool, tmp: Path):
    from generation.backends.diffusers_sd import DiffusersBackend
    from generation.random_weights import build_random_pipeline, random_ip_adapter_state_dict, save_ip_adapter

    pipe = build_random_pipeline(family, size, torch_dtype=dtype)
    ip = None
    if adapter:
        ip = tmp / f"ip-adapter_{family}_{size}.safetensors"
        if not ip.exists():
            save_ip_adapter(
                random_ip_adapter_state_dict(pipe.unet, image_embed_dim=pipe.image_encoder.config.projection_dim), ip
            )
        ip = str(ip)
    return DiffusersBackend(pipe, ip_adapter=ip, device=device)


def main(argv=None) -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cuda = torch.cuda.is_available()
    ap.add_argument("--families", default="sd15,sdxl")
    ap.add_argument("--size", default="full" if cuda else "tiny", choices=["tiny", "full"])
    ap.add_argument("--rules", default=",".join(RULES))
    ap.add_argument("--batches", default="1,4,8" if cuda else "1,4")
    ap.add_argument("--steps", type=int, default=30 if cuda else 20)
    ap.add_argument(
        "--resolution", type=int, default=None, help="Pixels per side [default: the model's native size; 64 for tiny]."
    )
    ap.add_argument("--dtype", default="float16" if cuda else "float32", choices=["float32", "float16", "bfloat16"])
    ap.add_argument("--adapter", default="both", choices=["both", "on", "off"])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "generation_throughput.json"))
    args = ap.parse_args(argv)
    if args.size == "full" and not cuda:
        print("full-size models on CPU would take minutes per image; use --size tiny here", file=sys.stderr)
        return 2
    device = "cuda" if cuda else "cpu"
    dtype = getattr(torch, args.dtype)
    from generation.conditions import UserCondition

    refs = _references(8)
    adapters = {"both": [False, True], "on": [True], "off": [False]}[args.adapter]
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="pwb-gen-bench-"))
    for family in args.families.split(","):
        native = {"sd15": 512, "sdxl": 1024}[family] if args.size == "full" else 64
        res = args.resolution or native
        for adapter in adapters:
            backend = _backend(family, args.size, dtype, device, adapter, tmp)
            for rule in args.rules.split(","):
                for batch in (int(b) for b in args.batches.split(",")):
                    conds = [
                        UserCondition(
                            f"u{i}",
                            PROMPTS[i % len(PROMPTS)],
                            guidance=rule,
                            guidance_options=RULES.get(rule, {}),
                            references=[refs[i % len(refs)]] if adapter else [],
                            seed=i,
                        )
                        for i in range(batch)
                    ]
                    print(
                        f"[generation_throughput] {family} {args.size} adapter={adapter} {rule} batch {batch} ...",
                        file=sys.stderr,
                        flush=True,
                    )
                    backend.generate(conds[:1], steps=2, height=res, width=res, batch_size=1, progress=False)  # warm-up
                    if cuda:
                        torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    outs = backend.generate(
                        conds, steps=args.steps, height=res, width=res, batch_size=batch, progress=False
                    )
                    wall = time.perf_counter() - t0
                    rows.append(
                        {
                            "family": family,
                            "size": args.size,
                            "dtype": args.dtype,
                            "device": device,
                            "resolution": res,
                            "rule": rule,
                            "ip_adapter": adapter,
                            "batch": batch,
                            "steps": args.steps,
                            "images_per_s": batch / wall,
                            "seconds": wall,
                            "peak_mem_gib": max(o.peak_mem or 0 for o in outs) / 2**30,
                            "peak_mem_kind": "cuda max_memory_allocated" if cuda else "process max RSS",
                            "unet_evals_per_image": sum(o.unet_evals for o in outs) / batch,
                            "adaptive_switch_steps": [o.params.get("switched_at_step") for o in outs]
                            if rule == "adaptive"
                            else None,
                        }
                    )
            del backend
            if cuda:
                torch.cuda.empty_cache()
    base = {(r["family"], r["ip_adapter"], r["batch"]): r for r in rows if r["rule"] == "cfg"}
    noad = {(r["family"], r["rule"], r["batch"]): r for r in rows if not r["ip_adapter"]}
    for r in rows:
        b = base.get((r["family"], r["ip_adapter"], r["batch"]))
        r["speed_vs_cfg"] = r["images_per_s"] / b["images_per_s"] if b else None
        r["evals_vs_cfg"] = r["unet_evals_per_image"] / b["unet_evals_per_image"] if b else None
        n = noad.get((r["family"], r["rule"], r["batch"]))
        r["adapter_time_overhead"] = (n["images_per_s"] / r["images_per_s"] - 1) if (r["ip_adapter"] and n) else None
    note = (
        "GPU, full-size random-weight architectures"
        if cuda and args.size == "full"
        else "CPU, tiny random-weight models: images/s show loop overhead, not real speed; UNet evaluation counts hold"
    )
    print(f"\n{note}\n")
    print(
        "family | adapter | rule | batch | images/s | vs cfg | UNet evals/image | evals vs cfg | adapter overhead | peak GiB"
    )
    print("--- | --- | --- | --- | --- | --- | --- | --- | --- | ---")
    for r in rows:
        ov = f"{r['adapter_time_overhead']:+.0%}" if r["adapter_time_overhead"] is not None else "-"
        print(
            f"{r['family']} | {'on' if r['ip_adapter'] else 'off'} | {r['rule']} | {r['batch']} | {r['images_per_s']:.2f} | "
            f"{r['speed_vs_cfg']:.2f}x | {r['unet_evals_per_image']:.1f} | {r['evals_vs_cfg']:.2f} | {ov} | {r['peak_mem_gib']:.2f}"
        )
    from _results import write_result

    write_result(args.out, "generation_throughput", rows, note=note, gpu=torch.cuda.get_device_name() if cuda else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
