"""Our denoising loop for SD 1.5 / SDXL-family UNets, built from a diffusers pipeline's components.

Why our own loop: diffusers' pipelines apply one guidance scale and one IP-Adapter scale to the whole
batch, its guiders are only wired into modular pipelines, and CFG++ / beta-CFG / adaptive guidance do
not exist there. Here every sample of a batch carries its own condition (prompt, negative prompt,
reference images and scales, identity embedding, guidance rule, seed), and every step builds the batch
from the branches each sample's rule asks for (so adaptive and interval guidance really save UNet
evaluations). Samples never share state: text and images are encoded per sample, initial noise comes
from a per-sample generator, IP-Adapter tokens and scales are per row, and the scheduler update is
elementwise.

Text encoding, image encoding, VAE decoding and the schedulers are the pipeline's own (diffusers).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from workbench.registry import Registry

from ..adapters import ip_adapter as ipa

if TYPE_CHECKING:
    import torch

    from ..conditions import UserCondition

SCHEDULERS = Registry(
    "scheduler",
    {
        "ddim": "diffusers:DDIMScheduler",
        "ddpm": "diffusers:DDPMScheduler",
        "euler": "diffusers:EulerDiscreteScheduler",
        "euler-a": "diffusers:EulerAncestralDiscreteScheduler",
        "dpm++": "diffusers:DPMSolverMultistepScheduler",
        "unipc": "diffusers:UniPCMultistepScheduler",
        "pndm": "diffusers:PNDMScheduler",
    },
)


@dataclass
class SampleOutput:
    image: Any
    unet_evals: int
    latency_s: float
    peak_mem: float | None
    params: dict[str, Any] = field(default_factory=dict)
    latents: Any = None  # final latents (CPU float32), for exact comparisons in tests


def resolve_device(device: str | None = None) -> str:
    import torch

    if device:
        return device
    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def load_pipeline(model: Any, *, torch_dtype: Any = None, device: str | None = None):
    """A diffusers text-to-image pipeline from an id, a folder, ``random:<family>-<size>`` or an object."""
    from ..random_weights import build_random_pipeline, parse_random_model

    if not isinstance(model, str):
        pipe = model
    elif (spec := parse_random_model(model)) is not None:
        pipe = build_random_pipeline(*spec, torch_dtype=torch_dtype)
    else:
        from pathlib import Path

        from diffusers import AutoPipelineForText2Image

        local = Path(model).expanduser()
        if model.startswith((".", "/", "~")) or local.exists():  # a path, not a hub id: say what is missing
            if not (local / "model_index.json").is_file():
                what = "no folder" if not local.exists() else "no model_index.json in the folder"
                raise FileNotFoundError(
                    f"model: {what} at {local}; pass a folder saved with save_pretrained, a "
                    "diffusers model id, or random:sdxl-tiny"
                )
        kwargs = {"torch_dtype": torch_dtype} if torch_dtype is not None else {}
        try:
            pipe = AutoPipelineForText2Image.from_pretrained(model, **kwargs)
        except (OSError, ValueError) as exc:
            first = " ".join(str(exc).split())  # one line
            raise ValueError(
                f"cannot load diffusion model {model!r}: {first} Pass a diffusers model id (with network access "
                "or a filled HF cache), a local folder saved with save_pretrained, or random:sdxl-tiny to try "
                "the code path with random weights"
            ) from exc
    if not hasattr(pipe, "unet") or not hasattr(pipe, "encode_prompt"):
        raise ValueError(f"model {model!r} is not a UNet text-to-image pipeline (SD 1.5 / SDXL family)")
    pipe.to(resolve_device(device))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def make_scheduler(pipe, name: str | None):
    """Replace the pipeline's scheduler by name (same config); ``None``/``"default"`` keeps it."""
    if name in (None, "default"):
        return pipe.scheduler
    cls = SCHEDULERS.get(name, field="scheduler")
    pipe.scheduler = cls.from_config(pipe.scheduler.config)
    return pipe.scheduler


class _PerturbableSelfAttn:
    """Wraps a self-attention processor; while ``active``, attention is the identity map (PAG's perturbed
    branch, arXiv 2403.17377: the output is the value projection of each token itself)."""

    def __init__(self, inner):
        self.inner = inner
        self.active = False

    def __call__(
        self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs
    ):
        if not self.active:
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        residual = hidden_states
        hidden_states, shape4 = ipa.to_tokens(attn, hidden_states, temb)
        hidden_states = attn.to_out[1](attn.to_out[0](attn.to_v(hidden_states)))
        return ipa.from_tokens(attn, hidden_states, shape4, residual)


class DiffusersBackend:
    """Generate images for many users' conditions in batches with per-sample guidance and adapters.

    Args:
        model: diffusers id or folder (``stabilityai/stable-diffusion-xl-base-1.0``), a loaded pipeline,
            or ``random:<sd15|sdxl>-<tiny|full>`` for random weights built from configs.
        ip_adapter: IP-Adapter weights for reference images: ``<id or folder>:<subfolder/file>``
            (``h94/IP-Adapter:sdxl_models/ip-adapter_sdxl.safetensors``), a file path, an
            :class:`~generation.adapters.ip_adapter.AdapterSpec` or a state dict.
        identity_adapter: IP-Adapter-FaceID-style weights fed by face-identity embeddings, same forms.
        face_provider: face embedder for identity references (``dlib`` here, ``arcface`` with insightface).
        scheduler: ``ddim`` (default; needed by ``cfgpp``), ``default`` (the model's own), ``euler``,
            ``dpm++``, ``unipc``, ...
        device: ``cuda``, ``cpu``, ... (default: CUDA when available).
        torch_dtype: e.g. ``torch.float16`` on a GPU.
    """

    name = "diffusers"

    def __init__(
        self,
        model: Any,
        *,
        ip_adapter: Any = None,
        identity_adapter: Any = None,
        face_provider: str = "dlib",
        scheduler: str | None = "ddim",
        device: str | None = None,
        torch_dtype: Any = None,
    ):
        self.device = resolve_device(device)
        self.model = model if isinstance(model, str) else type(model).__name__
        self.pipe = load_pipeline(model, torch_dtype=torch_dtype, device=self.device)
        self.scheduler_name = scheduler or "default"
        make_scheduler(self.pipe, scheduler)
        self.is_sdxl = hasattr(self.pipe, "text_encoder_2")
        self.adapter_specs: list[ipa.AdapterSpec] = []
        self.ref_adapter: int | None = None
        self.id_adapter: int | None = None
        if ip_adapter is not None:
            self.ref_adapter = len(self.adapter_specs)
            self.adapter_specs.append(ipa.AdapterSpec.parse(ip_adapter))
        if identity_adapter is not None:
            self.id_adapter = len(self.adapter_specs)
            self.adapter_specs.append(ipa.AdapterSpec.parse(identity_adapter, image_encoder_folder=None))
        ipa.load_adapters(self.pipe, self.adapter_specs)
        self.face_provider = face_provider
        self._face = None

    # -- description -----------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {
            "family": "sdxl" if self.is_sdxl else "sd15",
            "scheduler": self.scheduler_name,
            "ip_adapter": self.adapter_specs[self.ref_adapter].label() if self.ref_adapter is not None else None,
            "identity_adapter": self.adapter_specs[self.id_adapter].label() if self.id_adapter is not None else None,
            "face_provider": self.face_provider if self.id_adapter is not None else None,
            "device": self.device,
            "dtype": str(self.pipe.unet.dtype).replace("torch.", ""),
        }

    @property
    def face_embedder(self):
        if self._face is None:
            from workbench.encoders.face import get_face_embedder

            self._face = get_face_embedder(self.face_provider)
        return self._face

    # -- checks ----------------------------------------------------------------------------------------
    def check_inputs(self, conditions: list[UserCondition], steps: int, height: int, width: int) -> None:
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        factor = self.pipe.vae_scale_factor  # diffusers' own rule; the UNet copes with odd latent sizes
        for name, v in (("height", height), ("width", width)):
            if v < factor or v % factor:
                raise ValueError(f"{name} must be a positive multiple of {factor} for this model, got {v}")
        for c in conditions:
            c.check_consent()
            if c.references and self.ref_adapter is None:
                raise ValueError(
                    f"user {c.user_id!r} has reference images but no IP-Adapter is loaded: pass ip_adapter= "
                    "(CLI: --ip-adapter ID:SUBFOLDER/FILE)"
                )
            if c.identity is not None and self.id_adapter is None:
                raise ValueError(
                    f"user {c.user_id!r} has an identity reference but no identity adapter is loaded: pass "
                    "identity_adapter= (CLI: --identity-adapter ID:SUBFOLDER/FILE)"
                )
            rule = c.make_rule()
            if rule.space == "x0" and float(getattr(self.pipe.scheduler, "init_noise_sigma", 1.0)) != 1.0:
                raise ValueError(
                    f"guidance {rule.name!r} works on the denoised estimate and needs a variance-preserving "
                    f"scheduler (ddim, ddpm, dpm++, unipc), not {self.scheduler_name!r}"
                )
            if getattr(rule, "needs_ddim", False) and type(self.pipe.scheduler).__name__ != "DDIMScheduler":
                raise ValueError(
                    f"guidance {rule.name!r} takes the DDIM step itself: use scheduler='ddim' (--scheduler ddim)"
                )

    # -- encoding --------------------------------------------------------------------------------------
    def _encode_text(self, c: UserCondition) -> dict[str, torch.Tensor]:
        """One sample's text embeddings (encoded alone, so batch neighbours cannot change them)."""
        import torch

        with torch.no_grad():
            if self.is_sdxl:
                pe, ne, ppe, npe = self.pipe.encode_prompt(
                    prompt=c.prompt,
                    device=self.device,
                    num_images_per_prompt=1,
                    do_classifier_free_guidance=True,
                    negative_prompt=c.negative_prompt,
                )
                return {"cond": pe, "uncond": ne, "cond_pooled": ppe, "uncond_pooled": npe}
            pe, ne = self.pipe.encode_prompt(c.prompt, self.device, 1, True, negative_prompt=c.negative_prompt)
            return {"cond": pe, "uncond": ne}

    def _ref_embeds(self, c: UserCondition) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Weighted mean of a user's reference-image embeddings (cond) and the empty-image ones (uncond)."""
        import torch

        from workbench.images import load_image

        if not c.references:
            return None, None
        proj = self.pipe.unet.encoder_hid_proj.image_projection_layers[self.ref_adapter]
        from diffusers.models.embeddings import ImageProjection

        hidden = not isinstance(proj, ImageProjection)
        conds, unconds, weights = [], [], []
        with torch.no_grad():
            for ref in c.references:
                e, u = self.pipe.encode_image(load_image(ref.image), self.device, 1, output_hidden_states=hidden)
                conds.append(e)
                unconds.append(u)
                weights.append(ref.weight)
        w = torch.tensor(weights, device=self.device, dtype=conds[0].dtype)
        w = (w / w.sum()).view(-1, *([1] * (conds[0].dim() - 1)))
        cond = (torch.cat(conds) * w).sum(0, keepdim=True)
        uncond = (torch.cat(unconds) * w).sum(0, keepdim=True)
        return cond.unsqueeze(1), uncond.unsqueeze(1)  # (1, 1, dim) or (1, 1, tokens, dim)

    def _identity_embeds(self, c: UserCondition) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        import torch

        if c.identity is None:
            return None, None
        proj = self.pipe.unet.encoder_hid_proj.image_projection_layers[self.id_adapter]
        vec = self.face_embedder.embed(c.identity.image)
        expected = _projection_input_dim(proj)
        if expected is not None and expected != vec.shape[-1]:
            raise ValueError(
                f"the identity adapter expects {expected}-d face embeddings but face provider "
                f"{self.face_embedder.name!r} gives {vec.shape[-1]}-d: pick the provider the adapter was trained "
                "with (IP-Adapter-FaceID: --face-provider arcface)"
            )
        dtype = self.pipe.unet.dtype
        e = torch.as_tensor(vec, dtype=dtype, device=self.device).view(1, 1, -1)
        return e, torch.zeros_like(e)

    # -- the loop --------------------------------------------------------------------------------------
    def generate(
        self,
        conditions: list[UserCondition],
        *,
        steps: int | None = 30,
        height: int | None = None,
        width: int | None = None,
        batch_size: int = 4,
        progress: bool = True,
    ) -> list[SampleOutput]:
        """Draw one image per condition, ``batch_size`` conditions per UNet batch."""
        steps = 30 if steps is None else steps
        default = self.pipe.unet.config.sample_size * self.pipe.vae_scale_factor
        height, width = height or default, width or default
        self.check_inputs(conditions, steps, height, width)
        out: list[SampleOutput] = []
        for start in range(0, len(conditions), max(1, batch_size)):
            out.extend(self._generate_batch(conditions[start : start + batch_size], steps, height, width, progress))
        return out

    def _generate_batch(
        self, conds: list[UserCondition], steps: int, height: int, width: int, progress: bool
    ) -> list[SampleOutput]:
        import torch

        from workbench.progress import progress_bar

        from ..guidance.base import StepContext

        pipe, unet, device = self.pipe, self.pipe.unet, self.device
        dtype = unet.dtype
        n = len(conds)
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
            torch.cuda.synchronize()
        t0 = time.perf_counter()

        # 1. Per-sample guidance rules (fresh state per trajectory)
        rules = [c.make_rule() for c in conds]
        # 2. Per-sample text embeddings
        text = [self._encode_text(c) for c in conds]
        # 3. Per-sample adapter inputs: image tokens and per-row scales
        n_adapters = len(self.adapter_specs)
        embeds: list[list[tuple[Any, Any]]] = [[(None, None)] * n_adapters for _ in conds]
        scales = [[0.0] * n_adapters for _ in conds]
        blocks = [None] * n
        for i, c in enumerate(conds):
            if self.ref_adapter is not None and c.references:
                embeds[i][self.ref_adapter] = self._ref_embeds(c)
                if isinstance(c.reference_scale, (int, float)):
                    scales[i][self.ref_adapter] = float(c.reference_scale)
                else:
                    scales[i][self.ref_adapter] = 1.0
                    blocks[i] = c.reference_scale
            if self.id_adapter is not None and c.identity is not None:
                embeds[i][self.id_adapter] = self._identity_embeds(c)
                scales[i][self.id_adapter] = float(c.identity.scale)
        block_rows = None
        if any(b is not None for b in blocks):
            uniform = ipa.block_scales(unet, 1.0, n_adapters)
            block_rows = []
            for i in range(n):
                if blocks[i] is None:
                    block_rows.append(uniform)
                else:
                    per = ipa.block_scales(unet, blocks[i], n_adapters)
                    # the block dictionary applies to the reference adapter only
                    block_rows.append(
                        {k: [per[k][a] if a == self.ref_adapter else 1.0 for a in range(n_adapters)] for k in per}
                    )
        # 4. Initial noise from a per-sample generator
        scheduler = pipe.scheduler
        scheduler.set_timesteps(steps, device=device)
        timesteps = scheduler.timesteps
        shape = (1, unet.config.in_channels, height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)
        latents = (
            torch.cat(
                [
                    torch.randn(shape, generator=torch.Generator("cpu").manual_seed(c.seed), dtype=torch.float32)
                    for c in conds
                ]
            ).to(device=device, dtype=dtype)
            * scheduler.init_noise_sigma
        )
        # 5. SDXL micro-conditioning
        time_ids = None
        if self.is_sdxl:
            proj_dim = pipe.text_encoder_2.config.projection_dim
            time_ids = pipe._get_add_time_ids(
                (height, width), (0, 0), (height, width), dtype=dtype, text_encoder_projection_dim=proj_dim
            ).to(device)
        pag_layers = sorted({layer for r in rules if r.name == "pag" for layer in getattr(r, "layers", ("mid",))})
        evals = [0] * n
        alphas = getattr(scheduler, "alphas_cumprod", None)
        with self._perturbable(pag_layers) as perturb:
            # 6. Denoising loop
            for step, t in enumerate(
                progress_bar(timesteps, desc=f"denoising {n} image(s)", disable=not progress, leave=False)
            ):
                ab, ab_prev = self._alpha_bars(scheduler, alphas, timesteps, step, steps)
                ctx = StepContext(step=step, num_steps=steps, timestep=float(t), alpha_bar=ab, alpha_bar_prev=ab_prev)
                wanted = [r.branches(ctx) for r in rules]
                scaled = scheduler.scale_model_input(latents, t)
                preds: list[dict[str, torch.Tensor]] = [dict() for _ in range(n)]
                rows = [(i, b) for i in range(n) for b in wanted[i] if b != "perturbed"]
                prow = [(i, "perturbed") for i in range(n) if "perturbed" in wanted[i]]
                for group, active in ((rows, False), (prow, True)):
                    if not group:
                        continue
                    perturb(active)
                    result = self._unet(scaled, t, group, text, embeds, scales, block_rows, time_ids)
                    for (i, b), r in zip(group, result):
                        preds[i][b] = r.unsqueeze(0)
                        evals[i] += 1
                perturb(False)
                guided, renoise = [], {}
                for i, rule in enumerate(rules):
                    p, x = preds[i], latents[i : i + 1]
                    if rule.space == "x0":
                        px = {k: self._to_x0(v, x, ab) for k, v in p.items()}
                        px.update({f"{k}_eps": self._to_eps(v, x, ab) for k, v in p.items()})
                        x0 = rule.combine(px, ctx)
                        eps_r = rule.renoise(px, ctx)
                        if eps_r is not None:
                            renoise[i] = (x0, eps_r)
                        guided.append(self._from_x0(x0, x, ab))
                    else:
                        guided.append(rule.combine(p, ctx))
                model_out = torch.cat(guided).to(latents.dtype)
                new = scheduler.step(model_out, t, latents, return_dict=False)[0]
                for i, (x0, eps_r) in renoise.items():  # CFG++: denoise guided, renoise unconditional (DDIM)
                    new[i : i + 1] = (math.sqrt(ab_prev) * x0 + math.sqrt(1.0 - ab_prev) * eps_r).to(new.dtype)
                latents = new
        # 7. Decode (the SDXL VAE overflows in fp16: upcast it as diffusers' pipelines do)
        decoded = self._decode(latents)
        images = pipe.image_processor.postprocess(decoded.float(), output_type="pil")
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            peak = float(torch.cuda.max_memory_allocated())
        else:
            peak = _rss_peak()
        dt = (time.perf_counter() - t0) / n
        return [
            SampleOutput(
                image=img,
                unet_evals=evals[i],
                latency_s=dt,
                peak_mem=peak,
                latents=latents[i].detach().float().cpu(),
                params={"guidance": rules[i].config(), "switched_at_step": getattr(rules[i], "switched_at_step", None)},
            )
            for i, img in enumerate(images)
        ]

    def _decode(self, latents):
        import torch

        vae = self.pipe.vae
        upcast = vae.dtype == torch.float16 and bool(getattr(vae.config, "force_upcast", False))
        if upcast:
            vae.to(torch.float32)
        try:
            z = latents.to(vae.dtype)
            mean, std = getattr(vae.config, "latents_mean", None), getattr(vae.config, "latents_std", None)
            if mean is not None and std is not None:
                shape = (1, -1, 1, 1)
                mean = torch.tensor(mean, device=z.device, dtype=z.dtype).view(shape)
                std = torch.tensor(std, device=z.device, dtype=z.dtype).view(shape)
                z = z * std / vae.config.scaling_factor + mean
            else:
                z = z / vae.config.scaling_factor
            with torch.no_grad():
                return vae.decode(z, return_dict=False)[0]
        finally:
            if upcast:
                vae.to(torch.float16)

    def _unet(self, scaled, t, group, text, embeds, scales, block_rows, time_ids):
        import torch

        idx = [i for i, _ in group]
        branch = ["uncond" if b == "uncond" else "cond" for _, b in group]
        x = scaled[idx]
        ehs = torch.cat([text[i][b] for i, b in zip(idx, branch)])
        added: dict[str, Any] = {}
        if self.is_sdxl:
            added["text_embeds"] = torch.cat([text[i][f"{b}_pooled"] for i, b in zip(idx, branch)])
            added["time_ids"] = time_ids.repeat(len(idx), 1)
        if self.adapter_specs:
            image_embeds = []
            for a in range(len(self.adapter_specs)):
                image_embeds.append(torch.cat([self._adapter_tokens(embeds[i][a], b, a) for i, b in zip(idx, branch)]))
            added["image_embeds"] = image_embeds
            ipa.set_batch_scales(
                self.pipe.unet,
                [[scales[i][a] for i in idx] for a in range(len(self.adapter_specs))],
                None if block_rows is None else [block_rows[i] for i in idx],
            )
        with torch.no_grad():
            out = self.pipe.unet(x, t, encoder_hidden_states=ehs, added_cond_kwargs=added or None, return_dict=False)[0]
        if self.adapter_specs:
            ipa.clear_batch_scales(self.pipe.unet)
        return list(out)

    def _adapter_tokens(self, pair, branch: str, adapter: int):
        """One row's image-embedding input for one adapter (zeros where the sample has none)."""
        import torch

        cond, uncond = pair
        if cond is not None:
            return cond if branch == "cond" else uncond
        template = self._empty_embeds(adapter)
        return torch.zeros_like(template)

    def _empty_embeds(self, adapter: int):
        import torch

        cache = self.__dict__.setdefault("_empty", {})
        if adapter not in cache:
            from diffusers.models.embeddings import ImageProjection

            proj = self.pipe.unet.encoder_hid_proj.image_projection_layers[adapter]
            dtype = self.pipe.unet.dtype
            if adapter == self.id_adapter:
                dim = _projection_input_dim(proj) or 512
                cache[adapter] = torch.zeros(1, 1, dim, dtype=dtype, device=self.device)
            elif isinstance(proj, ImageProjection):
                cache[adapter] = torch.zeros(1, 1, proj.image_embeds.in_features, dtype=dtype, device=self.device)
            else:  # hidden-state adapters (plus, full face): shape of the encoder's penultimate states
                from PIL import Image

                e, _ = self.pipe.encode_image(Image.new("RGB", (64, 64)), self.device, 1, output_hidden_states=True)
                cache[adapter] = torch.zeros_like(e).unsqueeze(1)
        return cache[adapter]

    @staticmethod
    def _alpha_bars(scheduler, alphas, timesteps, step: int, steps: int) -> tuple[float | None, float | None]:
        if alphas is None:
            return None, None
        t = int(timesteps[step])
        ab = float(alphas[t])
        if type(scheduler).__name__ == "DDIMScheduler":  # exactly what DDIMScheduler.step uses
            prev = t - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
            ab_prev = float(alphas[prev]) if prev >= 0 else float(scheduler.final_alpha_cumprod)
        elif step + 1 < len(timesteps):
            ab_prev = float(alphas[int(timesteps[step + 1])])
        else:
            ab_prev = 1.0
        return ab, ab_prev

    # -- parameterisation conversions (variance-preserving latents) ------------------------------------
    def _pred_type(self) -> str:
        return self.pipe.scheduler.config.get("prediction_type", "epsilon")

    def _to_x0(self, pred, x, ab):
        a, s = math.sqrt(ab), math.sqrt(1.0 - ab)
        if self._pred_type() == "v_prediction":
            return a * x - s * pred
        return (x - s * pred) / a

    def _to_eps(self, pred, x, ab):
        a, s = math.sqrt(ab), math.sqrt(1.0 - ab)
        if self._pred_type() == "v_prediction":
            return s * x + a * pred
        return pred

    def _from_x0(self, x0, x, ab):
        a, s = math.sqrt(ab), math.sqrt(1.0 - ab)
        eps = (x - a * x0) / s
        if self._pred_type() == "v_prediction":
            return a * eps - s * x0
        return eps

    @contextlib.contextmanager
    def _perturbable(self, layers: list[str]):
        """Wrap the self-attention processors of the named layers so PAG's branch can switch them."""
        unet = self.pipe.unet
        if not layers:
            yield lambda active: None
            return
        prefixes = tuple(_layer_prefix(layer) for layer in layers)
        original = dict(unet.attn_processors)
        wrapped = {}
        procs = {}
        for name, proc in original.items():
            if name.endswith("attn1.processor") and name.startswith(prefixes):
                wrapped[name] = _PerturbableSelfAttn(proc)
                procs[name] = wrapped[name]
            else:
                procs[name] = proc
        if not wrapped:
            raise ValueError(
                f"PAG layers {layers} match no self-attention layer of this UNet (try 'mid', 'up.0', 'down.2')"
            )
        unet.set_attn_processor(procs)

        def switch(active: bool) -> None:
            for w in wrapped.values():
                w.active = active

        try:
            yield switch
        finally:
            unet.set_attn_processor(original)


def _layer_prefix(layer: str) -> str:
    """PAG layer names as diffusers' ``pag_applied_layers`` writes them (``mid``, ``down.block_2``,
    ``up.block_0.attentions_0``; ``up.0`` too) -> the attention-processor name prefix."""
    import re

    if layer == "mid":
        return "mid_block"
    m = re.fullmatch(r"(down|up)\.(?:block_)?(\d+)(?:\.attentions_(\d+))?", layer)
    if not m:
        raise ValueError(f"PAG layer {layer!r}: use mid, down.block_<i>, up.block_<i> or up.block_<i>.attentions_<j>")
    prefix = f"{m.group(1)}_blocks.{m.group(2)}"
    return prefix + (f".attentions.{m.group(3)}." if m.group(3) else ".")


def _projection_input_dim(proj) -> int | None:
    """Input width of an IP-Adapter image projection (FaceID: the face-embedding size)."""
    for mod in proj.modules():
        if hasattr(mod, "in_features"):
            return int(mod.in_features)
    return None


def _rss_peak() -> float:
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return float(peak if sys.platform == "darwin" else peak * 1024)
