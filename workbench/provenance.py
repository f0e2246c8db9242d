"""Provenance of the images the workbench writes: C2PA content credentials plus an invisible watermark.

* **Content credentials** (``c2pa-python``): a C2PA manifest signed into the PNG, holding a ``c2pa.created``
  action with ``digitalSourceType`` *trainedAlgorithmicMedia*, the generator and model, and a workbench
  assertion (:data:`ASSERTION`) with the user, persona, prompt and generation ids and the watermark id (ids
  only: no persona text, no personal data). Signed with a local ES256 chain made on first use
  (:func:`signing_identity`: a root and an end-entity certificate under ``<folder>/signing/``) or the
  user's own (``PWB_C2PA_CERT`` / ``PWB_C2PA_KEY``: a PEM chain and a PKCS#8 key). A self-signed chain
  validates as *untrusted* in other readers until they trust its root; the signature itself is checked.
* **Watermark** (``invisible-watermark``'s ``dwtDctSvd``, the one diffusers' SDXL pipelines use): 48 bits
  in the pixels, a 32-bit id (:func:`watermark_id`, from the generation id) and a 16-bit check, so an
  unmarked image reads as unmarked (a random read passes the check 1 time in 65,536) and a re-saved or
  re-encoded image whose manifest is gone still names its generation. It needs at least 256 x 256 pixels;
  smaller images get the manifest only.

:func:`verify` tells them apart: ``marked`` (valid manifest), ``tampered`` (a manifest that does not
validate: the pixels or the claim changed after signing), ``stripped`` (no manifest, watermark found) and
``unmarked`` (neither). Both libraries are the ``provenance`` extra; nothing here imports them until used.
"""

from __future__ import annotations

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
MIN_WATERMARK_PIXELS = 256 * 256
INSTALL_HINT = "pip install -e '.[provenance]' (c2pa-python and invisible-watermark)"


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
    """``rgb`` (H x W x 3 uint8) with ``ident`` in its pixels; ``None`` when the image is under 256 x 256."""
    import numpy as np

    if rgb.shape[0] * rgb.shape[1] < MIN_WATERMARK_PIXELS:
        return None
    wm = _need("imwatermark")
    enc = wm.WatermarkEncoder()
    enc.set_watermark("bits", _bits(ident))
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    return np.ascontiguousarray(enc.encode(bgr, WATERMARK_METHOD)[:, :, ::-1])


def read_watermark(rgb) -> int | None:
    """The watermark id in ``rgb``, or ``None`` when there is none (its check does not match)."""
    import numpy as np

    if rgb.shape[0] * rgb.shape[1] < MIN_WATERMARK_PIXELS:
        return None
    wm = _need("imwatermark")
    bits = wm.WatermarkDecoder("bits", WATERMARK_BITS).decode(np.ascontiguousarray(rgb[:, :, ::-1]), WATERMARK_METHOD)
    word = 0
    for b in bits:
        word = (word << 1) | int(bool(b))
    ident, check = word >> 16, word & 0xFFFF
    return ident if _check(ident) == check else None


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


def manifest_json(ids: dict[str, Any], *, generator: str, model: str, ident: int | None) -> str:
    """The C2PA manifest definition: the ``c2pa.created`` action and the workbench's ids assertion."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        __version__ = version("persona-workbench")
    except PackageNotFoundError:  # a source tree that was never installed
        __version__ = "0+unknown"
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


def mark_png(
    png: bytes, ids: dict[str, Any], *, generator: str, model: str, identity: SigningIdentity, watermark: bool = True
) -> bytes:
    """``png`` watermarked (from ``ids["generation_id"]``, when the image is large enough) and signed with a
    C2PA manifest; the PNG's text chunks are kept."""
    import numpy as np
    from PIL import Image

    c2pa = _need("c2pa")
    img = Image.open(io.BytesIO(png))
    ident = watermark_id(str(ids["generation_id"])) if watermark and ids.get("generation_id") else None
    if ident is not None:
        marked = embed_watermark(np.asarray(img.convert("RGB")), ident)
        if marked is None:
            ident = None
        else:
            out = io.BytesIO()
            Image.fromarray(marked).save(out, format="PNG", pnginfo=_text_chunks(img))
            png = out.getvalue()
    signer = c2pa.Signer.from_info(
        c2pa.C2paSignerInfo(alg=b"es256", sign_cert=identity.chain_pem, private_key=identity.key_pem, ta_url=None)
    )
    dst = io.BytesIO()
    with c2pa.Builder(manifest_json(ids, generator=generator, model=model, ident=ident)) as builder:
        builder.sign(signer, "image/png", io.BytesIO(png), dst)
    return dst.getvalue()


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
    rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    ident = read_watermark(rgb)
    if manifest is not None:
        status = "marked" if manifest["valid"] else "tampered"
    else:
        status = "stripped" if ident is not None else "unmarked"
    return {
        "image": str(path),
        "status": status,
        "manifest": None if manifest is None else manifest["state"],
        "manifest_errors": [] if manifest is None else manifest["errors"],
        "assertion": None if manifest is None else manifest["assertion"],
        "watermark_id": None if ident is None else f"{ident:08x}",
    }
