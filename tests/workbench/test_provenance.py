"""Content credentials and the watermark: a marked image verifies, and stripped, tampered and unmarked ones are
told apart."""

import io
import json
import struct

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

pytest.importorskip("c2pa")
pytest.importorskip("imwatermark")

from apps.cli import cli  # noqa: E402
from workbench.images import png_bytes  # noqa: E402
from workbench.provenance import DIGITAL_SOURCE_TYPE, mark_png, read_watermark, signing_identity, verify, watermark_id  # noqa: E402
from workbench.store.workspace import Workspace  # noqa: E402


@pytest.fixture(scope="module")
def photo():
    from skimage import data

    return np.asarray(Image.fromarray(data.astronaut()).resize((384, 384)))


@pytest.fixture(scope="module")
def identity(tmp_path_factory):
    return signing_identity(tmp_path_factory.mktemp("ws"))


def _mark(rgb, identity, gid="g-1"):
    ids = {"generation_id": gid, "user_id": "u1", "persona_id": "s/gat/u1", "prompt_id": "p-0001"}
    return mark_png(
        png_bytes(Image.fromarray(rgb), {"seed": 3}), ids, generator="patch", model="patch:fast", identity=identity
    )


def _chunks(png: bytes):
    pos, out = 8, []
    while pos < len(png):
        (n,) = struct.unpack(">I", png[pos : pos + 4])
        out.append((png[pos + 4 : pos + 8], png[pos : pos + 12 + n]))
        pos += 12 + n
    return out


def test_a_marked_image_verifies_with_its_ids_and_watermark(photo, identity, tmp_path):
    path = tmp_path / "m.png"
    path.write_bytes(_mark(photo, identity))
    v = verify(path)
    wid = f"{watermark_id('g-1'):08x}"
    assert v["status"] == "marked" and v["manifest"] == "Valid" and v["watermark_id"] == wid
    assert v["assertion"] == {
        "generation_id": "g-1",
        "user_id": "u1",
        "persona_id": "s/gat/u1",
        "prompt_id": "p-0001",
        "watermark_id": wid,
    }
    assert Image.open(path).text["pwb:seed"] == "3"  # the PNG's own metadata is kept
    import c2pa

    with c2pa.Reader("image/png", io.BytesIO(path.read_bytes())) as r:
        report = json.loads(r.json())
    actions = next(
        a for a in report["manifests"][report["active_manifest"]]["assertions"] if a["label"].startswith("c2pa.actions")
    )["data"]["actions"]
    assert actions[0]["action"] == "c2pa.created" and actions[0]["digitalSourceType"] == DIGITAL_SOURCE_TYPE
    # marking leaves the picture as it was to the eye: PSNR of the watermarked pixels
    marked = np.asarray(Image.open(path).convert("RGB")).astype(float)
    assert 10 * np.log10(255**2 / np.mean((marked - photo) ** 2)) > 35


def test_stripped_tampered_and_unmarked_are_told_apart(photo, identity, tmp_path):
    signed = _mark(photo, identity)
    Image.open(io.BytesIO(signed)).save(tmp_path / "resaved.png")  # a re-save drops the manifest
    Image.open(io.BytesIO(signed)).convert("RGB").save(tmp_path / "resaved.jpg", quality=85)
    Image.fromarray(photo).save(tmp_path / "plain.png")
    # tampered: other pixels under the original manifest (its chunk copied into the edited PNG)
    edited = np.asarray(Image.open(io.BytesIO(signed)).convert("RGB")).copy()
    edited[:40, :40] = 0
    buf = io.BytesIO()
    Image.fromarray(edited).save(buf, format="PNG")
    manifest = [c for t, c in _chunks(signed) if t == b"caBX"]
    assert manifest, "the signed PNG carries its manifest in a caBX chunk"
    parts = _chunks(buf.getvalue())
    (tmp_path / "tampered.png").write_bytes(
        b"\x89PNG\r\n\x1a\n" + parts[0][1] + manifest[0] + b"".join(c for _, c in parts[1:])
    )
    # corrupted: one byte of the compressed pixels flipped in the signed file (the pixels no longer decode)
    broken = bytearray(signed)
    at = broken.rfind(b"IDAT")
    broken[at + 40] ^= 0xFF
    (tmp_path / "corrupted.png").write_bytes(bytes(broken))
    names = ("resaved.png", "resaved.jpg", "tampered.png", "plain.png", "corrupted.png")
    got = {p: verify(tmp_path / p) for p in names}
    assert got["corrupted.png"]["status"] == "tampered" and got["corrupted.png"]["watermark_id"] is None
    wid = f"{watermark_id('g-1'):08x}"
    assert got["resaved.png"]["status"] == "stripped" and got["resaved.png"]["watermark_id"] == wid
    assert got["resaved.jpg"]["status"] == "stripped" and got["resaved.jpg"]["watermark_id"] == wid  # JPEG 85
    assert got["tampered.png"]["status"] == "tampered" and got["tampered.png"]["manifest_errors"]
    assert got["plain.png"]["status"] == "unmarked" and got["plain.png"]["watermark_id"] is None


def test_a_small_image_gets_the_manifest_only_and_random_pixels_read_as_unmarked(identity, tmp_path):
    rng = np.random.default_rng(0)
    small = (rng.random((128, 128, 3)) * 255).astype("uint8")
    path = tmp_path / "small.png"
    path.write_bytes(_mark(small, identity))
    v = verify(path)
    assert v["status"] == "marked" and v["watermark_id"] is None and v["assertion"]["watermark_id"] is None
    misses = sum(read_watermark((rng.random((256, 256, 3)) * 255).astype("uint8")) is not None for _ in range(20))
    assert misses == 0


def test_pwb_verify_names_the_workspace_row(photo, identity, tmp_path):
    db = tmp_path / "w.duckdb"
    with Workspace(db) as ws:
        ws.con.execute("INSERT INTO conditions (condition_id, user_id, prompt, seed) VALUES ('c1', 'u1', 'x', 0)")
        ws.con.execute(
            "INSERT INTO generations (generation_id, condition_id, image_path, backend, model, user_id) "
            "VALUES ('g-1', 'c1', 'images/a.png', 'patch', 'patch:fast', 'u1')"
        )
    signed = _mark(photo, identity)
    (tmp_path / "m.png").write_bytes(signed)
    Image.open(io.BytesIO(signed)).save(tmp_path / "s.png")
    res = CliRunner().invoke(
        cli, ["verify", str(tmp_path / "m.png"), str(tmp_path / "s.png"), "--db", str(db), "--json"]
    )
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [r["status"] for r in rows] == ["marked", "stripped"]
    assert all(r["generation"]["generation_id"] == "g-1" and r["generation"]["user_id"] == "u1" for r in rows)
    text = CliRunner().invoke(cli, ["verify", str(tmp_path / "s.png")]).output
    assert "stripped" in text and "re-saved or re-encoded" in text and "(no --db)" in text
