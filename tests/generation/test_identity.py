"""Identity references, consent, and the face embedders of ``workbench.encoders.face``.

The dlib tests use ``skimage.data.astronaut()`` (Eileen Collins, NASA, public domain), the one real face
shipped offline; they skip when scikit-image, dlib or the face_recognition_models files are missing.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from datetime import date, datetime

import numpy as np
import pytest

from workbench.consent import Consent, ConsentError, IdentityReference
from workbench.encoders.face import (
    DLIB_SAME_PERSON_DISTANCE,
    DlibFaceEmbedder,
    FaceEmbedder,
    NoFaceError,
    face_embedder_names,
    get_face_embedder,
    identity_similarity,
    main_face_first,
    same_person,
)

# ---------------------------------------------------------------------------------------------------
# Consent and identity references (no models needed)
# ---------------------------------------------------------------------------------------------------


def test_consent_round_trip_and_normalisation():
    c = Consent(subject="  Ada Lovelace ", granted_at="2025-03-01T14:30:00+01:00", note="form #12")
    assert c.subject == "Ada Lovelace"
    assert c.scope == "identity-injection"
    assert Consent.from_dict(c.to_dict()) == c
    assert c.to_dict() == {
        "subject": "Ada Lovelace",
        "granted_at": "2025-03-01T14:30:00+01:00",
        "scope": "identity-injection",
        "note": "form #12",
    }
    assert Consent("Ada", date(2025, 3, 1)).granted_at == "2025-03-01"
    assert Consent("Ada", datetime(2025, 3, 1, 9, 5)).granted_at == "2025-03-01T09:05:00"
    assert Consent("Ada", "2025-03-01", scope="training, identity-injection").covers()


@pytest.mark.parametrize("granted_at", ["yesterday", "2025-13-01", "01/03/2025", "", None, 20250301])
def test_consent_rejects_invalid_granted_at(granted_at):
    with pytest.raises(ValueError, match="granted_at"):
        Consent(subject="Ada", granted_at=granted_at)


@pytest.mark.parametrize("subject", ["", "   ", None])
def test_consent_needs_a_subject(subject):
    with pytest.raises(ValueError, match="subject"):
        Consent(subject=subject, granted_at="2025-03-01")


def test_consent_from_dict_rejects_unknown_and_missing_keys():
    with pytest.raises(ValueError, match=r"unknown Consent field\(s\) \['subjet'\]"):
        Consent.from_dict({"subjet": "Ada", "granted_at": "2025-03-01"})
    with pytest.raises(ValueError, match="missing granted_at"):
        Consent.from_dict({"subject": "Ada"})


def test_reference_without_consent_is_refused_with_the_fix():
    ref = IdentityReference("face.png")
    with pytest.raises(ConsentError) as info:
        ref.require_consent()
    msg = str(info.value)
    assert msg.startswith("identity reference 'face.png' has no recorded consent")
    assert "Consent(subject=..., granted_at=...)" in msg
    assert "--identity-consent" in msg
    with pytest.raises(ConsentError, match=r"^face_image reference 'face.png'"):
        ref.require_consent("face_image")
    assert isinstance(info.value, ValueError)


def test_reference_with_wrong_scope_is_refused():
    ref = IdentityReference("face.png", consent=Consent("Ada", "2025-03-01", scope="training"))
    with pytest.raises(ConsentError, match=r"scope 'training', which does not cover 'identity-injection'"):
        ref.require_consent()


def test_reference_with_consent_passes():
    consent = Consent("Ada", "2025-03-01")
    assert IdentityReference("face.png", consent=consent).require_consent() is consent
    # A dict from to_dict() is accepted, as read back from a run record.
    assert IdentityReference("face.png", consent=consent.to_dict()).consent == consent


def test_reference_label_for_in_memory_images():
    ref = IdentityReference(np.zeros((4, 6, 3), np.uint8))
    with pytest.raises(ConsentError, match=r"identity reference <array 4x6x3 uint8> has no recorded consent"):
        ref.require_consent()


@pytest.mark.parametrize("scale", [-0.1, float("nan"), "strong"])
def test_reference_scale_is_validated(scale):
    with pytest.raises(ValueError, match="scale"):
        IdentityReference("face.png", scale=scale)
    assert IdentityReference("face.png", scale=0).scale == 0.0


# ---------------------------------------------------------------------------------------------------
# Registry and optional providers
# ---------------------------------------------------------------------------------------------------


def test_unknown_provider_names_the_closest_and_the_available():
    with pytest.raises(ValueError) as info:
        get_face_embedder("dlb")
    msg = str(info.value)
    assert "unknown face embedder 'dlb'; did you mean 'dlib'?" in msg
    assert "available: arcface, dlib, insightface:<...>" in msg
    assert face_embedder_names() == ["arcface", "dlib", "insightface:<...>"]
    assert get_face_embedder("dlib_face").name == get_face_embedder("dlib-face").name == "dlib-face"


@pytest.mark.skipif(importlib.util.find_spec("insightface") is not None, reason="insightface is installed")
@pytest.mark.parametrize("name", ["arcface", "insightface", "insightface:antelopev2"])
def test_insightface_provider_explains_how_to_install(name):
    with pytest.raises(ImportError, match=r"pip install insightface onnxruntime"):
        get_face_embedder(name)


def test_module_import_is_light():
    code = (
        "import sys, workbench.encoders.face; "
        "print(sorted(m for m in ('dlib', 'PIL', 'torch', 'insightface', 'skimage') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_main_face_first_prefers_a_confident_face_over_a_slightly_larger_false_positive():
    # (area, score): the astronaut upscaled to 768 px, where HOG finds her mission patch (156 px, 0.05)
    # as well as her face (130 px, 1.36); a tiny confident face elsewhere stays behind the main one.
    faces = [(130 * 130, 1.36), (156 * 156, 0.05), (20 * 20, 2.0)]
    ordered = main_face_first(faces, area=lambda f: f[0], score=lambda f: f[1])
    assert ordered == [(130 * 130, 1.36), (156 * 156, 0.05), (20 * 20, 2.0)]
    assert main_face_first([], area=len, score=len) == []


# ---------------------------------------------------------------------------------------------------
# dlib on a real face
# ---------------------------------------------------------------------------------------------------


def _require_dlib_stack():
    missing = [m for m in ("skimage", "dlib", "face_recognition_models") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (pip install scikit-image dlib-bin face_recognition_models==0.3.0)")


@pytest.fixture(scope="module")
def astronaut():
    _require_dlib_stack()
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="module")
def dlib_face(astronaut):
    return get_face_embedder("dlib")


@pytest.fixture(scope="module")
def ref_vec(dlib_face, astronaut):
    return dlib_face.embed(astronaut)


def test_registry_returns_dlib_and_shares_loaded_models(dlib_face):
    assert isinstance(dlib_face, DlibFaceEmbedder) and isinstance(dlib_face, FaceEmbedder)
    assert (dlib_face.name, dlib_face.dim) == ("dlib-face", 128)
    other = get_face_embedder("DLIB_FACE", upsample=0)
    assert other._predictor is dlib_face._predictor and other._recognizer is dlib_face._recognizer
    assert get_face_embedder(dlib_face) is dlib_face
    with pytest.raises(ValueError, match="upsample"):
        DlibFaceEmbedder(upsample=-1)
    with pytest.raises(ValueError, match="detector"):
        DlibFaceEmbedder(detector="haar")


def test_detects_the_astronauts_face(dlib_face, astronaut):
    boxes = dlib_face.detect(astronaut)
    assert boxes, "no face detected in skimage.data.astronaut()"
    main = boxes[0]
    # Her face is in the upper middle-left of the 512x512 image, about 90 px wide.
    assert main.left < 220 < main.right and main.top < 120 < main.bottom
    assert 60 <= main.right - main.left <= 130
    assert main.score > 0.5


def test_embedding_is_128_float32_and_deterministic(dlib_face, astronaut, ref_vec):
    assert ref_vec.shape == (128,) and ref_vec.dtype == np.float32
    assert np.isfinite(ref_vec).all() and np.linalg.norm(ref_vec) > 0.1
    assert dlib_face.distance(ref_vec, dlib_face.embed(astronaut)) == pytest.approx(0.0, abs=1e-6)


def test_same_person_across_flip_resize_and_input_types(dlib_face, astronaut, ref_vec, tmp_path):
    from PIL import Image

    pil = Image.fromarray(astronaut)
    pil.resize((384, 384)).save(tmp_path / "astronaut_384.png")
    variants = {
        "flipped": astronaut[:, ::-1],
        "resized file": tmp_path / "astronaut_384.png",
        "PIL": pil,
        "float array": astronaut.astype(np.float32) / 255.0,
    }
    for label, image in variants.items():
        d = dlib_face.distance(ref_vec, dlib_face.embed(image))
        assert d < DLIB_SAME_PERSON_DISTANCE, f"{label}: distance {d:.3f}"
        assert same_person(ref_vec, image, dlib_face), label


def test_no_face_raises_and_names_the_image(dlib_face, tmp_path):
    from PIL import Image
    from skimage import data

    gray = tmp_path / "gray.png"
    Image.new("RGB", (256, 256), (128, 128, 128)).save(gray)
    with pytest.raises(NoFaceError, match=r"no face found in '.*gray\.png'"):
        dlib_face.embed(gray)
    with pytest.raises(NoFaceError, match=r"no face found in <array 400x600x3 uint8>"):
        dlib_face.embed(data.coffee())
    assert dlib_face.detect(gray) == []


def test_identity_similarity_scores_faces_and_none_for_faceless_outputs(dlib_face, astronaut, ref_vec):
    from skimage import data

    gray = np.full((128, 128, 3), 128, np.uint8)
    scores = identity_similarity([astronaut, astronaut[:, ::-1], data.coffee(), gray], ref_vec, dlib_face)
    assert scores[0] == pytest.approx(1.0, abs=1e-6)
    assert scores[1] >= 1 - DLIB_SAME_PERSON_DISTANCE  # similarity >= 0.4 <=> distance <= 0.6
    assert scores[2] is None and scores[3] is None
    # The reference may be an image, or an IdentityReference whose consent is checked first.
    consented = IdentityReference(astronaut, consent=Consent("Eileen Collins (NASA, public domain)", "2025-01-01"))
    assert identity_similarity([astronaut], consented, dlib_face) == [pytest.approx(1.0, abs=1e-6)]
    with pytest.raises(ConsentError, match=r"^identity reference <array 512x512x3 uint8> has no recorded consent"):
        identity_similarity([astronaut], IdentityReference(astronaut), dlib_face)
    with pytest.raises(NoFaceError):
        identity_similarity([astronaut], gray, dlib_face)


@pytest.mark.parametrize(
    "subject", ["\u200b", "\u2060", "\ufeff", " \u200b\u2060 ", "", "   ", "--", "\u00a0", "\u200d\u200c"]
)
def test_consent_subject_must_hold_a_letter_or_digit_after_removing_invisible_characters(subject):
    from workbench.consent import Consent

    with pytest.raises(ValueError, match="subject"):
        Consent(subject=subject, granted_at="2025-03-01")


def test_consent_subject_is_normalised_and_granted_at_is_not_in_the_future():
    import datetime as dt

    from workbench.consent import Consent

    assert Consent(subject="\ufeffAda\u200b", granted_at="2025-03-01").subject == "Ada"
    assert Consent(subject="\uff21da", granted_at="2025-03-01").subject == "Ada"  # NFKC: fullwidth A
    assert Consent(subject="7", granted_at=dt.date.today()).subject == "7"
    for future in ("2999-12-31", "2999-01-01T00:00:00+00:00", (dt.date.today() + dt.timedelta(days=2)).isoformat()):
        with pytest.raises(ValueError, match="in the future"):
            Consent(subject="Ada", granted_at=future)
