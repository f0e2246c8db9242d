"""Patch generator speed: seconds per image from 64 to 1024 px with peak memory, and side by side with the
authors' code.

Each size generates one image from a reference of the same size (scikit-image's ``chelsea``, resized) after the
generator is built (reference pyramid and search structures: reported as the first call). Presets (each row
lists its scales and the search every scale used, finest first):

* ``fast`` (``PatchConfig.fast()``: query stride 4, reference stride 3, top-8 in a 64-d PCA subspace; the CPU
  default);
* ``auto`` (``PatchConfig()``: exact while a scale costs under ``exact_budget``, the 16 nearest beyond, FAISS
  inverted lists when faiss is installed: the finest scale from 128 px up);
* ``reference`` (``PatchConfig.reference()``: the authors' sampler, exact at every scale), only up to
  ``--reference-max`` px (its cost grows with the pixels squared).

``--against PATH`` also runs the authors' code (haojunqiu/efficient-SID-code, MIT; a local copy given by path,
never vendored here) on the same image, seed and settings as the ``reference`` preset, at ``--against-sizes``
(default 64, 128, 256): its pixel-exact sampler (``configs/uncond/pixel_exact.yaml`` with ``--dtype``, float32 by
default), on CPU once its one ``.cuda()`` call is skipped (done here, in the child process, by making
``Module.cuda`` return the module), its queries split into chunks of at most ``--query-chunk`` so memory stays
bounded (the same computation: the split is theirs, ``query_chunks``). Each side runs in a fresh process with
``--threads`` threads, from the image file to 8-bit pixels, pyramids and denoisers included. The rows give
seconds per image each side, ``ratio`` (ours / theirs: below 1 is faster) and the outputs' agreement: the
largest and the mean difference in levels and the share of subpixels that differ. The reference code needs
``omegaconf`` (``pip install omegaconf``).

Usage::

    python benchmarks/patch_speed.py                                   # CPU: fast 64..1024, auto and reference 64..128
    python benchmarks/patch_speed.py --sizes 64 --configs reference --against ../efficient-SID-code

Prints tables and writes ``benchmarks/results/patch_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _image(size: int):
    from PIL import Image
    from skimage import data

    return Image.fromarray(data.chelsea()[:, 50:350]).resize((size, size), Image.BICUBIC)


def _config(name: str, **kw):
    from generation.backends.patch import PatchConfig

    return {"fast": PatchConfig.fast, "auto": PatchConfig, "reference": PatchConfig.reference}[name](**kw)


def speed_rows(args, cuda: bool) -> list[dict]:
    """Every preset at every size: seconds for a second image after a first that builds the generator."""
    import numpy as np
    import torch

    from generation.backends.patch import PatchDiffusion

    rows = []
    for name in args.configs.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            if name in ("reference", "auto") and size > args.reference_max:
                continue
            print(f"[patch_speed] {name} {size}px ...", file=sys.stderr, flush=True)
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            gen = PatchDiffusion([_image(size)], _config(name))
            gen.sample(seed=0)  # builds every scale's denoiser (setup) and warms up
            first = time.perf_counter() - t0
            if cuda:
                torch.cuda.synchronize()
            t1 = time.perf_counter()
            out = gen.sample(seed=1)
            if cuda:
                torch.cuda.synchronize()
            secs = time.perf_counter() - t1
            quality = {}
            if size <= args.reference_max:
                quality = _quality(out.image, _image(size))
                if name == "auto" and "topk" in "".join(out.methods):  # the approximation against exact
                    exact = PatchDiffusion([_image(size)], _config("auto", method="exact")).sample(seed=1)
                    quality["vs_exact"] = _agreement(np.asarray(out.image), np.asarray(exact.image))
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
                    **quality,
                }
            )
    return rows


def _quality(image, reference) -> dict:
    """How the output relates to its reference: the share of 32-px windows copied from it and the single-image
    FD on the EfficientNet-Lite0 stand-in's early features (named so: not SIFID's Inception)."""
    from evalbench.metrics.single_image import copy_rate, single_image_fd

    return {
        "copy_rate_32px": copy_rate(image, reference, patch=32, stride=16),
        "single_image_fd_effnet_lite0": single_image_fd(reference, image),
    }


def _agreement(a, b) -> dict:
    import numpy as np

    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return {
        "max_level_diff": int(diff.max()),
        "mean_level_diff": float(diff.mean()),
        "differing_subpixels": float((diff > 0).mean()),
    }


# -- side by side with the authors' code --------------------------------------------------------------


def _child_reference(path: str, image: str, seed: int, dtype_name: str, query_chunk: int, device: str) -> dict:
    """The authors' pixel-exact sampler on ``image`` (run in a child process: it imports their package)."""
    import math

    import numpy as np
    import torch

    sys.path.insert(0, path)
    torch.nn.Module.cuda = lambda self, device=None: self  # their one .cuda() (build_image_denoiser), skipped
    from efficient_sid import build
    from efficient_sid.applications.uncond import sample_uncond
    from efficient_sid.closed_form_denoiser import ClosedFormDenoiserConfig
    from efficient_sid.image_denoiser import ImageDenoiserConfig
    from efficient_sid.pyramid import PyramidConfig, PyramidProcessor
    from efficient_sid.scheduler import FlowLinearConfig, make_scheduler
    from efficient_sid.utils import load_image_as_tensor, normalize_to_neg_one_to_one, seed_everything, tensor_to_pil
    from omegaconf import OmegaConf

    dev = torch.device(device)
    dtype = getattr(torch, dtype_name)
    t0 = time.perf_counter()
    img = normalize_to_neg_one_to_one(load_image_as_tensor(image).to(dtype).to(dev))
    H, W = img.shape[-2:]
    n = build.auto_num_scales(min(H, W), 24)  # pixel_exact.yaml: min_short_side 24, num_scales auto
    schedulers = [
        make_scheduler(OmegaConf.structured(FlowLinearConfig(num_steps=10, sigma_min=1e-4, eta=0.0)), dev)
        for _ in range(n)
    ]
    processor = PyramidProcessor(PyramidConfig(relative_scale=0.5, num_scales=n, min_short_side=24))
    pyramid = [level.to(dtype) for level in processor.build_gaussian_pyramid(img)]
    denoisers = []
    for level in pyramid:
        queries = (level.shape[-2] - 14) * (level.shape[-1] - 14)
        cfg = OmegaConf.structured(
            ImageDenoiserConfig(
                patch_size=15,
                dataset_stride=1,
                query_stride=1,
                fold_rho=0.2,
                patch_denoiser=ClosedFormDenoiserConfig(
                    type="exact", bottleneck_dtype=dtype_name, query_chunks=max(1, math.ceil(queries / query_chunk))
                ),
            )
        )
        denoisers.append(build.build_image_denoiser(cfg, level, dtype).to(dev))
    shapes = processor.gaussian_pyramid_shapes((3, H, W))
    seed_everything(seed)
    result = sample_uncond(denoisers, schedulers, processor, shapes, eta=0.0, device=dev, dtype=dtype)
    out = np.asarray(tensor_to_pil(result.float()))
    secs = time.perf_counter() - t0
    return {"seconds": secs, "scales": [list(s[-2:]) for s in shapes], "pixels": out.tolist()}


def _child_ours(image: str, seed: int, dtype_name: str, device: str) -> dict:
    """The ``reference`` preset on ``image``, timed the same way (file to 8-bit pixels, setup included)."""
    import numpy as np

    from generation.backends.patch import PatchConfig, PatchDiffusion

    t0 = time.perf_counter()
    gen = PatchDiffusion([image], PatchConfig.reference(dtype=dtype_name, device=device))
    s = gen.sample(seed=seed)
    secs = time.perf_counter() - t0
    return {
        "seconds": secs,
        "scales": [list(x) for x in s.scales],
        "methods": s.methods,
        "pixels": np.asarray(s.image).tolist(),
    }


def _spawn(args: list[str], threads: int) -> dict:
    cmd = [sys.executable, __file__, "--threads", str(threads), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def against_rows(args, device: str) -> list[dict]:
    """Ours (the ``reference`` preset) and theirs at each size, each in a fresh process, with the agreement."""
    import numpy as np

    ref_path = Path(args.against).resolve()
    if not (ref_path / "efficient_sid" / "applications" / "uncond.py").exists():
        raise SystemExit(
            f"--against {args.against}: no efficient_sid/applications/uncond.py there; give the folder of a local "
            "copy of haojunqiu/efficient-SID-code"
        )
    rows = []
    with tempfile.TemporaryDirectory(prefix="pwb-patch-against-") as tmp:
        for size in (int(s) for s in args.against_sizes.split(",")):
            image = Path(tmp) / f"chelsea-{size}.png"
            _image(size).save(image)
            print(f"[patch_speed] against the reference code, {size}px ...", file=sys.stderr, flush=True)
            common = ["--seed", str(args.seed), "--dtype", args.dtype, "--device", device, "--image", str(image)]
            theirs = _spawn(
                ["--child", "reference", "--against", str(ref_path), "--query-chunk", str(args.query_chunk), *common],
                args.threads,
            )
            ours = _spawn(["--child", "ours", *common], args.threads)
            a = np.asarray(ours.pop("pixels"), dtype=np.int16)
            b = np.asarray(theirs.pop("pixels"), dtype=np.int16)
            agree = _agreement(a, b) if a.shape == b.shape else {}
            rows.append(
                {
                    "size": size,
                    "device": device,
                    "dtype": args.dtype,
                    "seed": args.seed,
                    "threads": args.threads,
                    "seconds": ours["seconds"],
                    "reference": {"seconds": theirs["seconds"], "scales": theirs["scales"]},
                    "ratio": ours["seconds"] / theirs["seconds"],
                    "scales": ours["scales"],
                    "methods": ours["methods"],
                    "same_scales": ours["scales"] == theirs["scales"],
                    "max_level_diff": agree.get("max_level_diff"),
                    "mean_level_diff": agree.get("mean_level_diff"),
                    "differing_subpixels": agree.get("differing_subpixels"),
                }
            )
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="64,128,256,512,1024")
    ap.add_argument("--configs", default="fast,auto,reference")
    ap.add_argument(
        "--reference-max",
        type=int,
        default=None,
        help="Largest size the exact presets (reference, auto) run at [default: 1024 on CUDA, 128 on CPU].",
    )
    ap.add_argument("--against", default=None, metavar="PATH", help="A local copy of the authors' code to run beside.")
    ap.add_argument("--against-sizes", default="64,128,256")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--seed", type=int, default=10, help="The seed both sides sample with (the reference's default).")
    ap.add_argument("--threads", type=int, default=None, help="torch threads in every process [default: all cores].")
    ap.add_argument("--query-chunk", type=int, default=4096, help="Most queries the reference scores at once.")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "patch_speed.json"))
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--image", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--device", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    import os

    import torch

    args.threads = args.threads or os.cpu_count()
    torch.set_num_threads(args.threads)
    if args.child:
        if args.child == "reference":
            got = _child_reference(args.against, args.image, args.seed, args.dtype, args.query_chunk, args.device)
        else:
            got = _child_ours(args.image, args.seed, args.dtype, args.device)
        print(json.dumps(got))
        return 0
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    if args.reference_max is None:
        args.reference_max = 1024 if cuda else 128
    rows = speed_rows(args, cuda) if args.configs else []
    if rows:
        print(
            "config | size | seconds/image | s/megapixel | first call | peak MiB | copy_rate[32px] | single_image_fd[effnet-lite0] | search per scale"
        )
        print("--- | --- | --- | --- | --- | --- | --- | --- | ---")
        for r in rows:
            q = (
                (f"{r['copy_rate_32px']:.3f} | {r['single_image_fd_effnet_lite0']:.3f}")
                if "copy_rate_32px" in r
                else "- | -"
            )
            print(
                f"{r['config']} | {r['size']} | {r['seconds']:.2f} | {r['seconds_per_megapixel']:.1f} | "
                f"{r['first_call_seconds']:.2f} | {r['peak_mem_mib']:.0f} | {q} | {', '.join(r['methods'])}"
            )
            if "vs_exact" in r:
                v = r["vs_exact"]
                print(
                    f"  {r['config']} {r['size']} against method=exact: max {v['max_level_diff']} levels, "
                    f"{100 * v['differing_subpixels']:.1f}% of subpixels differ"
                )
    against = against_rows(args, device) if args.against else []
    if against:
        print("size | ours s | reference s | ratio | scales (ours = theirs) | max diff | mean diff | differing")
        print("--- | --- | --- | --- | --- | --- | --- | ---")
        for r in against:
            print(
                f"{r['size']} | {r['seconds']:.2f} | {r['reference']['seconds']:.2f} | {r['ratio']:.2f} | "
                f"{len(r['scales'])} ({r['same_scales']}) | {r['max_level_diff']} | {r['mean_level_diff']:.4f} | "
                f"{100 * r['differing_subpixels']:.2f}%"
            )
    from _results import write_result

    write_result(
        args.out,
        "patch_speed",
        rows,
        against=against,
        threads=args.threads,
        gpu=torch.cuda.get_device_name() if cuda else None,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
