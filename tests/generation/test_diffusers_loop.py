"""Our denoising loop on tiny random SD 1.5 / SDXL components built from configs (no downloads)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from generation.backends.diffusers_sd import DiffusersBackend  # noqa: E402
from generation.conditions import UserCondition  # noqa: E402
from generation.random_weights import build_random_pipeline, random_ip_adapter_state_dict, save_ip_adapter  # noqa: E402
from workbench.consent import Consent, ConsentError, IdentityReference  # noqa: E402

STEPS = 4
SIZE = 32


def _ref(seed: int):
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8))


def _run(backend, conds, **kw):
    return backend.generate(conds, steps=kw.pop("steps", STEPS), height=SIZE, width=SIZE, progress=False, **kw)


@pytest.fixture(scope="module")
def adapter_file(tmp_path_factory):
    pipe = build_random_pipeline("sd15")
    path = tmp_path_factory.mktemp("ipa") / "ip-adapter_tiny.safetensors"
    save_ip_adapter(
        random_ip_adapter_state_dict(pipe.unet, image_embed_dim=pipe.image_encoder.config.projection_dim), path
    )
    return path


@pytest.fixture(scope="module")
def sd15():
    return DiffusersBackend("random:sd15-tiny", device="cpu")


@pytest.fixture(scope="module")
def sd15_ip(adapter_file):
    return DiffusersBackend("random:sd15-tiny", ip_adapter=str(adapter_file), device="cpu")


def test_same_seed_same_image_and_seed_matters(sd15):
    a = _run(sd15, [UserCondition("u1", "a red bicycle", seed=3)])[0]
    b = _run(sd15, [UserCondition("u1", "a red bicycle", seed=3)])[0]
    c = _run(sd15, [UserCondition("u1", "a red bicycle", seed=4)])[0]
    assert torch.equal(a.latents, b.latents)
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert not torch.allclose(a.latents, c.latents)


def test_matches_the_stock_diffusers_pipeline_for_plain_cfg(sd15):
    """Our loop with cfg equals StableDiffusionPipeline.__call__ (same weights, seed, DDIM)."""
    ours = _run(
        sd15, [UserCondition("u1", "a lighthouse at dusk", negative_prompt="blurry", guidance_scale=5.0, seed=7)]
    )[0]
    pipe = sd15.pipe
    ref = pipe(
        prompt="a lighthouse at dusk",
        negative_prompt="blurry",
        num_inference_steps=STEPS,
        guidance_scale=5.0,
        height=SIZE,
        width=SIZE,
        generator=torch.Generator("cpu").manual_seed(7),
        output_type="latent",
    ).images
    assert torch.allclose(ours.latents, ref[0].float(), atol=1e-5), (ours.latents - ref[0]).abs().max()


def test_scale_one_uses_only_the_conditional_branch(sd15):
    one = _run(sd15, [UserCondition("u1", "a cat", guidance_scale=1.0, seed=1)])[0]
    cfg = _run(sd15, [UserCondition("u1", "a cat", guidance_scale=7.5, seed=1)])[0]
    assert one.unet_evals == STEPS and cfg.unet_evals == 2 * STEPS
    # the conditional-only trajectory equals CFG whose unconditional branch is the conditional one
    same = _run(sd15, [UserCondition("u1", "a cat", negative_prompt="a cat", guidance_scale=7.5, seed=1)])[0]
    assert torch.allclose(one.latents, same.latents, atol=1e-5)


def test_interval_and_adaptive_save_unet_evaluations(sd15):
    steps = 8
    cfg = _run(sd15, [UserCondition("u", "a cat", seed=0)], steps=steps)[0]
    interval = _run(
        sd15,
        [UserCondition("u", "a cat", guidance="interval", guidance_options={"start": 0.25, "stop": 0.75}, seed=0)],
        steps=steps,
    )[0]
    adaptive = _run(
        sd15,
        [UserCondition("u", "a cat", guidance="adaptive", guidance_options={"threshold": 0.5}, seed=0)],
        steps=steps,
    )[0]
    assert cfg.unet_evals == 2 * steps
    assert interval.unet_evals == steps + steps // 2  # 25% fewer
    assert interval.unet_evals <= 0.75 * cfg.unet_evals
    assert adaptive.unet_evals < cfg.unet_evals
    assert adaptive.params["switched_at_step"] is not None


def test_batch_neighbours_do_not_change_a_sample(sd15_ip):
    me = UserCondition(
        "me",
        "a cozy reading nook",
        references=[_ref(1)],
        reference_scale=0.8,
        guidance="apg",
        guidance_scale=6.0,
        seed=11,
    )
    alone = _run(sd15_ip, [me])[0]
    others = [
        UserCondition(
            "u2",
            "a neon city street",
            negative_prompt="text",
            references=[_ref(2), _ref(3)],
            reference_scale=0.3,
            seed=5,
        ),
        UserCondition("u3", "mountains", guidance="adaptive", guidance_options={"threshold": 0.5}, seed=2),
        UserCondition("u4", "a robot", guidance="pag", guidance_scale=3.0, seed=9),
    ]
    mixed = _run(sd15_ip, [others[0], me, others[1], others[2]], batch_size=4)
    assert torch.allclose(alone.latents, mixed[1].latents, atol=1e-5)
    assert alone.unet_evals == mixed[1].unet_evals
    # and the neighbours really differ from each other
    assert not torch.allclose(mixed[0].latents, mixed[1].latents)


def test_adapter_scale_zero_equals_no_adapter(sd15, sd15_ip):
    cond = dict(user_id="u", prompt="a bowl of fruit", seed=4)
    base = _run(sd15, [UserCondition(**cond)])[0]
    zero = _run(sd15_ip, [UserCondition(**cond, references=[_ref(1)], reference_scale=0.0)])[0]
    none = _run(sd15_ip, [UserCondition(**cond)])[0]
    full = _run(sd15_ip, [UserCondition(**cond, references=[_ref(1)], reference_scale=1.0)])[0]
    assert torch.equal(base.latents, zero.latents)
    assert torch.equal(base.latents, none.latents)
    assert not torch.allclose(base.latents, full.latents, atol=1e-4)


def test_block_scales_follow_diffusers_expansion(sd15_ip):
    from generation.adapters.ip_adapter import block_scales

    unet = sd15_ip.pipe.unet
    everywhere = block_scales(unet, 0.7, 1)
    assert set(v[0] for v in everywhere.values()) == {0.7}
    style = block_scales(unet, {"up": {"block_0": [1.0]}}, 1)
    on = [k for k, v in style.items() if v[0] == 1.0]
    assert on and all(k.startswith("up_blocks.0") for k in on)
    # a block dictionary changes the image differently from a flat scale
    a = _run(sd15_ip, [UserCondition("u", "a vase", references=[_ref(1)], reference_scale=1.0, seed=1)])[0]
    b = _run(
        sd15_ip,
        [UserCondition("u", "a vase", references=[_ref(1)], reference_scale={"up": {"block_0": [1.0]}}, seed=1)],
    )[0]
    assert not torch.allclose(a.latents, b.latents)


def test_block_presets_fit_the_unet(sd15_ip):
    from generation.adapters.ip_adapter import block_scales, preset_scale

    unet = sd15_ip.pipe.unet
    style = block_scales(unet, "style", 1)
    on = [k for k, v in style.items() if v[0] == 1.0]
    assert len(on) == 1 and on[0].startswith("up_blocks.")
    layout = [k for k, v in block_scales(unet, "layout", 1).items() if v[0] == 1.0]
    assert len(layout) == 1 and layout[0].startswith("down_blocks.")
    assert preset_scale(unet, "all") == 1.0
    with pytest.raises(ValueError, match="not a preset"):
        UserCondition("u", "a cat", reference_scale="stlye")


def test_sdxl_with_ip_adapter_loaded_by_path(tmp_path):
    """The README's SDXL + IP-Adapter command path, with random weights written to a file."""
    probe = build_random_pipeline("sdxl")
    path = tmp_path / "ip-adapter_sdxl_tiny.safetensors"
    save_ip_adapter(
        random_ip_adapter_state_dict(probe.unet, image_embed_dim=probe.image_encoder.config.projection_dim), path
    )
    backend = DiffusersBackend("random:sdxl-tiny", ip_adapter=str(path), device="cpu")
    conds = [
        UserCondition("a", "a bright kitchen", references=[_ref(1)], seed=1),
        UserCondition("b", "a bright kitchen", seed=1),
    ]
    out = _run(backend, conds, batch_size=2)
    assert out[0].image.size == (SIZE, SIZE)
    assert not torch.allclose(out[0].latents, out[1].latents)
    alone = _run(backend, [conds[1]])[0]
    assert torch.allclose(alone.latents, out[1].latents, atol=1e-4)  # batch-size float noise is ~2e-5 on |x|~20


def test_cfgpp_renoises_with_the_unconditional_noise(sd15):
    out = _run(sd15, [UserCondition("u", "a cat", guidance="cfgpp", guidance_scale=0.6, seed=1)])[0]
    assert np.isfinite(out.latents.numpy()).all() and out.unet_evals == 2 * STEPS
    # lambda = 1 with an identical negative prompt is the plain conditional DDIM trajectory
    one = _run(
        sd15, [UserCondition("u", "a cat", negative_prompt="a cat", guidance="cfgpp", guidance_scale=1.0, seed=1)]
    )[0]
    plain = _run(sd15, [UserCondition("u", "a cat", guidance_scale=1.0, seed=1)])[0]
    assert torch.allclose(one.latents, plain.latents, atol=1e-4)


def test_cfgpp_refuses_a_non_ddim_scheduler():
    backend = DiffusersBackend("random:sd15-tiny", scheduler="euler", device="cpu")
    with pytest.raises(ValueError, match="DDIM|variance-preserving"):
        _run(backend, [UserCondition("u", "a cat", guidance="cfgpp", guidance_scale=0.5)])


def test_identity_needs_consent_and_injects_with_a_faceid_adapter(tmp_path):
    skimage = pytest.importorskip("skimage")
    pytest.importorskip("dlib")
    from PIL import Image

    face = tmp_path / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(face)
    probe = build_random_pipeline("sd15")
    path = tmp_path / "ip-adapter-faceid_tiny.safetensors"
    save_ip_adapter(random_ip_adapter_state_dict(probe.unet, image_embed_dim=128, kind="faceid"), path)
    backend = DiffusersBackend("random:sd15-tiny", identity_adapter=str(path), device="cpu")
    with pytest.raises(ConsentError, match="consent"):
        _run(backend, [UserCondition("u", "a portrait", identity=IdentityReference(face))])
    ok = IdentityReference(
        face, consent=Consent(subject="Eileen Collins (NASA portrait, public domain)", granted_at="2026-11-23")
    )
    with_id = _run(backend, [UserCondition("u", "a portrait", identity=ok, seed=2)])[0]
    without = _run(backend, [UserCondition("u", "a portrait", seed=2)])[0]
    assert not torch.allclose(with_id.latents, without.latents, atol=1e-4)


def test_any_multiple_of_the_vae_factor_works(sd15):
    out = sd15.generate([UserCondition("u", "a wide harbour")], steps=2, height=40, width=56, progress=False)[0]
    assert out.image.size == (56, 40)


def test_unknown_names_and_bad_sizes_are_clear(sd15):
    with pytest.raises(ValueError, match="did you mean 'cfg'"):
        _run(sd15, [UserCondition("u", "a cat", guidance="cgf")])
    with pytest.raises(ValueError, match="multiple of"):
        sd15.generate([UserCondition("u", "a cat")], steps=2, height=31, width=32, progress=False)
    with pytest.raises(ValueError, match="no IP-Adapter is loaded"):
        _run(sd15, [UserCondition("u", "a cat", references=[_ref(1)])])
    with pytest.raises(ValueError, match="unknown scheduler"):
        DiffusersBackend("random:sd15-tiny", scheduler="dimm", device="cpu")
