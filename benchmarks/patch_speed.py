"""Patch generator speed: seconds per image (and per megapixel) from 64 to 1024 px, and peak memory.

Each size generates one image from a reference of the same size (scikit-image's ``chelsea``, resized),
after the generator is built (reference pyramid and search structures: reported separately as setup).
Configurations: ``fast`` (PatchConfig.fast(): query stride 4, reference stride 3, top-8 exact k-NN; the
CPU preset) and ``paper`` (every patch, exact closed form; the paper's setting), the second only where it
fits the time budget. On a GPU the same script runs on CUDA; when the reference implementation
(haojunqiu/efficient-SID-code) is importable as ``efficient_sid``, run it side by side on the same image
for a ratio (it is not installable here: it needs CUDA).

Usage::

    python benchmarks/patch_speed.py                            # CPU: fast 64..1024, paper 64..128
    python benchmarks/patch_speed.py --sizes 256,512,1024 --configs fast,paper

Prints a table and writes ``benchmarks/results/patch_speed.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None) -> int:
    import numpy as np
    import torch
    from PIL import Image
    from skimage import data

    from generation.backends.patch import PatchConfig, PatchDiffusion

    cuda = torch.cuda.is_available()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="64,128,256,512,1024")
    ap.add_argument("--configs", default="fast,paper")
    ap.add_argument(
        "--paper-max",
        type=int,
        default=1024 if cuda else 128,
        help="Largest size the exact paper setting is run at (its cost grows with pixels squared).",
    )
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "patch_speed.json"))
    args = ap.parse_args(argv)
    base = Image.fromarray(data.chelsea()[:, 50:350])
    rows = []
    for name in args.configs.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            if name == "paper" and size > args.paper_max:
                continue
            cfg = PatchConfig.fast() if name == "fast" else PatchConfig()
            ref = base.resize((size, size), Image.BICUBIC)
            print(f"[patch_speed] {name} {size}px ...", file=sys.stderr, flush=True)
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            gen = PatchDiffusion([ref], cfg)
            gen.sample(seed=0)  # builds every scale's denoiser (setup) and warms up
            first = time.perf_counter() - t0
            if cuda:
                torch.cuda.synchronize()
            t1 = time.perf_counter()
            out = gen.sample(seed=1)
            if cuda:
                torch.cuda.synchronize()
            secs = time.perf_counter() - t1
            rows.append(
                {
                    "config": name,
                    "size": size,
                    "device": "cuda" if cuda else "cpu",
                    "seconds": secs,
                    "seconds_per_megapixel": secs / (size * size / 1e6),
                    "first_call_seconds": first,
                    "scales": out.scales,
                    "methods": out.methods,
                    "denoiser_calls": out.denoiser_calls,
                    "peak_mem_mib": (torch.cuda.max_memory_allocated() / 2**20) if cuda else _peak_rss_mib(),
                    "peak_mem_kind": "cuda max_memory_allocated" if cuda else "process max RSS",
                    "mean_pixel": float(np.asarray(out.image).mean()),
                }
            )
    print("config | size | seconds/image | s/megapixel | first call (setup + sample) | peak MiB | scales")
    print("--- | --- | --- | --- | --- | --- | ---")
    for r in rows:
        print(
            f"{r['config']} | {r['size']} | {r['seconds']:.2f} | {r['seconds_per_megapixel']:.1f} | "
            f"{r['first_call_seconds']:.2f} | {r['peak_mem_mib']:.0f} | {len(r['scales'])}"
        )
    from _results import write_result

    write_result(
        args.out,
        "patch_speed",
        rows,
        threads=torch.get_num_threads(),
        gpu=torch.cuda.get_device_name() if cuda else None,
        note=(
            f"CPU: torch with {torch.get_num_threads()} threads; the reference implementation needs CUDA and "
            "was not run"
        )
        if not cuda
        else None,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
