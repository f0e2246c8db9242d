"""Image input/output: loading references, content-addressed saving with provenance in the PNG."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any


def load_image(image: Any):
    """A PIL RGB image from a path, a PIL image or an HxWx3 uint8 array."""
    from PIL import Image

    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"image {str(image)!r} does not exist")
        with Image.open(path) as im:
            return im.convert("RGB")
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if hasattr(image, "shape") and hasattr(image, "dtype"):
        return Image.fromarray(image).convert("RGB")
    raise TypeError(f"expected an image path, a PIL image or an array, got {type(image).__name__}")


def png_bytes(image, metadata: dict[str, Any]) -> bytes:
    """PNG bytes carrying ``metadata`` as text chunks (``pwb:<key>``; dicts as JSON)."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in metadata.items():
        if value is None:
            continue
        info.add_text(f"pwb:{key}", value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str))
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def ensure_writable(folder: str | Path) -> Path:
    """Create ``folder`` and prove a file can be written there, before any image is drawn (a read-only
    folder or a full disk found after minutes of drawing loses them). Raises ``OSError`` with the folder
    as its ``filename``."""
    import errno
    import os
    import tempfile

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".pwb-write-probe-", dir=folder)
        try:
            os.write(fd, b"\0" * 4096)  # a full disk refuses data, not always the empty file
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        raise OSError(exc.errno or errno.EIO, exc.strerror or str(exc), str(folder)) from exc
    return folder


def save_content_addressed(image, root: str | Path, metadata: dict[str, Any]) -> tuple[Path, str]:
    """Save under ``root/<sha[:2]>/<sha>.png`` where ``sha`` is the SHA-256 of the PNG bytes.

    The same pixels and metadata give the same file; an existing file is never rewritten.
    """
    data = png_bytes(image, metadata)
    sha = hashlib.sha256(data).hexdigest()
    path = Path(root) / sha[:2] / f"{sha}.png"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path, sha


def read_provenance(path: str | Path) -> dict[str, Any]:
    """The ``pwb:*`` metadata of a saved image (JSON values decoded)."""
    from PIL import Image

    with Image.open(path) as im:
        text = dict(getattr(im, "text", {}) or {})
    out: dict[str, Any] = {}
    for key, value in text.items():
        if not key.startswith("pwb:"):
            continue
        try:
            out[key[4:]] = json.loads(value)
        except (json.JSONDecodeError, TypeError):
            out[key[4:]] = value
    return out


def resolve_image_path(path: str | None, db_path: str | Path | None = None) -> str | None:
    """A stored image path made usable: absolute as is; relative against the workspace file's folder,
    then the current directory (``pwb generate`` stores paths as given). ``None`` when the file is gone."""
    if not path:
        return None
    p = Path(path)
    if p.is_absolute():
        return str(p) if p.is_file() else None
    candidates = []
    if db_path is not None and str(db_path) != ":memory:":
        candidates.append(Path(db_path).resolve().parent / p)
    candidates.append(Path.cwd() / p)
    return next((str(c) for c in candidates if c.is_file()), None)
