"""Pass-through to diffusers' stock pipelines, for users who want exactly what diffusers does.

One condition per call (diffusers mixes per-sample IP-Adapter embeddings and applies one guidance and
adapter scale per batch, diffusers issue #9813), plain CFG only (``guidance_scale``), the IP-Adapter scale
through ``set_ip_adapter_scale``. Use :class:`~generation.backends.diffusers_sd.DiffusersBackend` for the
other guidance rules, per-sample batches and identity injection.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .diffusers_sd import SampleOutput, _rss_peak, load_pipeline, make_scheduler, resolve_device

if TYPE_CHECKING:
    from ..conditions import UserCondition


class StockPipelineBackend:
    """diffusers' own ``__call__`` per condition. Same arguments as ``DiffusersBackend`` (no identity)."""

    name = "diffusers-pipeline"

    def __init__(
        self,
        model: Any,
        *,
        ip_adapter: Any = None,
        scheduler: str | None = "default",
        device: str | None = None,
        torch_dtype: Any = None,
        identity_adapter: Any = None,
        face_provider: str = "dlib",
    ):
        from ..adapters import ip_adapter as ipa

        if identity_adapter is not None:
            raise ValueError(
                "identity injection needs backend='diffusers' (the stock pipeline has no consent check "
                "or face-embedding input)"
            )
        self.device = resolve_device(device)
        self.model = model if isinstance(model, str) else type(model).__name__
        self.pipe = load_pipeline(model, torch_dtype=torch_dtype, device=self.device)
        self.scheduler_name = scheduler or "default"
        make_scheduler(self.pipe, scheduler)
        self.ip_adapter = ipa.AdapterSpec.parse(ip_adapter) if ip_adapter is not None else None
        if self.ip_adapter is not None:
            s = self.ip_adapter
            folder = None if getattr(self.pipe, "image_encoder", None) is not None else s.image_encoder_folder
            self.pipe.load_ip_adapter(
                s.source, subfolder=s.subfolder, weight_name=s.weight_name, image_encoder_folder=folder
            )
        self.face_embedder = None

    def describe(self) -> dict[str, Any]:
        return {
            "family": "sdxl" if hasattr(self.pipe, "text_encoder_2") else "sd15",
            "scheduler": self.scheduler_name,
            "device": self.device,
            "ip_adapter": self.ip_adapter.label() if self.ip_adapter else None,
        }

    def generate(
        self,
        conditions: list[UserCondition],
        *,
        steps: int | None = 30,
        height: int | None = None,
        width: int | None = None,
        batch_size: int = 1,
        progress: bool = True,
    ) -> list[SampleOutput]:
        import torch

        steps = 30 if steps is None else steps
        from workbench.images import load_image

        outs = []
        for c in conditions:
            rule = c.make_rule()
            if rule.name != "cfg" or rule.config().get("schedule", {}).get("name", "constant") != "constant":
                raise ValueError(
                    f"the stock pipeline only does constant cfg; user {c.user_id!r} asks for {rule.name!r}: "
                    "use backend='diffusers'"
                )
            if c.identity is not None:
                raise ValueError("identity injection needs backend='diffusers'")
            kwargs: dict[str, Any] = {}
            if c.references:
                if self.ip_adapter is None:
                    raise ValueError(f"user {c.user_id!r} has reference images but no IP-Adapter is loaded")
                self.pipe.set_ip_adapter_scale(c.reference_scale)
                images = [load_image(r.image) for r in c.references]
                kwargs["ip_adapter_image"] = images[0] if len(images) == 1 else [images]
            elif self.ip_adapter is not None:
                self.pipe.set_ip_adapter_scale(0.0)
                from PIL import Image

                kwargs["ip_adapter_image"] = Image.new("RGB", (64, 64))
            if self.device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            image = self.pipe(
                prompt=c.prompt,
                negative_prompt=c.negative_prompt,
                num_inference_steps=steps,
                height=height,
                width=width,
                guidance_scale=rule.scale,
                generator=torch.Generator("cpu").manual_seed(c.seed),
                **kwargs,
            ).images[0]
            peak = float(torch.cuda.max_memory_allocated()) if self.device.startswith("cuda") else _rss_peak()
            evals = steps * (2 if rule.scale > 1 else 1)
            outs.append(
                SampleOutput(
                    image=image,
                    unet_evals=evals,
                    latency_s=time.perf_counter() - t0,
                    peak_mem=peak,
                    params={"guidance": rule.config()},
                )
            )
        return outs
