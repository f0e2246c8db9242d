"""Guidance rules against independent numpy references of their formulas, plus invariants.

No UNet: predictions are seeded random tensors. References are written from the papers' formulas, not
by calling the rules' code.
"""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy.stats import beta as beta_dist

from generation.guidance import StepContext, available_rules, get_rule, get_schedule

SHAPE = (4, 6, 5)  # one sample, (C, H, W)


def sample(seed, shape=SHAPE, n=2):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=shape) for _ in range(n)]


def t(x):
    return torch.from_numpy(np.asarray(x, dtype=np.float64))


def ctx(step, num_steps=10):
    return StepContext(step=step, num_steps=num_steps, timestep=float(999 - 99 * step))


def run(rule, c, step, num_steps=10, **more):
    """Combine numpy arrays through a rule as (1, C, H, W) tensors; returns numpy (C, H, W)."""
    preds = {"cond": t(c)[None], **{k: t(v)[None] for k, v in more.items()}}
    return rule.combine(preds, ctx(step, num_steps)).numpy()[0]


def np_cfg(c, u, w):
    return u + w * (c - u)


# -- import weight ------------------------------------------------------------------------------------
def test_package_import_is_light():
    code = "import sys, generation.guidance; print('torch' in sys.modules, 'diffusers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# -- schedules ---------------------------------------------------------------------------------------
def test_schedule_values():
    assert get_schedule(None)(0.37) == 1.0 and get_schedule("constant")(0.9) == 1.0
    lin = get_schedule("linear")
    assert lin(0.0) == 1.0 and lin(1.0) == 0.0 and lin(0.25) == pytest.approx(0.75)
    lin2 = get_schedule({"name": "linear", "start_value": 0.5, "end_value": 2.0})
    assert lin2(0.0) == 0.5 and lin2(1.0) == 2.0
    cos = get_schedule("cosine")
    for p in (0.0, 0.2, 0.5, 0.9, 1.0):
        assert cos(p) == pytest.approx((1 + math.cos(math.pi * p)) / 2, abs=1e-12)
    assert get_schedule("cosine:start_value=2,end_value=1")(0.5) == pytest.approx(1.5)


@pytest.mark.parametrize("a,b", [(2.0, 2.0), (2.0, 3.0), (5.0, 1.5)])
def test_beta_schedule_is_normalised_pdf(a, b):
    s = get_schedule(f"beta:a={a},b={b}")
    mode = (a - 1) / (a + b - 2)
    assert s(mode) == pytest.approx(1.0, abs=1e-12)
    assert s(0.0) == 0.0 and s(1.0) == 0.0
    ps = np.linspace(0.01, 0.99, 23)
    ref = beta_dist.pdf(ps, a, b) / beta_dist.pdf(mode, a, b)
    np.testing.assert_allclose([s(p) for p in ps], ref, rtol=1e-10)
    assert max(s(p) for p in ps) <= 1.0 + 1e-12


def test_schedule_config_round_trip_and_errors():
    for spec in ("constant", "linear", "cosine:start_value=1,end_value=0.25", "beta:a=3,b=2"):
        s = get_schedule(spec)
        assert get_schedule(s.config()) == s and get_schedule(s.config()).config() == s.config()
    with pytest.raises(
        ValueError,
        match=r"unknown schedule 'cosin'; did you mean 'cosine'\? available: "
        r"beta, constant, cosine, linear",
    ):
        get_schedule("cosin")
    with pytest.raises(ValueError, match=r"Expected `a` > 1.0 for the beta schedule, got 1.0"):
        get_schedule({"name": "beta", "a": 1.0})
    with pytest.raises(ValueError, match="unknown parameter"):
        get_schedule("beta:c=2")


# -- CFG -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("w", [0.0, 3.0, 7.5])
def test_cfg_matches_reference(w):
    c, u = sample(0)
    np.testing.assert_allclose(run(get_rule("cfg", scale=w), c, 3, uncond=u), np_cfg(c, u, w), rtol=1e-12)


def test_cfg_rescale_matches_reference():
    c, u = sample(1)
    w, phi = 7.0, 0.7
    g = np_cfg(c, u, w)
    rescaled = g * c.std(ddof=1) / g.std(ddof=1)  # per-sample std over all of (C, H, W)
    ref = phi * rescaled + (1 - phi) * g
    out = run(get_rule("cfg", scale=w, guidance_rescale=phi), c, 2, uncond=u)
    np.testing.assert_allclose(out, ref, rtol=1e-10)


def test_cfg_schedule_applies_to_scale():
    c, u = sample(2)
    rule = get_rule("cfg", scale=6.0, schedule="linear")
    for step in (0, 4, 9):
        w = 1 + 5.0 * (1 - step / 10)
        np.testing.assert_allclose(run(rule, c, step, uncond=u), np_cfg(c, u, w), rtol=1e-12)


@pytest.mark.parametrize("name", ["cfg", "interval", "apg", "cfg_zero_star", "adaptive"])
def test_scale_one_is_exactly_conditional(name):
    c, u = sample(3)
    rule = get_rule(name, scale=1.0)
    for step in range(2, 9):  # after CFG-Zero*'s zero-init, inside the interval window
        assert rule.branches(ctx(step)) == ("cond",)
        assert np.array_equal(run(rule, c, step, uncond=u), c)
        assert np.array_equal(run(rule, c, step), c)  # no uncond needed


def test_schedule_zero_skips_uncond():
    c, _ = sample(4)
    for name in ("cfg", "interval", "apg", "adaptive", "cfg_zero_star", "pag", "cfgpp"):
        kw = {"zero_init_steps": 0} if name == "cfg_zero_star" else {"start": 0.0} if name == "interval" else {}
        rule = get_rule(name, schedule="beta:a=2,b=2", **kw)  # the beta schedule is 0 at progress 0
        assert rule.branches(ctx(0)) == ("cond",)
        assert np.array_equal(run(rule, c, 0), c)
        assert "uncond" in rule.branches(ctx(5))


# -- interval -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("start,stop,n", [(0.2, 0.8, 10), (0.29, 0.57, 100), (0.1, 0.3, 7), (0.0, 1.0, 3)])
def test_interval_window(start, stop, n):
    c, u = sample(5)
    rule = get_rule("interval", scale=4.0, start=start, stop=stop)
    for step in range(n):
        inside = int(start * n) <= step < int(stop * n)
        assert rule.branches(ctx(step, n)) == (("cond", "uncond") if inside else ("cond",))
        # the wrapped diffusers guider agrees on which steps are guided
        rule._guider.set_state(step=step, num_inference_steps=n, timestep=0)
        assert rule._guider.num_conditions == (2 if inside else 1)
        out = run(rule, c, step, n, uncond=u)
        if inside:
            np.testing.assert_allclose(out, np_cfg(c, u, 4.0), rtol=1e-12)
        else:
            assert np.array_equal(out, c) and np.array_equal(run(rule, c, step, n), c)


# -- APG -----------------------------------------------------------------------------------------------
class NumpyAPG:
    """Algorithm 1 of arXiv 2410.02416, in numpy."""

    def __init__(self, w, eta, beta, r):
        self.w, self.eta, self.beta, self.r, self.avg = w, eta, beta, r, 0.0

    def __call__(self, c, u):
        d = c - u
        self.avg = d + self.beta * self.avg
        d = self.avg
        if self.r > 0:
            d = d * min(1.0, self.r / np.linalg.norm(d))
        par = (np.sum(d * c) / np.sum(c * c)) * c
        return c + (self.w - 1) * ((d - par) + self.eta * par)


@pytest.mark.parametrize("eta,beta,r", [(0.0, -0.5, 15.0), (0.3, -0.5, 2.0), (1.0, 0.0, 0.0), (0.0, 0.4, 3.0)])
def test_apg_matches_reference_over_a_trajectory(eta, beta, r):
    rule = get_rule("apg", scale=6.0, eta=eta, momentum=beta, norm_threshold=r)
    ref = NumpyAPG(6.0, eta, beta, r)
    for step in range(5):
        c, u = sample(10 + step)
        np.testing.assert_allclose(run(rule, c, step, 5, uncond=u), ref(c, u), rtol=1e-9, atol=1e-12)


def test_apg_momentum_is_per_instance_and_per_trajectory():
    a, b = get_rule("apg", scale=5.0), get_rule("apg", scale=5.0)
    ra, rb = NumpyAPG(5.0, 0.0, -0.5, 15.0), NumpyAPG(5.0, 0.0, -0.5, 15.0)
    for step in range(4):  # interleaved: neither sees the other's differences
        ca, ua = sample(20 + step)
        cb, ub = sample(40 + step)
        np.testing.assert_allclose(run(a, ca, step, 4, uncond=ua), ra(ca, ua), rtol=1e-9)
        np.testing.assert_allclose(run(b, cb, step, 4, uncond=ub), rb(cb, ub), rtol=1e-9)
    c, u = sample(60)
    fresh = NumpyAPG(5.0, 0.0, -0.5, 15.0)(c, u)
    a.reset()  # explicit reset
    np.testing.assert_allclose(run(a, c, 1, 4, uncond=u), fresh, rtol=1e-9)
    np.testing.assert_allclose(run(b, c, 0, 4, uncond=u), fresh, rtol=1e-9)  # step 0 starts afresh
    assert get_rule(a).momentum_buffer == 0  # a copy has no state


# -- CFG-Zero* -------------------------------------------------------------------------------------------
def test_cfg_zero_star_matches_reference():
    c, u = sample(6)
    rule = get_rule("cfg_zero_star", scale=5.0, zero_init_steps=2)
    for step in (0, 1):
        assert rule.branches(ctx(step)) == ("cond",)
        assert np.array_equal(run(rule, c, step), np.zeros_like(c))
    s = np.sum(c * u) / (np.sum(u * u) + 1e-8)
    ref = s * u + 5.0 * (c - s * u)
    assert rule.branches(ctx(2)) == ("cond", "uncond")
    np.testing.assert_allclose(run(rule, c, 2, uncond=u), ref, rtol=1e-5, atol=1e-6)  # s* is float32


# -- CFG++ ---------------------------------------------------------------------------------------------
def test_cfgpp_interpolates_and_renoises_with_uncond_eps():
    (c, u), (ce, ue) = sample(7), sample(8)
    rule = get_rule("cfgpp", scale=0.3)
    assert rule.space == "x0" and rule.needs_ddim
    preds = {"cond": t(c), "uncond": t(u), "cond_eps": t(ce), "uncond_eps": t(ue)}
    np.testing.assert_allclose(rule.combine(preds, ctx(4)).numpy(), 0.7 * u + 0.3 * c, rtol=1e-12)
    assert np.array_equal(rule.renoise(preds, ctx(4)).numpy(), ue)
    assert rule.branches(ctx(4)) == ("cond", "uncond")
    # lambda = clip(1 + (0.3 - 1) m(p)); m = 0.5 at p = 0.5 (linear 1 -> 0)
    lin = get_rule("cfgpp", scale=0.3, schedule="linear")
    np.testing.assert_allclose(lin.combine(preds, ctx(5)).numpy(), 0.35 * u + 0.65 * c, rtol=1e-12)
    # schedule value 0: guidance off, ordinary step
    off = get_rule("cfgpp", scale=0.3, schedule="beta")
    assert off.branches(ctx(0)) == ("cond",)
    assert np.array_equal(off.combine(preds, ctx(0)).numpy(), c) and off.renoise(preds, ctx(0)) is None


# -- beta-CFG -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("a,b,gamma", [(2.0, 2.0, 0.5), (3.0, 1.5, 1.0), (2.0, 5.0, 0.0)])
def test_beta_cfg_matches_reference(a, b, gamma):
    c, u = sample(9)
    w, n = 4.0, 8
    rule = get_rule("beta_cfg", scale=w, a=a, b=b, gamma=gamma)
    for step in range(n):
        tt = step / (n - 1)
        d = c - u
        ref = u + beta_dist.pdf(tt, a, b) * w * d / (np.linalg.norm(d) + 1e-8) ** gamma
        assert rule.branches(ctx(step, n)) == ("cond", "uncond")
        np.testing.assert_allclose(run(rule, c, step, n, uncond=u), ref, rtol=1e-10, atol=1e-12)
    assert np.array_equal(run(rule, c, 0, n, uncond=u), u)  # beta(0) = 0: unconditional at the ends


# -- adaptive guidance ------------------------------------------------------------------------------------
def pair_with_cosine(seed, cos):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=SHAPE)
    o = rng.normal(size=SHAPE)
    o -= np.sum(o * c) / np.sum(c * c) * c
    o *= np.linalg.norm(c) / np.linalg.norm(o)
    return c, 1.3 * (cos * c + math.sqrt(1 - cos**2) * o)


def test_adaptive_switches_and_saves_evaluations():
    n, thr = 20, 0.99
    cosines = 1 - 0.4 * np.exp(-0.4 * np.arange(n))  # rises towards 1, as observed in the paper
    first = int(np.argmax(cosines >= thr))
    ada, cfg = get_rule("adaptive", scale=5.0, threshold=thr), get_rule("cfg", scale=5.0)
    calls = {"adaptive": 0, "cfg": 0}
    for step in range(n):
        c, u = pair_with_cosine(step, cosines[step])
        for name, rule in (("adaptive", ada), ("cfg", cfg)):
            br = rule.branches(ctx(step, n))
            calls[name] += "uncond" in br
            out = run(rule, c, step, n, **({"uncond": u} if "uncond" in br else {}))
            if name == "adaptive":
                ref = np_cfg(c, u, 5.0) if step < first else c
                np.testing.assert_allclose(out, ref, rtol=1e-12)
                assert ada.switched_at_step == (None if step < first else first)
    assert first == 10 and calls["cfg"] == n and calls["adaptive"] == first + 1
    assert ada.branches(ctx(n - 1, n)) == ("cond",)
    ada.reset()
    assert ada.switched_at_step is None and ada.branches(ctx(5, n)) == ("cond", "uncond")


def test_adaptive_stays_switched_even_if_cosine_drops():
    rule = get_rule("adaptive", scale=3.0, threshold=0.9)
    c, u = pair_with_cosine(0, 0.95)
    assert np.array_equal(run(rule, c, 0, uncond=u), c) and rule.switched_at_step == 0
    for step in range(1, 4):
        assert rule.branches(ctx(step)) == ("cond",)
        c, u = pair_with_cosine(step, 0.1)
        assert np.array_equal(run(rule, c, step, uncond=u), c)
    assert rule.branches(ctx(0)) == ("cond", "uncond")  # a new trajectory ignores the old switch
    c, u = pair_with_cosine(9, 0.1)
    np.testing.assert_allclose(run(rule, c, 0, uncond=u), np_cfg(c, u, 3.0), rtol=1e-12)
    assert rule.switched_at_step is None


# -- PAG ---------------------------------------------------------------------------------------------------
def test_pag_matches_reference():
    c, u, p = sample(11, n=3)
    rule = get_rule("pag", scale=5.0, pag_scale=2.5, layers=["mid", "up.block_0"])
    assert rule.branches(ctx(3)) == ("cond", "uncond", "perturbed") and rule.layers == ("mid", "up.block_0")
    ref = u + 5.0 * (c - u) + 2.5 * (c - p)
    np.testing.assert_allclose(run(rule, c, 3, uncond=u, perturbed=p), ref, rtol=1e-12)
    pag_only = get_rule("pag", scale=1.0, pag_scale=2.5)
    assert pag_only.branches(ctx(3)) == ("cond", "perturbed")
    np.testing.assert_allclose(run(pag_only, c, 3, perturbed=p), c + 2.5 * (c - p), rtol=1e-12)
    assert get_rule("pag", scale=4.0, pag_scale=0.0).branches(ctx(3)) == ("cond", "uncond")


# -- shapes, registry, configs, validation -------------------------------------------------------------------
@pytest.mark.parametrize(
    "name", sorted(["adaptive", "apg", "beta_cfg", "cfg", "cfg_zero_star", "cfgpp", "interval", "pag"])
)
def test_unbatched_and_batched_samples_agree(name):
    c, u, p = sample(12, n=3)
    kw = {"guidance_rescale": 0.5} if name == "cfg" else {}
    batched, unbatched = get_rule(name, **kw), get_rule(name, **kw)
    preds = {"cond": t(c), "uncond": t(u), "perturbed": t(p), "cond_eps": t(c), "uncond_eps": t(u)}
    for step in (1, 4):
        out3 = unbatched.combine(preds, ctx(step))
        out4 = batched.combine({k: v[None] for k, v in preds.items()}, ctx(step))
        assert out3.shape == SHAPE and out4.shape == (1, *SHAPE)
        np.testing.assert_allclose(out3.numpy(), out4.numpy()[0], rtol=1e-6, atol=1e-9)


def test_registry_and_config_round_trips():
    assert available_rules() == ["adaptive", "apg", "beta_cfg", "cfg", "cfg_zero_star", "cfgpp", "interval", "pag"]
    rules = [
        get_rule("cfg", scale=4.0, schedule="cosine", guidance_rescale=0.3),
        get_rule("interval", scale=3.0, start=0.1, stop=0.6, schedule="beta:a=2,b=3"),
        get_rule("apg", scale=9.0, eta=0.2, momentum=-0.3, norm_threshold=10.0),
        get_rule("cfg_zero_star", scale=4.0, zero_init_steps=3, schedule="linear"),
        get_rule("cfgpp", scale=0.8),
        get_rule("beta_cfg", scale=20.0, a=3.0, b=2.0, gamma=0.8),
        get_rule("adaptive", scale=6.0, threshold=0.95),
        get_rule("pag", scale=5.0, pag_scale=2.0, layers=("mid", "down.block_1")),
    ]
    assert sorted(r.name for r in rules) == available_rules()
    for r in rules:
        cfg = r.config()
        assert cfg["rule"] == r.name
        again = get_rule(cfg)
        assert type(again) is type(r) and again.config() == cfg and get_rule(r).config() == cfg
        assert get_rule(cfg, scale=cfg["scale"]).config() == cfg
    assert get_rule(rules[0], scale=2.0).scale == 2.0


def test_unknown_rule_message():
    with pytest.raises(ValueError) as err:
        get_rule("cgf")
    assert str(err.value) == (
        "unknown guidance rule 'cgf'; did you mean 'cfg'? available: adaptive, apg, "
        "beta_cfg, cfg, cfg_zero_star, cfgpp, interval, pag"
    )


@pytest.mark.parametrize(
    "name,kwargs,message",
    [
        ("interval", {"start": 1.3}, "Expected `start` between 0.0 and 1.0, got 1.3"),
        ("interval", {"start": 0.5, "stop": 0.4}, "Expected `stop` between `start` (0.5) and 1.0, got 0.4"),
        ("cfg", {"guidance_rescale": 1.5}, "Expected `guidance_rescale` between 0.0 and 1.0, got 1.5"),
        ("cfg", {"scale": "high"}, "Expected `scale` to be a number, got 'high'"),
        ("cfgpp", {"scale": 7.5}, "Expected `scale` (lambda) between 0.0 and 1.0 for CFG++, got 7.5"),
        ("apg", {"eta": 2.0}, "Expected `eta` between 0.0 and 1.0, got 2.0"),
        ("apg", {"momentum": 1.0}, "Expected `momentum` strictly between -1.0 and 1.0, got 1.0"),
        ("apg", {"norm_threshold": -1.0}, "Expected `norm_threshold` >= 0.0 (0 disables it), got -1.0"),
        ("cfg_zero_star", {"zero_init_steps": -1}, "Expected `zero_init_steps` to be a non-negative integer, got -1"),
        ("beta_cfg", {"a": 1.0}, "Expected `a` > 1.0 for beta-CFG, got 1.0"),
        ("beta_cfg", {"gamma": 2.0}, "Expected `gamma` between 0.0 and 1.0, got 2.0"),
        ("adaptive", {"threshold": 1.2}, "Expected `threshold` between 0.0 and 1.0, got 1.2"),
        ("pag", {"pag_scale": -1.0}, "Expected `pag_scale` >= 0.0, got -1.0"),
        ("pag", {"layers": []}, "Expected `layers` to be a non-empty list of layer names, got []"),
    ],
)
def test_validation_messages(name, kwargs, message):
    with pytest.raises(ValueError) as err:
        get_rule(name, **kwargs)
    assert str(err.value) == message
