"""generate(): records, provenance, consent, and the stock-pipeline pass-through."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from generation.conditions import UserCondition  # noqa: E402
from generation.pipeline import generate, get_backend  # noqa: E402
from workbench.consent import Consent, ConsentError, IdentityReference  # noqa: E402
from workbench.images import read_provenance  # noqa: E402


def test_generate_saves_content_addressed_pngs_and_rows(tmp_path):
    from workbench.store import Workspace

    conds = [
        UserCondition("u1", "a red bicycle", seed=1, persona_id="s/gat/u1", prompt_id="parti6/p1"),
        UserCondition("u2", "a red bicycle", guidance="adaptive", guidance_options={"threshold": 0.5}, seed=1),
    ]
    with Workspace(tmp_path / "w.duckdb") as ws:
        gens = generate(
            conds, model="random:sd15-tiny", workspace=ws, steps=4, height=32, width=32, progress=False, device="cpu"
        )
        again = generate(
            conds, model="random:sd15-tiny", workspace=ws, steps=4, height=32, width=32, progress=False, device="cpu"
        )
        rows = ws.query_dicts("SELECT * FROM generations ORDER BY user_id")
        cond_rows = ws.query_dicts("SELECT * FROM conditions ORDER BY user_id")
    assert [g.image_path for g in again] == [g.image_path for g in gens]  # same conditions and seeds: same files
    assert len(rows) == 2 and len(cond_rows) == 2
    assert [r["unet_evals"] for r in rows] == [g.unet_evals for g in gens] and rows[0]["unet_evals"] == 8
    assert rows[1]["unet_evals"] < 8 and all(r["latency_s"] > 0 and r["peak_mem"] > 0 for r in rows)
    assert json.loads(cond_rows[0]["guidance"])["rule"] == "cfg" and cond_rows[0]["persona_id"] == "s/gat/u1"
    meta = read_provenance(gens[0].image_path)
    assert meta["prompt"] == "a red bicycle" and meta["seed"] == 1 and meta["persona_id"] == "s/gat/u1"
    assert meta["guidance"] == {"rule": "cfg", "scale": 7.5, "schedule": {"name": "constant"}, "guidance_rescale": 0.0}
    assert gens[0].image_path.startswith(str(tmp_path / "images"))


def test_identity_without_consent_is_refused_before_any_work(tmp_path):
    face = tmp_path / "face.png"
    from PIL import Image

    Image.new("RGB", (16, 16)).save(face)
    with pytest.raises(ConsentError, match="no recorded consent"):
        generate([UserCondition("u", "a portrait", identity=IdentityReference(face))], model="random:does-not-matter")
    # a recorded consent goes into the condition's description (and so its id and the workspace row)
    ok = UserCondition("u", "a portrait", identity=IdentityReference(face, consent=Consent("the sitter", "2026-11-01")))
    assert ok.describe()["identity"]["consent"]["subject"] == "the sitter"


def test_stock_pipeline_backend_matches_our_loop_for_cfg():
    ours = get_backend("diffusers", model="random:sd15-tiny", device="cpu")
    stock = get_backend("diffusers-pipeline", model="random:sd15-tiny", scheduler="ddim", device="cpu")
    c = UserCondition("u", "a harbour at night", negative_prompt="blur", guidance_scale=4.0, seed=3)
    a = ours.generate([c], steps=4, height=32, width=32, progress=False)[0]
    b = stock.generate([c], steps=4, height=32, width=32, progress=False)[0]
    assert a.unet_evals == b.unet_evals == 8
    diff = np.abs(np.asarray(a.image, dtype=int) - np.asarray(b.image, dtype=int)).max()
    assert diff <= 1
    with pytest.raises(ValueError, match="only does constant cfg"):
        stock.generate([UserCondition("u", "x", guidance="apg")], steps=2, height=32, width=32)


def test_unknown_backend_and_missing_model_are_clear():
    with pytest.raises(ValueError, match="did you mean 'diffusers'"):
        get_backend("difusers", model="random:sd15-tiny")
    with pytest.raises(ValueError, match="needs model="):
        generate([UserCondition("u", "x")])
    with pytest.raises(ValueError, match="random:<family>-<size>"):
        get_backend("diffusers", model="random:sd3-tiny")
