"""Variations of public-domain sample images with the training-free patch generator, as a grid.

No weights, no GPU: each reference's patches at four scales are the whole model. Writes the grid
(reference, then three variations per row) and prints, per reference, the copy rate at 32-pixel windows
(regions larger than the generator's 15-pixel patch that come back verbatim; lower is better) and the
diversity between the variations on the EfficientNet-Lite0 stand-in.

Usage: ``python examples/patch_gallery.py [OUT.png]`` (default ``docs/patch_variations.png``), about
10 s on 2 CPU cores.
"""

import sys
import time
from pathlib import Path

from PIL import Image, ImageDraw
from skimage import data

from evalbench.metrics.single_image import CopyRate, Diversity
from generation.backends.patch import PatchConfig, PatchDiffusion

OUT = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "docs" / "patch_variations.png")
SIZE, N = 192, 3
REFERENCES = {  # square crops, resized
    "chelsea": data.chelsea()[:, 50:350],
    "coffee": data.coffee()[:, 100:500],
    "brick": data.brick(),
    "immunohistochemistry": data.immunohistochemistry()[:384, :384],
}

rows, seconds = [], 0.0
copy = CopyRate(patch=32, stride=16)
diversity = Diversity()
for name, arr in REFERENCES.items():
    ref = Image.fromarray(arr).convert("RGB").resize((SIZE, SIZE), Image.BICUBIC)
    t0 = time.perf_counter()
    gen = PatchDiffusion([ref], PatchConfig.fast())
    outs = [gen.sample(seed=s).image for s in range(N)]
    seconds += time.perf_counter() - t0
    copy.update(outs, ref)
    diversity.update(outs, group=name)
    rows.append((name, ref, outs, copy.values[-N:]))

pad, label = 4, 16
grid = Image.new("RGB", ((N + 1) * (SIZE + pad) + pad, len(rows) * (SIZE + pad + label) + pad), "white")
draw = ImageDraw.Draw(grid)
for i, (name, ref, outs, rates) in enumerate(rows):
    y = pad + i * (SIZE + pad + label)
    draw.text((pad, y), f"reference: {name}", fill="black")
    for j, im in enumerate([ref, *outs]):
        x = pad + j * (SIZE + pad)
        grid.paste(im, (x, y + label))
        if j:
            draw.text((x, y), f"seed {j - 1}, copy {rates[j - 1]:.2f}", fill="black")
OUT.parent.mkdir(parents=True, exist_ok=True)
grid.save(OUT)

mean_div = diversity.compute()
print(f"{len(rows)} references x {N} variations at {SIZE}px, generated in {seconds:.1f} s -> {OUT}")
for (name, _, _, rates), div in zip(rows, diversity.per_group.values()):
    print(f"  {name:<22} {copy.name} {max(rates):.3f} (max of {N})   {diversity.name} {div:.3f}")
print(f"mean {copy.name} {copy.compute():.3f}; mean {diversity.name} {mean_div:.3f}")
