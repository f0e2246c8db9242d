"""Provenance of the images the workbench writes: C2PA content credentials plus an invisible watermark.

* **Content credentials** (``c2pa-python``): a C2PA manifest signed into the PNG, holding a ``c2pa.created``
  action with ``digitalSourceType`` *trainedAlgorithmicMedia*, the generator and model, and a workbench
  assertion (:data:`ASSERTION`) with the user, persona, prompt and generation ids and the watermark id (ids
  only: no persona text, no personal data). Signed with a local ES256 chain made on first use
  (:func:`signing_identity`: a root and an end-entity certificate under ``<folder>/signing/``) or the
  user's own (``PWB_C2PA_CERT`` / ``PWB_C2PA_KEY``: a PEM chain and a PKCS#8 key). A self-signed chain
  validates as *untrusted* in other readers until they trust its root; the signature itself is checked.
* **Watermark** (the ``dwtDctSvd`` scheme of ``invisible-watermark``, the family diffusers' SDXL pipelines
  use, embedded by our own code in luma with step 48 and read by the library's decoder: see
  :func:`embed_watermark`): 48 bits in the pixels, a 32-bit id (:func:`watermark_id`, from the generation
  id) and a 16-bit check, so an unmarked image reads as unmarked (with the rescaled retries of
  :func:`read_watermark`, a random image passes the check at most 3 times in 65,536) and a re-saved,
  re-encoded or halved image whose manifest is gone still names its generation. It needs at least 256 x 256
  pixels; smaller images get the manifest only. ``benchmarks/provenance_robustness.py`` measures it.

:func:`verify` tells them apart: ``marked`` (valid manifest), ``tampered`` (a manifest that does not
validate: the pixels or the claim changed after signing), ``stripped`` (no manifest, watermark found) and
``unmarked`` (neither). Both libraries are dependencies; nothing here imports them until used.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ASSERTION = "org.persona-workbench.generation"
DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
WATERMARK_METHOD = "dwtDctSvd"
WATERMARK_BITS = 48
# dwtDctSvd quantization step per YUV channel: luma only. Luma survives JPEG (chroma is subsampled, then
# coarsely quantized) and a resize round trip far better than the library's default chroma (0, 36, 0); a
# change in Y alone moves R, G and B alike (grey pixels stay grey), and 48 keeps PSNR over 41 dB.
WATERMARK_SCALES = (48, 0, 0)
# Besides the image as it is, read_watermark tries it enlarged by these factors (a 0.5x and a 0.75x resize
# undone); each try is one more 1-in-65,536 chance for an unmarked image to pass the check.
WATERMARK_RESCALES = (2.0, 4 / 3)
MIN_WATERMARK_PIXELS = 256 * 256
INSTALL_HINT = "pip install c2pa-python invisible-watermark (dependencies of persona-workbench: reinstall it)"


def _need(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise RuntimeError(f"provenance needs {module!r}: {INSTALL_HINT}") from exc


def watermark_id(generation_id: str) -> int:
    """The 32-bit watermark id of a generation: the first four bytes of the SHA-256 of its id."""
    return int.from_bytes(hashlib.sha256(generation_id.encode()).digest()[:4], "big")


def _check(ident: int) -> int:
    return int.from_bytes(hashlib.sha256(b"pwb-wm|" + ident.to_bytes(4, "big")).digest()[:2], "big")


def _bits(ident: int) -> list[int]:
    word = (ident << 16) | _check(ident)
    return [(word >> (WATERMARK_BITS - 1 - i)) & 1 for i in range(WATERMARK_BITS)]


def embed_watermark(rgb, ident: int):
    """``rgb`` (H x W x 3 uint8) with ``ident`` in its pixels; ``None`` when the image is under 256 x 256.

    The ``dwtDctSvd`` scheme of ``invisible-watermark`` (Haar LL band, 4 x 4 blocks, the top singular value
    of each block quantized to carry one bit, the 48 bits repeated over the blocks) on the luma channel
    with step :data:`WATERMARK_SCALES`, so its ``WatermarkDecoder("bits", 48).decode(bgr, "dwtDctSvd",
    scales=[48, 0, 0])`` reads it. Written here rather than with its encoder, which floors the singular
    value to the lattice point below (instead of the nearest: 2.4 dB more noise for the same strength) and
    casts its float YUV back to uint8 with truncation and wrap-around (coloured fringes at edges). The
    singular value of a block's DCT is the block's own, so no DCT is needed; a change of the luma alone is
    the same change of R, G and B."""
    import numpy as np

    if rgb.shape[0] * rgb.shape[1] < MIN_WATERMARK_PIXELS:
        return None
    _need("imwatermark")  # its decoder reads what this writes: fail here, not at the first verify
    step, block = float(WATERMARK_SCALES[0]), 4
    h, w = rgb.shape[0] // 4 * 4, rgb.shape[1] // 4 * 4
    out = np.asarray(rgb, dtype=np.float64)[:, :, :3]
    y = out[:h, :w] @ np.array([0.299, 0.587, 0.114])  # the decoder's Y (OpenCV's BGR2YUV)
    ll = (y[0::2, 0::2] + y[0::2, 1::2] + y[1::2, 0::2] + y[1::2, 1::2]) / 2  # Haar LL (orthonormal)
    bh, bw = ll.shape[0] // block, ll.shape[1] // block
    blocks = ll[: bh * block, : bw * block].reshape(bh, block, bw, block).transpose(0, 2, 1, 3)
    u, s, vt = np.linalg.svd(blocks)
    offset = 0.25 + 0.5 * np.resize(np.asarray(_bits(ident), dtype=np.float64), bh * bw).reshape(bh, bw)
    s0 = s[..., 0]
    target = (np.round(s0 / step - offset) + offset) * step  # the nearest point of the bit's lattice
    d = (target - s0)[..., None, None] * u[..., :, :1] * vt[..., :1, :]
    dll = np.zeros_like(ll)
    dll[: bh * block, : bw * block] = d.transpose(0, 2, 1, 3).reshape(bh * block, bw * block)
    out = out.copy()
    out[:h, :w] += np.repeat(np.repeat(dll / 2, 2, axis=0), 2, axis=1)[:, :, None]  # inverse Haar of LL alone
    return np.ascontiguousarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))


def _decode_once(wm, rgb) -> int | None:
    import numpy as np

    bits = wm.WatermarkDecoder("bits", WATERMARK_BITS).decode(
        np.ascontiguousarray(rgb[:, :, 2::-1]), WATERMARK_METHOD, scales=list(WATERMARK_SCALES)
    )
    word = 0
    for b in bits:
        word = (word << 1) | int(bool(b))
    ident, check = word >> 16, word & 0xFFFF
    return ident if _check(ident) == check else None


def read_watermark(rgb) -> int | None:
    """The watermark id in ``rgb``, or ``None`` when there is none (its check does not match).

    Reads the image as it is (when at least 256 x 256), then, while the check fails, enlarged (Lanczos) by
    each factor of :data:`WATERMARK_RESCALES`, which puts the blocks of an image shrunk to 0.5x or 0.75x
    back on their grid (a 256 px image shrunk to 128 px still reads). Every try that runs is one 16-bit
    check an unmarked image passes by chance 1 time in 65,536: at most 3 tries, so at most 3 in 65,536
    (about 1 in 21,800) unmarked images read as marked, with a random id."""
    import numpy as np
    from PIL import Image

    wm = _need("imwatermark")
    rgb = np.asarray(rgb)
    height, width = rgb.shape[:2]
    if height * width >= MIN_WATERMARK_PIXELS:
        ident = _decode_once(wm, rgb)
        if ident is not None:
            return ident
    img = None
    for factor in WATERMARK_RESCALES:
        size = (round(width * factor), round(height * factor))
        if size[0] * size[1] < MIN_WATERMARK_PIXELS:
            continue
        if img is None:
            img = Image.fromarray(np.ascontiguousarray(rgb[:, :, :3]).astype(np.uint8))
        ident = _decode_once(wm, np.asarray(img.resize(size, Image.LANCZOS)))
        if ident is not None:
            return ident
    return None


@dataclass(frozen=True)
class SigningIdentity:
    """A PEM certificate chain (end entity first) and its PKCS#8 private key."""

    chain_pem: bytes
    key_pem: bytes
    source: str


def signing_identity(folder: str | Path) -> SigningIdentity:
    """The user's chain and key (``PWB_C2PA_CERT`` / ``PWB_C2PA_KEY``), else the local one under
    ``folder/signing/``, created on first use (a P-256 root and an end-entity certificate for signing)."""
    cert, key = os.environ.get("PWB_C2PA_CERT"), os.environ.get("PWB_C2PA_KEY")
    if cert or key:
        if not (cert and key):
            raise ValueError("PWB_C2PA_CERT and PWB_C2PA_KEY go together: a PEM certificate chain and its PKCS#8 key")
        return SigningIdentity(Path(cert).read_bytes(), Path(key).read_bytes(), cert)
    where = Path(folder) / "signing"
    chain, pk = where / "chain.pem", where / "signer.key"
    if not (chain.exists() and pk.exists()):
        where.mkdir(parents=True, exist_ok=True)
        chain_pem, key_pem = _make_chain()
        pk.write_bytes(key_pem)
        os.chmod(pk, 0o600)
        chain.write_bytes(chain_pem)
    return SigningIdentity(chain.read_bytes(), pk.read_bytes(), str(chain))


def _make_chain() -> tuple[bytes, bytes]:
    """A self-signed ES256 root and an end-entity certificate with what C2PA asks of a signer (CA:FALSE,
    digitalSignature, emailProtection, key ids); ``(chain PEM, PKCS#8 key PEM)``."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    root_key, ee_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Persona Workbench local root")])
    ee_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Persona Workbench local signer")])
    no_usage = dict(content_commitment=False, key_encipherment=False, data_encipherment=False, key_agreement=False)
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
                **no_usage,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    ee = (
        x509.CertificateBuilder()
        .subject_name(ee_name)
        .issuer_name(root_name)
        .public_key(ee_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
                **no_usage,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ee_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = ee_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return ee.public_bytes(pem) + root.public_bytes(pem), key_pem


@functools.lru_cache(maxsize=1)
def software_version() -> str:
    """The installed persona-workbench version (read once: a metadata lookup costs milliseconds)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("persona-workbench")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


def manifest_json(ids: dict[str, Any], *, generator: str, model: str, ident: int | None) -> str:
    """The C2PA manifest definition: the ``c2pa.created`` action and the workbench's ids assertion."""
    __version__ = software_version()
    action = {
        "action": "c2pa.created",
        "digitalSourceType": DIGITAL_SOURCE_TYPE,
        "softwareAgent": {"name": "persona-workbench", "version": __version__},
        "parameters": {"generator": generator, "model": model},
    }
    data = {k: v for k, v in ids.items() if v is not None}
    data["watermark_id"] = None if ident is None else f"{ident:08x}"
    return json.dumps(
        {
            "claim_generator_info": [{"name": "persona-workbench", "version": __version__}],
            "format": "image/png",
            "assertions": [
                {"label": "c2pa.actions", "data": {"actions": [action]}},
                {"label": ASSERTION, "data": data},
            ],
        }
    )


class Marker:
    """Watermarks and signs PNGs with one :class:`SigningIdentity`, reusing one signer and one C2PA context
    (building them costs more than signing a small image). The manifest carries no thumbnail: c2pa's default
    one is a JPEG of the whole image, which made a 128 px PNG nine times larger."""

    def __init__(self, identity: SigningIdentity):
        c2pa = _need("c2pa")
        self.identity = identity
        self._signer = c2pa.Signer.from_info(
            c2pa.C2paSignerInfo(alg=b"es256", sign_cert=identity.chain_pem, private_key=identity.key_pem, ta_url=None)
        )
        self._context = c2pa.Context(settings=c2pa.Settings.from_dict({"builder": {"thumbnail": {"enabled": False}}}))

    def mark(self, png: bytes, ids: dict[str, Any], *, generator: str, model: str, watermark: bool = True) -> bytes:
        """``png`` watermarked (from ``ids["generation_id"]``, when the image is large enough) and signed with
        a C2PA manifest; the PNG's text chunks are kept."""
        import numpy as np
        from PIL import Image

        c2pa = _need("c2pa")
        ident = watermark_id(str(ids["generation_id"])) if watermark and ids.get("generation_id") else None
        if ident is not None:
            img = Image.open(io.BytesIO(png))
            marked = embed_watermark(np.asarray(img.convert("RGB")), ident)
            if marked is None:
                ident = None
            else:
                out = io.BytesIO()
                Image.fromarray(marked).save(out, format="PNG", pnginfo=_text_chunks(img))
                png = out.getvalue()
        dst = io.BytesIO()
        definition = manifest_json(ids, generator=generator, model=model, ident=ident)
        with c2pa.Builder(definition, context=self._context) as builder:
            builder.sign(self._signer, "image/png", io.BytesIO(png), dst)
        return dst.getvalue()


_MARKERS: dict[tuple[str, str, str], Marker] = {}


def marker_for(folder: str | Path) -> Marker:
    """The :class:`Marker` of the signing identity :func:`signing_identity` gives for ``folder`` (one per
    process and identity)."""
    key = (str(Path(folder).resolve()), os.environ.get("PWB_C2PA_CERT", ""), os.environ.get("PWB_C2PA_KEY", ""))
    if key not in _MARKERS:
        _MARKERS[key] = Marker(signing_identity(folder))
    return _MARKERS[key]


def mark_png(
    png: bytes, ids: dict[str, Any], *, generator: str, model: str, identity: SigningIdentity, watermark: bool = True
) -> bytes:
    """``png`` watermarked and signed with ``identity`` (a one-off :class:`Marker`)."""
    return Marker(identity).mark(png, ids, generator=generator, model=model, watermark=watermark)


def is_signed(data: bytes) -> bool:
    """Whether PNG bytes hold a C2PA manifest chunk (``caBX``); not whether it validates (:func:`verify`)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return False
    pos = 8
    while pos + 8 <= len(data):  # walk the chunks: four bytes "caBX" may occur inside compressed pixels
        size, kind = int.from_bytes(data[pos : pos + 4], "big"), data[pos + 4 : pos + 8]
        if kind == b"caBX":
            return True
        if kind == b"IEND":
            return False
        pos += 12 + size
    return False


def _text_chunks(img):
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for k, v in (getattr(img, "text", None) or {}).items():
        info.add_text(k, v)
    return info


def read_manifest(data: bytes, mime: str = "image/png") -> dict[str, Any] | None:
    """``{"valid", "state", "assertion", "errors"}`` of the active C2PA manifest, or ``None`` when there is none."""
    c2pa = _need("c2pa")
    try:
        with c2pa.Reader(mime, io.BytesIO(data)) as reader:
            report = json.loads(reader.json())
    except Exception as exc:  # c2pa raises its own error types for "no manifest" and for broken JUMBF
        if "ManifestNotFound" in type(exc).__name__ or "no JUMBF" in str(exc) or "not found" in str(exc).lower():
            return None
        return {"valid": False, "state": f"unreadable: {exc}", "assertion": None, "errors": [str(exc)]}
    active = report.get("manifests", {}).get(report.get("active_manifest") or "", {})
    assertion = next((a.get("data") for a in active.get("assertions", []) if a.get("label") == ASSERTION), None)
    failures = [
        s.get("code", "")
        for s in report.get("validation_status") or []
        if s.get("code") and not s["code"].startswith("signingCredential.untrusted")
    ]
    state = report.get("validation_state") or ("Invalid" if failures else "Valid")
    valid = state in ("Valid", "Trusted") and not failures
    return {"valid": valid, "state": state, "assertion": assertion, "errors": failures}


def verify(path: str | Path) -> dict[str, Any]:
    """What an image carries: ``status`` (``marked``, ``tampered``, ``stripped`` or ``unmarked``), the
    manifest's state and workbench assertion, and the watermark id found in the pixels (hex, or ``None``)."""
    import numpy as np
    from PIL import Image

    data = Path(path).read_bytes()
    mime = "image/png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "image/jpeg"
    manifest = read_manifest(data, mime)
    try:
        rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    except (OSError, ValueError) as exc:  # the pixel data itself is damaged (bytes changed after signing)
        rgb, broken = None, f"pixels unreadable: {exc}"
    else:
        broken = None
    ident = read_watermark(rgb) if rgb is not None else None
    if manifest is not None:
        status = "marked" if manifest["valid"] and broken is None else "tampered"
    else:
        status = "stripped" if ident is not None else "unmarked"
    errors = ([] if manifest is None else list(manifest["errors"])) + ([broken] if broken else [])
    return {
        "image": str(path),
        "status": status,
        "manifest": None if manifest is None else manifest["state"],
        "manifest_errors": errors,
        "assertion": None if manifest is None else manifest["assertion"],
        "watermark_id": None if ident is None else f"{ident:08x}",
    }
