"""I/O faults give one line naming the file and the fix, never a traceback: a truncated or damaged
workspace (found before anything is read), a read-only folder (found before an image is drawn), a full
disk (a tiny tmpfs), a missing model file. The API turns the same faults into 503s with Retry-After."""

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from apps.cli import cli


def _pwb(*args):
    res = CliRunner().invoke(cli, list(args), catch_exceptions=False)  # a traceback fails the test
    return res.exit_code, [x for x in res.stderr.strip().splitlines() if x.strip()], res


def _one_line_error(args, *words):
    code, lines, res = _pwb(*args)
    assert code == 1, res.output
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.stderr
    for w in words:
        assert str(w) in lines[0], (w, lines[0])
    return lines[0]


@pytest.fixture()
def ws(review_copy):
    return review_copy  # holds p.tsv, the prompt set its images were drawn for


@pytest.fixture()
def tmpfs(tmp_path):
    """Mount tiny tmpfs file systems (root with CAP_SYS_ADMIN, as on the project's machines; else skip)."""
    mounted = []

    def mount(size: str, read_only: bool = False) -> Path:
        where = tmp_path / f"fs-{uuid.uuid4().hex[:6]}"
        where.mkdir()
        opts = f"size={size}" + (",ro" if read_only else "")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(
                f"cannot mount a tmpfs here ({r.stderr.strip() or 'not root'}): the full-disk and "
                "read-only cases need one"
            )
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _fill(folder: Path) -> Path:
    """Write a file in ``folder`` until the disk refuses more."""
    path = folder / "filler"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        for chunk in (1 << 20, 4096, 1):
            while True:
                try:
                    if os.write(fd, b"\0" * chunk) < chunk:
                        break
                except OSError:
                    break
    finally:
        os.close(fd)
    return path


def _read_only_dir(tmp_path, tmpfs) -> Path:
    if os.geteuid() != 0:  # permissions stop everyone but root
        d = tmp_path / "ro"
        d.mkdir()
        d.chmod(0o555)
        return d
    return tmpfs("1m", read_only=True)


@pytest.mark.parametrize("keep", [0.5, 0.95])
def test_a_truncated_workspace_is_one_line_naming_it_before_anything_is_read(ws, keep):
    size = ws.stat().st_size
    os.truncate(ws, int(size * keep))
    line = _one_line_error(["runs", "list", "--db", str(ws)], ws, "truncated", "backup")
    assert "Traceback" not in line
    _one_line_error(["personas", "show", "u0", "--db", str(ws)], ws, "truncated")


def test_a_file_that_is_not_a_workspace_or_is_empty_is_one_line(tmp_path):
    junk = tmp_path / "junk.duckdb"
    junk.write_bytes(os.urandom(20000))
    _one_line_error(["runs", "list", "--db", str(junk)], junk, "not a DuckDB database")
    empty = tmp_path / "empty.duckdb"
    empty.write_bytes(b"")
    _one_line_error(["runs", "list", "--db", str(empty)], empty, "empty file")


def test_a_read_only_image_folder_is_found_before_drawing(ws, tmp_path, tmpfs, monkeypatch):
    ro = _read_only_dir(tmp_path, tmpfs)
    drawn = []
    from generation.backends import patch

    real = patch.PatchBackend.generate
    monkeypatch.setattr(patch.PatchBackend, "generate", lambda self, *a, **k: drawn.append(1) or real(self, *a, **k))
    _one_line_error(
        [
            "generate",
            "--backend",
            "patch",
            "--pool",
            "samples",
            "--prompts",
            str(ws.parent / "p.tsv"),
            "--max-users",
            "1",
            "--steps",
            "1",
            "--height",
            "32",
            "--width",
            "32",
            "--out",
            str(ro),
            "--db",
            str(ws),
        ],
        ro,
        "Cannot write a file",
        "writable",
    )
    assert drawn == []  # refused up front, not after minutes of drawing


def test_a_full_disk_is_one_line_for_images_and_for_the_workspace(ws, tmpfs):
    full = tmpfs("64k")
    (full / "images").mkdir()
    _fill(full)  # nothing is left for an image or a workspace
    _one_line_error(
        [
            "generate",
            "--backend",
            "patch",
            "--pool",
            "samples",
            "--prompts",
            str(ws.parent / "p.tsv"),
            "--max-users",
            "1",
            "--steps",
            "1",
            "--height",
            "32",
            "--width",
            "32",
            "--out",
            str(full / "images"),
            "--db",
            str(ws),
        ],
        full / "images",
        "disk is full",
    )
    line = _one_line_error(["data", "import", "synthetic", "--users", "20", "--db", str(full / "w.duckdb")])
    assert str(full / "w.duckdb") in line and ("disk is full" in line or "No space left" in line or "space" in line), (
        line
    )


def test_a_missing_model_file_is_one_line_naming_it(ws, tmp_path):
    prompts = str(ws.parent / "p.tsv")
    missing = tmp_path / "no-such-model"
    _one_line_error(
        [
            "generate",
            "--backend",
            "diffusers",
            "--model",
            str(missing),
            "--prompts",
            prompts,
            "--max-users",
            "1",
            "--db",
            str(ws),
        ],
        missing,
        "model",
    )
    _one_line_error(
        [
            "rewrite",
            "--prompts",
            prompts,
            "--backend",
            "embedded",
            "--model",
            str(tmp_path / "m.gguf"),
            "--db",
            str(ws),
        ],
        tmp_path / "m.gguf",
    )


def test_invisible_consent_is_refused_on_the_command_line(ws, tmp_path):
    face = tmp_path / "face.png"
    from PIL import Image

    Image.new("RGB", (32, 32), "white").save(face)
    for subject in ("\u200b", "\u2060", "\ufeff"):
        code, lines, res = _pwb(
            "generate",
            "--backend",
            "diffusers",
            "--model",
            "random:sdxl-tiny",
            "--identity",
            str(face),
            "--identity-consent",
            subject,
            "--prompts",
            str(ws.parent / "p.tsv"),
            "--db",
            str(ws),
        )
        assert code == 2 and "--identity-consent" in res.stderr and "letter or digit" in res.stderr, res.stderr


def test_the_api_answers_a_full_disk_with_503_and_keeps_what_it_had(review_db, tmpfs):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from apps.api.app import create_app
    from apps.api.service import ServiceConfig
    from workbench.store.keys import create_key
    from workbench.store.workspace import Workspace

    fs = tmpfs("64m")
    shutil.copytree(review_db.parent, fs / "ws")
    db = fs / "ws" / review_db.name
    with Workspace(db) as w:
        token = create_key(w, "disk", rate_per_minute=10**6)["token"]
        item = w.scalar("SELECT min(item_id) FROM items")
    app = create_app(ServiceConfig(db=str(db), encoder="sage", encoder_params={"epochs": 3}), load_in_background=False)
    with TestClient(app) as c:
        c.headers["Authorization"] = f"Bearer {token}"
        assert (
            c.post("/v1/personas", json={"user_id": "before-full", "interactions": [{"item_id": item}]}).status_code
            == 201
        )
        filler = _fill(fs)
        answers = {}
        for i in range(40):  # the journal's last page may have room for a few more lines: post until refused
            r = c.post("/v1/personas", json={"user_id": f"full-{i}", "interactions": [{"item_id": item}]})
            answers[f"full-{i}"] = r
            if r.status_code != 201:
                break
        assert r.status_code == 503 and "disk is full" in r.json()["detail"] and r.headers["retry-after"], r.text
        filler.unlink()
        assert c.get("/v1/personas/before-full").status_code == 200
    with Workspace(db, read_only=True) as w:  # every acknowledged one is in; the refused one is not
        users = {r[0] for r in w.query("SELECT user_id FROM personas WHERE encoder = 'sage-coldstart'")}
    acked = {u for u, r in answers.items() if r.status_code == 201} | {"before-full"}
    assert acked <= users and not ({u for u, r in answers.items() if r.status_code == 503} & users)
