"""PNG (and other image) I/O at the edges: uint8 HWC arrays on disk <-> (3, H, W) float32 tensors in [0, 1].

The conversions and their rounding are :mod:`naflow_aug.images` (``to_tensor`` and ``to_uint8`` are
re-exported here).

Every reader names the file in its error: a missing file raises ``FileNotFoundError``, an unreadable,
truncated or unsupported one ``ValueError``. Besides image files, the readers take the uint8 (H, W, 3)
``.npy`` arrays of a decoded-image cache (``naflow-aug prepare``, :mod:`naflow_aug.data.cache`): those are
memory-mapped read-only, so a crop reads only the pages it covers.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from naflow_aug.images import to_tensor, to_uint8
from naflow_aug.runs import atomic_write_bytes

__all__ = [
    "IMAGE_SUFFIXES",
    "image_size",
    "is_array_file",
    "load_image",
    "load_uint8",
    "read_crop",
    "read_image",
    "to_tensor",
    "to_uint8",
    "write_png",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
_HIGH_DEPTH_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
_READ_ERRORS = (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError)
ARRAY_SUFFIX = ".npy"  # a decoded image of a cache: uint8 (H, W, 3), C order


def is_array_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a decoded cache array (``.npy``) rather than an encoded image file."""
    return str(path).lower().endswith(ARRAY_SUFFIX)


def _open_array(path: Path) -> np.ndarray:
    """A cache array, memory-mapped read-only (pages are read on first touch and stay file-backed)."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable .npy array ({type(e).__name__}: {e})") from e
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"{path}: expected a uint8 (H, W, 3) array, got {arr.dtype} {arr.shape}")
    return arr


def _check_exists(path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) of an image file from its header (does not decode the pixels)."""
    path = Path(path)
    _check_exists(path)
    if is_array_file(path):
        h, w, _ = array_shape(path)
        return h, w
    try:
        with _opened(path) as im:
            w, h = im.size
    except _READ_ERRORS + (Image.DecompressionBombWarning,) as e:
        raise ValueError(f"{path}: not a readable image ({type(e).__name__}: {e})") from e
    return h, w


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[Image.Image]:
    """Image.open refusing what read_image refuses: over PIL's pixel limit (``Image.MAX_IMAGE_PIXELS``,
    ~89 Mpx) is an error already when only the header is read, so a job that plans from image sizes
    fails before it writes its plan, not when it reaches the pixels."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as im:
            yield im


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an 8-bit image file as an RGB uint8 array (H, W, 3). Grey, palette and alpha are converted.

    A cache array (``.npy``) comes back memory-mapped and read-only: slice it, copy what you keep.
    """
    path = Path(path)
    _check_exists(path)
    if is_array_file(path):
        return _open_array(path)
    try:
        with _opened(path) as im:
            if im.mode in _HIGH_DEPTH_MODES:
                raise ValueError(
                    f"{path}: image mode {im.mode!r} (16-bit/float) is not supported; expected 8-bit"
                )
            im.load()
            rgb = im.convert("RGB")
    except _READ_ERRORS + (Image.DecompressionBombWarning,) as e:
        if isinstance(e, ValueError) and str(e).startswith(str(path)):
            raise
        raise ValueError(f"{path}: not a readable image ({type(e).__name__}: {e})") from e
    arr = np.asarray(rgb, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3:  # pragma: no cover - convert("RGB") guarantees this
        raise ValueError(f"{path}: expected an RGB image, got array of shape {arr.shape}")
    return arr


# (path, size, mtime) -> (data offset, (H, W, 3)): parsing a .npy header costs more than a whole crop
_ARRAY_HEADERS: dict[tuple[str, int, int], tuple[int, tuple[int, int, int]]] = {}


def _array_layout(f: io.BufferedReader, path: Path) -> tuple[int, tuple[int, int, int]]:
    st = os.fstat(f.fileno())
    key = (str(path), st.st_size, st.st_mtime_ns)
    layout = _ARRAY_HEADERS.get(key)
    if layout is None:
        try:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else (
                np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(f)
        except ValueError as e:
            raise ValueError(f"{path}: not a readable .npy array ({e})") from e
        offset = f.tell()
        if dtype != np.uint8 or fortran or len(shape) != 3 or shape[2] != 3:
            raise ValueError(f"{path}: expected a uint8 (H, W, 3) C-order array, got {dtype} {shape}")
        need = offset + int(np.prod(shape))
        if need != st.st_size:
            raise ValueError(f"{path}: {st.st_size} bytes, a {shape} array needs {need} (truncated?)")
        if len(_ARRAY_HEADERS) > 100_000:
            _ARRAY_HEADERS.clear()
        layout = _ARRAY_HEADERS[key] = (offset, shape)
    return layout


def array_shape(path: str | os.PathLike) -> tuple[int, int, int]:
    """(H, W, 3) of a cache array from its header, checked against the file's size (``ValueError``)."""
    path = Path(path)
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise FileNotFoundError(f"image file not found: {path}") from None
    with f:
        return _array_layout(f, path)[1]


_BUFFERS = threading.local()


def _row_buffer(size: int) -> np.ndarray:
    """A reused per-thread uint8 buffer of ``size`` bytes (a fresh one faults in every page it fills)."""
    buf = getattr(_BUFFERS, "rows", None)
    if buf is None or buf.size < size:
        buf = _BUFFERS.rows = np.empty(max(size, 1 << 20), dtype=np.uint8)
    return buf[:size]


def read_crop(path: str | os.PathLike, top: int, left: int, height: int, width: int) -> np.ndarray:
    """The (height, width, 3) uint8 window at (top, left) of an image file, as a new writable array.

    From a cache array only the window's rows are read, with one ``pread`` into a reused per-thread
    buffer (a fresh memory map of each array costs a page fault per row on first touch, several times
    the copy; the buffer is as large as the largest window's rows, so the resident memory stays
    bounded); an encoded image is decoded whole."""
    path = Path(path)
    if not is_array_file(path):
        image = read_image(path)
        check_window(path, image.shape, top, left, height, width)
        return image[top : top + height, left : left + width].copy()
    try:
        f = open(path, "rb", buffering=0)
    except FileNotFoundError:
        raise FileNotFoundError(f"image file not found: {path}") from None
    with f:
        offset, shape = _array_layout(f, path)
        check_window(path, shape, top, left, height, width)
        row = shape[1] * 3
        rows = _row_buffer(height * row)
        got = os.preadv(f.fileno(), [rows], offset + top * row)
    if got != rows.size:
        raise ValueError(f"{path}: short read ({got} of {rows.size} bytes): truncated while reading?")
    return rows.reshape(height, shape[1], 3)[:, left : left + width].copy()


def check_window(path: Path, shape: tuple[int, ...], top: int, left: int, height: int, width: int) -> None:
    h, w = shape[:2]
    if top < 0 or left < 0 or height < 1 or width < 1 or top + height > h or left + width > w:
        raise ValueError(f"{path}: crop {height}x{width} at ({top}, {left}) does not fit the image ({h}x{w})")


def load_image(path: str | os.PathLike) -> torch.Tensor:
    """Read an image file as a (3, H, W) float32 tensor in [0, 1]."""
    return to_tensor(read_image(path))


def load_uint8(path: str | os.PathLike) -> torch.Tensor:
    """Read an image file as a (3, H, W) uint8 tensor."""
    return torch.from_numpy(np.ascontiguousarray(read_image(path).transpose(2, 0, 1)))


def write_png(path: str | os.PathLike, image: np.ndarray | torch.Tensor) -> Path:
    """Write a uint8 (H, W, 3) array or a (3, H, W) float tensor in [0, 1] as an RGB PNG, atomically."""
    arr = to_uint8(image) if isinstance(image, torch.Tensor) else image
    if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        got = f"{type(arr).__name__} {getattr(arr, 'dtype', '')} {getattr(arr, 'shape', '')}"
        raise TypeError(f"write_png expects uint8 (H, W, 3) or float (3, H, W), got {got}")
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=1)
    return atomic_write_bytes(path, buf.getvalue())
