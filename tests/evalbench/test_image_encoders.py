"""Image encoders: the embedded EfficientNet-Lite0 stand-in (shape, unit norm, determinism, input kinds,
cache, a flip is nearer than another picture) and the CLIP path (tiny random CLIP from a config, clear
errors without network)."""

import os
import socket

import numpy as np
import pytest

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

from workbench.encoders import image as ie  # noqa: E402
from workbench.encoders.image import EMBEDDED, ImageEncoder, load_image_encoder  # noqa: E402
from workbench.images import load_image  # noqa: E402


def _synthetic(kind: str, size=(180, 240)) -> np.ndarray:
    """Deterministic pictures with structure: a lit disc and a bar on a gradient; stripes; a checkerboard."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    if kind == "disc":
        img = np.stack([0.2 + 0.6 * yy, 0.3 + 0.2 * xx, 0.8 - 0.5 * yy], -1)
        disc = (xx - 0.3) ** 2 + (yy - 0.45) ** 2 < 0.04
        img[disc] = [0.95, 0.6, 0.1]
        img[(xx > 0.65) & (xx < 0.8) & (yy > 0.2)] = [0.1, 0.1, 0.1]
    elif kind == "stripes":
        s = 0.5 + 0.5 * np.sin(2 * np.pi * 9 * (xx + 0.5 * yy))
        img = np.stack([0.1 + 0.2 * s, 0.4 + 0.5 * s, 0.2 * s], -1)
    else:
        c = ((np.floor(xx * 12) + np.floor(yy * 9)) % 2)[..., None]
        img = c * np.array([0.9, 0.9, 0.85]) + (1 - c) * np.array([0.5, 0.1, 0.4])
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def _pictures():
    """Three unrelated pictures: scikit-image's samples when installed, else synthetic ones."""
    try:
        from skimage import data
    except ImportError:
        return _synthetic("disc"), _synthetic("stripes"), _synthetic("checker")
    return data.astronaut(), data.coffee(), data.chelsea()


@pytest.fixture(scope="module")
def enc():
    return load_image_encoder()


@pytest.fixture()
def no_network(monkeypatch):
    """Any attempt to resolve or connect fails the test; the hub is told it is offline."""

    def refuse(*a, **k):
        raise AssertionError("image encoder tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    try:
        import huggingface_hub.constants as hc
    except ImportError:
        return
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)  # read once at import time


def test_embedded_encoder_is_named_as_a_stand_in(enc):
    assert enc.name == enc.label == "effnet-lite0"
    assert "EfficientNet-Lite0" in enc.model_id and "not CLIP" in enc.model_id
    assert enc.model_id == EMBEDDED["effnet-lite0"] and enc.dim == 1280
    assert load_image_encoder() is enc


def test_shape_dtype_unit_norm(enc):
    a, b, c = _pictures()
    v = enc.encode([a, b, c])
    assert v.shape == (3, 1280) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert np.isfinite(v).all()
    assert enc.encode([]).shape == (0, 1280)


def test_deterministic_and_independent_of_batch(enc):
    a, b, c = _pictures()
    first = enc.encode([a])[0]
    np.testing.assert_array_equal(first, enc.encode([a])[0])
    np.testing.assert_allclose(enc.encode([b, a, c])[1], first, atol=1e-5)  # eval mode: no batch statistics


def test_path_pil_and_array_agree(enc, tmp_path):
    a = _pictures()[0]
    path = tmp_path / "a.png"  # lossless, so the file decodes to the same pixels
    Image.fromarray(a).save(path)
    v_path, v_str = enc.encode([path]), enc.encode([str(path)])
    v_pil, v_arr = enc.encode([Image.fromarray(a)]), enc.encode([a])
    np.testing.assert_allclose(v_path, v_pil, atol=1e-6)
    np.testing.assert_allclose(v_str, v_pil, atol=1e-6)
    np.testing.assert_allclose(v_arr, v_pil, atol=1e-6)
    rgba = Image.fromarray(np.dstack([a, np.full(a.shape[:2], 255, np.uint8)]))
    np.testing.assert_allclose(enc.encode([rgba]), v_pil, atol=1e-6)  # converted to RGB


def test_preprocessing_scales_crops_and_normalises():
    """Shorter side to 224, centre crop, ImageNet mean/std, channels first: checked on flat colour blocks."""
    red, blue = np.array([200, 30, 30], np.uint8), np.array([20, 40, 220], np.uint8)
    wide = np.empty((112, 224, 3), np.uint8)  # 2:1, scaled to 224x448 then the middle 224 columns kept
    wide[:, :112], wide[:, 112:] = red, blue
    x = ie._preprocess(Image.fromarray(wide))
    assert x.shape == (3, 224, 224) and x.dtype == np.float32

    def norm(rgb):
        return ((rgb / 255.0 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]).astype(np.float32)

    np.testing.assert_allclose(x[:, :, :100], np.broadcast_to(norm(red)[:, None, None], (3, 224, 100)), atol=1e-5)
    np.testing.assert_allclose(x[:, :, 124:], np.broadcast_to(norm(blue)[:, None, None], (3, 224, 100)), atol=1e-5)
    tall = np.empty((600, 300, 3), np.uint8)  # 1:2: rows 150-450 survive the crop
    tall[:140], tall[140:460], tall[460:] = red, blue, red
    np.testing.assert_allclose(
        ie._preprocess(Image.fromarray(tall)), np.broadcast_to(norm(blue)[:, None, None], (3, 224, 224)), atol=1e-5
    )


def test_flip_is_nearer_than_another_picture(enc):
    a, b, c = _pictures()
    v = enc.encode([a, a[:, ::-1].copy(), b, c])
    sim = v @ v[0]
    assert sim[1] > 0.8, sim
    assert sim[1] > max(sim[2], sim[3]) + 0.1, sim


def test_paths_are_cached_until_the_file_changes(tmp_path, monkeypatch):
    enc = ImageEncoder(batch_size=2)
    a, b, c = _pictures()
    paths = [tmp_path / f"{i}.png" for i in range(3)]
    for p, img in zip(paths, (a, b, c)):
        Image.fromarray(img).save(p)
    seen = []
    real = enc._embed
    monkeypatch.setattr(enc, "_embed", lambda imgs: (seen.append(len(imgs)), real(imgs))[1])
    v = enc.encode([paths[0], paths[1], paths[0], paths[2]])
    assert seen == [2, 1]  # three distinct files in batches of two
    np.testing.assert_array_equal(v[0], v[2])
    again = enc.encode([str(p) for p in paths])
    assert seen == [2, 1]  # all from the cache
    np.testing.assert_array_equal(again, v[[0, 1, 3]])
    Image.fromarray(c).save(paths[0])
    st = os.stat(paths[0])
    os.utime(paths[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    changed = enc.encode([paths[0]])
    assert seen == [2, 1, 1] and len(enc._cache) == 3  # re-encoded, replacing the stale entry
    np.testing.assert_allclose(changed[0], v[3], atol=1e-6)


def test_bad_inputs_are_explained(enc):
    with pytest.raises(ValueError, match="uint8"):
        enc.encode([np.zeros((8, 8, 3), dtype=np.int32)])
    # one coercion for every image (workbench.images.to_rgb_array): floats in [0, 1] read as diffusers gives them
    grey = np.full((8, 8, 3), 0.5, dtype=np.float32)
    np.testing.assert_allclose(enc.encode([grey]), enc.encode([np.full((8, 8, 3), 128, dtype=np.uint8)]), atol=1e-6)
    with pytest.raises(TypeError, match="unsupported image type"):
        enc.encode([3])
    with pytest.raises(FileNotFoundError):
        enc.encode(["/nonexistent/picture.png"])


def test_missing_local_clip_path_is_explained_without_network(no_network):
    with pytest.raises(RuntimeError, match=r"'/nonexistent/clip'.*local CLIP model directory"):
        ImageEncoder("/nonexistent/clip")


def test_unknown_clip_id_offline_is_explained_without_network(no_network):
    pytest.importorskip("transformers")
    with pytest.raises(RuntimeError, match=r"could not load CLIP model 'no-such-org/no-such-clip'.*local directory"):
        ImageEncoder("no-such-org/no-such-clip")


def test_missing_transformers_is_explained(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "transformers", None)  # import fails as if not installed
    with pytest.raises(RuntimeError, match=r"'.*' is a CLIP model and needs `transformers`: pip install"):
        ImageEncoder(str(tmp_path))


def test_tiny_random_clip_from_a_local_directory(tmp_path, no_network):
    pytest.importorskip("transformers")
    import torch
    from transformers import CLIPConfig, CLIPModel

    proc_cls = ie._clip_processor_class()
    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config=dict(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            vocab_size=99,
            max_position_embeddings=16,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        ),
        vision_config=dict(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ),
        projection_dim=8,
    )
    model = CLIPModel(cfg).eval()
    proc = proc_cls(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    model_dir = tmp_path / "tiny-clip"
    model.save_pretrained(model_dir)
    proc.save_pretrained(model_dir)

    enc = ImageEncoder(str(model_dir))
    assert enc.label == "tiny-clip" and enc.model_id == str(model_dir) and enc.dim == 8
    a, b, _ = _pictures()
    v = enc.encode([a, b])
    assert v.shape == (2, 8) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    # the same as running the model's image tower by hand
    pixels = proc(images=[Image.fromarray(a), Image.fromarray(b)], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        ref = model.get_image_features(pixel_values=pixels)
    ref = (ref if isinstance(ref, torch.Tensor) else ref.pooler_output).numpy()
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    np.testing.assert_allclose(v, ref, atol=1e-5)


def test_weights_and_preprocessing_recognise_imagenet_classes(enc):
    """The stand-in's own classifier head on our PIL/numpy preprocessing names the sample pictures."""
    data = pytest.importorskip("skimage.data")
    import torch

    with torch.no_grad():
        logits = enc._model(
            torch.from_numpy(np.stack([ie._preprocess(load_image(im)) for im in (data.chelsea(), data.coffee())]))
        )
    cat, coffee = logits.argmax(-1).tolist()
    assert 281 <= cat <= 285  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert coffee in (967, 968)  # espresso, cup
