"""Image input/output: the one coercion function (:func:`to_rgb_array`, EXIF rotation applied), loading,
content-addressed saving with provenance in the PNG."""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

ImageLike = Union[str, os.PathLike, "Image.Image", np.ndarray]


def describe_image(image: Any) -> str:
    """A short name for messages: ``'face.png'``, ``<PIL image 512x512 RGB>``, ``<array 512x512x3 uint8>``."""
    if isinstance(image, (str, os.PathLike)):
        return repr(os.fspath(image))
    if isinstance(image, np.ndarray):
        return f"<array {'x'.join(map(str, image.shape))} {image.dtype}>"
    size, mode = getattr(image, "size", None), getattr(image, "mode", None)
    if isinstance(size, tuple) and mode is not None:
        return f"<PIL image {size[0]}x{size[1]} {mode}>"
    return f"<{type(image).__name__}>"


def to_rgb_array(image: ImageLike) -> np.ndarray:
    """A path, PIL image or array as a C-contiguous ``HxWx3`` uint8 RGB array.

    Files are EXIF-transposed (phone photos are stored sideways). Arrays may be ``HxW`` (grey), ``HxWx3`` or
    ``HxWx4`` (alpha dropped), uint8 or float in ``[0, 1]`` (as diffusers' ``output_type="np"`` gives).
    """
    if isinstance(image, (str, os.PathLike)):
        from PIL import Image, ImageOps

        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"image file not found: {os.fspath(image)!r}")
        with Image.open(path) as im:
            return np.ascontiguousarray(np.asarray(ImageOps.exif_transpose(im).convert("RGB")))
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
            raise ValueError(f"image arrays must be HxWx3 (HxW and HxWx4 also work), got shape {arr.shape}")
        if arr.dtype != np.uint8:
            if not np.issubdtype(arr.dtype, np.floating):
                raise ValueError(f"image arrays must be uint8 (or float in [0, 1]), got dtype {arr.dtype}")
            arr = (np.clip(np.nan_to_num(arr), 0.0, 1.0) * 255.0).round().astype(np.uint8)
        if arr.ndim == 2:
            arr = np.stack([arr] * 3, axis=-1)
        return np.ascontiguousarray(arr[:, :, :3])
    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL, without importing it for the check
        return np.ascontiguousarray(np.asarray(image.convert("RGB")))
    raise TypeError(f"unsupported image type {type(image).__name__}: pass a path, PIL image or HxWx3 uint8 array")


def load_image(image: ImageLike):
    """A PIL RGB image from a path (EXIF-rotated), a PIL image or an array (through :func:`to_rgb_array`)."""
    from PIL import Image

    return Image.fromarray(to_rgb_array(image))


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


def save_content_addressed(
    image, root: str | Path, metadata: dict[str, Any], mark: Callable[[bytes, str], bytes] | None = None
) -> tuple[Path, str]:
    """Save under ``root/<sha[:2]>/<sha>.png`` where ``sha`` is the SHA-256 of the PNG bytes before marking
    (the image's content id: the same pixels and metadata give the same name on every run).

    ``mark(png, sha)`` returns the bytes written instead (watermarked and signed: :class:`workbench.provenance.
    Marker`); signatures differ run to run, so an existing file is kept, not rewritten, unless ``mark`` is
    given and the file holds no manifest (an image written before marking, or by an unmarked run).
    """
    data = png_bytes(image, metadata)
    sha = hashlib.sha256(data).hexdigest()
    path = Path(root) / sha[:2] / f"{sha}.png"
    if path.exists() and mark is not None:
        from workbench.provenance import is_signed

        if is_signed(path.read_bytes()):
            return path, sha
    elif path.exists():
        return path, sha
    write_atomic(path, mark(data, sha) if mark is not None else data)
    return path, sha


def save_marked(
    image,
    path: str | Path,
    ids: dict[str, Any],
    *,
    generator: str,
    model: str,
    signing_dir: str | Path,
    metadata: dict[str, Any] | None = None,
    watermark: bool = True,
) -> Path:
    """Write ``image`` to ``path`` as a PNG (``metadata`` as text chunks), signed with C2PA content
    credentials from ``signing_dir``'s identity and, with ``watermark`` and an ``ids["generation_id"]``,
    watermarked (for images the workbench writes outside a workspace's generations: variations, the
    gallery grid)."""
    from workbench.provenance import marker_for

    data = marker_for(signing_dir).mark(
        png_bytes(image, metadata or {}), ids, generator=generator, model=model, watermark=watermark
    )
    return write_atomic(Path(path), data)


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` through a temporary file renamed over it (parent folders made): a reader or
    a kill never sees half a file. The temporary name carries the process id, so two writers never share one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    tmp.replace(path)
    return path


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes (what ``sha256sum`` prints)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
