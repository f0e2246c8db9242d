"""Every image write path signs what it writes: ``pwb generate``, ``pwb variations``, the demo's gallery grid
and review pairs (the API's is in test_api.py, ``pwb personalize``'s in test_personalize.py). Each image
verifies as ``marked`` and ``pwb verify --db`` names its generation row."""

import json

import pytest
from click.testing import CliRunner

pytest.importorskip("c2pa")
pytest.importorskip("imwatermark")
pytest.importorskip("skimage")

from apps.cli import cli  # noqa: E402
from workbench.provenance import verify, watermark_id  # noqa: E402
from workbench.store.workspace import Workspace  # noqa: E402


def _verify_cli(paths, db):
    res = CliRunner().invoke(cli, ["verify", *map(str, paths), "--db", str(db), "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_pwb_generate_signs_and_watermarks_and_verify_names_the_row(review_copy):
    db = review_copy
    res = CliRunner().invoke(
        cli,
        [
            "generate",
            "--backend",
            "patch",
            "--pool",
            "samples",
            "--prompts",
            str(db.parent / "p.tsv"),
            "--max-users",
            "1",
            "--max-prompts",
            "1",
            "--steps",
            "2",
            "--height",
            "256",
            "--width",
            "256",
            "--db",
            str(db),
            "--json",
        ],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    with Workspace(db, read_only=True) as ws:
        gid, params = ws.query(
            "SELECT generation_id, params FROM generations WHERE image_path = ?", [rows[0]["image"]]
        )[0]
    v = _verify_cli([rows[0]["image"]], db)[0]
    assert v["status"] == "marked" and v["watermark_id"] == f"{watermark_id(gid):08x}"
    assert v["assertion"]["generation_id"] == gid and v["generation"]["generation_id"] == gid
    assert v["matched_by"] == "watermark" and json.loads(params)["provenance"] == "c2pa+watermark"
    assert "prompt" not in v["assertion"] and "persona" not in json.dumps(v["assertion"]).replace("persona_id", "")


def test_review_images_under_256_px_are_signed_and_matched_by_their_manifest(review_db):
    """The fixture's 64 px persona images and baselines (what the dashboard shows as review pairs)."""
    with Workspace(review_db, read_only=True) as ws:
        paths = [p for (p,) in ws.query("SELECT image_path FROM generations ORDER BY generation_id")]
    out = _verify_cli(paths, review_db)
    assert len(out) >= 6 and {v["status"] for v in out} == {"marked"}
    assert all(v["watermark_id"] is None and v["matched_by"] == "manifest" for v in out)


def test_the_demo_gallery_grid_and_review_pairs_are_signed(review_copy):
    from evalbench.flows.demo import review_pairs
    from evalbench.flows.gallery import user_gallery

    prompts = str(review_copy.parent / "p.tsv")
    with Workspace(review_copy) as ws:
        split = ws.scalar("SELECT split_id FROM splits ORDER BY split_id LIMIT 1")
        encoder = "tfidf"
        gal = user_gallery(ws, split, encoder=encoder, prompts=prompts, users=2, variations=1, size=48)
        pairs = review_pairs(ws, split, encoder, prompts, "samples", 0, users=1, n_prompts=1)
    grid = verify(gal["path"])
    assert grid["status"] == "marked" and grid["assertion"]["kind"] == "gallery"
    assert len(grid["assertion"]["generation_ids"]) == 2
    assert {verify(p)["status"] for r in gal["rows"] for p in r["images"]} == {"marked"}
    assert len(pairs) == 2 and {verify(g.image_path)["status"] for g in pairs} == {"marked"}


def test_pwb_variations_signs_and_watermarks(tmp_path, monkeypatch):
    import numpy as np
    from PIL import Image

    monkeypatch.setenv("PWB_DB", str(tmp_path / "ws" / "w.duckdb"))
    ref = tmp_path / "ref.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(ref)
    res = CliRunner().invoke(
        cli, ["variations", str(ref), "-n", "1", "--steps", "2", "--out", str(tmp_path / "v"), "--json"]
    )
    assert res.exit_code == 0, res.output
    image = json.loads(res.stdout)["variations"][0]["image"]
    v = verify(image)
    assert v["status"] == "marked" and v["assertion"]["generation_id"].startswith("v-")
    assert v["watermark_id"] == f"{watermark_id(v['assertion']['generation_id']):08x}"
    assert (tmp_path / "ws" / "signing" / "chain.pem").exists()  # the workspace's chain, not the image folder
    assert not (tmp_path / "v" / "signing").exists()
