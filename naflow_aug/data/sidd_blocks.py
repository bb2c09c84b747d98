"""SIDD sRGB Validation / Benchmark blocks: the .mat files, the exported-PNG folder, and SubmitSrgb.csv.

Formats (as the SIDD authors distribute them):

- ``ValidationNoisyBlocksSrgb.mat`` / ``ValidationGtBlocksSrgb.mat`` / ``BenchmarkNoisyBlocksSrgb.mat``:
  MATLAB v5 files with one uint8 array of shape (40, 32, 256, 256, 3) = [image, block, h, w, c] under
  the key of the file's name.
- The exported-PNG validation folder: ``input/IIII-BBBB.png``, ``groundtruth/IIII-BBBB.png`` and a
  header-less ``validation_label.csv`` of ``<image index>,<scene instance name>``.
- ``SubmitSrgb.csv`` (Kaggle's SIDD benchmark scoring): columns ``ID`` (= image * 32 + block) and
  ``BLOCK`` (base64 of the block's uint8 bytes in HWC order). Float images are quantised by
  :func:`quantize_uint8`: clamp to [0, 1], then round half up of x * 255
  (:func:`naflow_aug.images.round_half_up_exact`).

The 40 images are the same scene instances for validation and benchmark, in the order of :data:`SCENES`.
"""

from __future__ import annotations

import base64
import binascii
import copy
import csv
import logging
import math
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from naflow_aug.images import round_half_up_exact
from naflow_aug.runtime.files import atomic_write_text

log = logging.getLogger(__name__)

NUM_IMAGES = 40
BLOCKS_PER_IMAGE = 32
BLOCK_SIZE = 256

VALIDATION_NOISY_KEY = "ValidationNoisyBlocksSrgb"
VALIDATION_GT_KEY = "ValidationGtBlocksSrgb"
BENCHMARK_NOISY_KEY = "BenchmarkNoisyBlocksSrgb"
KNOWN_KEYS = (VALIDATION_NOISY_KEY, VALIDATION_GT_KEY, BENCHMARK_NOISY_KEY)

# The scene instance of each of the 40 validation / benchmark images, in block order
# (the SIDD validation set's scene list). Image 19 (IP, ISO 1250) is a
# configuration that SIDD-Medium does not have.
SCENES: tuple[str, ...] = (
    "0009_001_S6_00800_00350_3200_L", "0021_001_GP_10000_05000_5500_N", "0024_001_N6_03200_01500_5500_N",
    "0026_001_G4_00400_00160_5500_L", "0031_001_IP_01600_02000_3200_N", "0037_002_GP_06400_03200_3200_L",
    "0041_002_IP_01600_04000_5500_L", "0046_002_G4_00400_00350_3200_L", "0049_002_N6_00800_00800_5500_L",
    "0053_002_S6_03200_02000_5500_N", "0056_003_N6_03200_04000_5500_N", "0058_003_G4_00400_00500_5500_L",
    "0061_003_S6_00800_00500_4400_L", "0067_003_GP_01600_01500_3200_L", "0071_003_IP_02000_04000_5500_L",
    "0074_004_N6_00400_00040_3200_L", "0079_004_G4_00800_00160_3200_N", "0082_004_S6_03200_00500_4400_L",
    "0085_004_GP_06400_02000_4400_N", "0093_004_IP_01250_00250_3200_L", "0095_005_N6_00400_00200_3200_L",
    "0100_005_G4_00800_00400_3200_N", "0103_005_S6_01600_00800_4400_L", "0109_005_GP_10000_08000_4400_N",
    "0112_005_IP_01000_07500_5500_L", "0119_006_N6_00400_00100_3200_L", "0124_006_G4_00800_00350_3200_N",
    "0128_006_S6_03200_01600_4400_L", "0131_006_GP_01600_01250_4400_N", "0141_006_IP_01600_01620_3200_L",
    "0143_007_N6_00800_00800_4400_N", "0148_007_G4_00400_00400_4400_L", "0153_007_S6_03200_03200_5500_L",
    "0158_007_GP_03200_03200_5500_N", "0162_007_IP_01600_01600_3200_L", "0171_008_N6_03200_01600_4400_L",
    "0174_008_G4_00800_00800_4400_N", "0176_008_S6_00400_00100_5500_L", "0183_008_GP_06400_06400_5500_N",
    "0187_008_IP_01600_01600_3200_L",
)  # fmt: skip


def scene_camera(scene: str) -> str:
    """The phone code (3rd field) of a scene instance name, e.g. ``S6``."""
    return _scene_fields(scene)[2]


def scene_class(scene: str) -> str:
    """The camera configuration ``<phone>_<ISO>`` (3rd and 4th fields), e.g. ``S6_00800``."""
    fields = _scene_fields(scene)
    return f"{fields[2]}_{fields[3]}"


def _scene_fields(scene: str) -> list[str]:
    fields = scene.split("_")
    if len(fields) < 4:
        raise ValueError(f"not a SIDD scene instance name (<inst>_<scene>_<phone>_<ISO>_...): {scene!r}")
    return fields


CAMERAS: tuple[str, ...] = tuple(scene_camera(s) for s in SCENES)
CLASSES: tuple[str, ...] = tuple(scene_class(s) for s in SCENES)


# ------------------------------------------------------------------------------------------- .mat files


def read_blocks_mat(
    path: str | os.PathLike, key: str | None = None, *, block_size: int | None = BLOCK_SIZE
) -> np.ndarray:
    """Read a SIDD blocks .mat file -> uint8 (40, 32, S, S, 3) with S = ``block_size`` (256).

    ``key`` defaults to the known key the file holds (the file's own name: ``ValidationNoisyBlocksSrgb``,
    ``ValidationGtBlocksSrgb`` or ``BenchmarkNoisyBlocksSrgb``). ``block_size=None`` accepts any square
    size (tests use tiny blocks). Raises ValueError for a missing key, a wrong shape or dtype, or a file
    that is not a readable MATLAB v5 file.
    """
    import scipy.io

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SIDD blocks file {path} does not exist")
    try:
        contents = scipy.io.loadmat(path)
    except NotImplementedError as err:  # MATLAB v7.3 (HDF5) files
        raise ValueError(f"{path} is a MATLAB v7.3 file; SIDD blocks are MATLAB v5: {err}") from err
    except Exception as err:  # scipy raises ValueError, TypeError, MatReadError... for a corrupt file
        raise ValueError(f"{path} is not a readable MATLAB v5 .mat file: {err}") from err
    arrays = {k: v for k, v in contents.items() if not k.startswith("__")}
    if key is None:
        found = [k for k in KNOWN_KEYS if k in arrays]
        if len(found) != 1:
            raise ValueError(
                f"{path}: expected exactly one of the keys {list(KNOWN_KEYS)}, found {sorted(arrays)}"
            )
        key = found[0]
    elif key not in arrays:
        raise ValueError(f"{path}: key {key!r} not found; the file holds {sorted(arrays)}")
    blocks = np.asarray(arrays[key])
    _check_blocks(blocks, f"{path}[{key!r}]", block_size=block_size)
    return blocks


def _check_blocks(blocks: np.ndarray, where: str, *, block_size: int | None = BLOCK_SIZE) -> None:
    expected = f"(40, 32, {block_size or 'S'}, {block_size or 'S'}, 3) uint8"
    if blocks.dtype != np.uint8:
        raise ValueError(f"{where}: expected {expected}, got dtype {blocks.dtype}")
    if (
        blocks.ndim != 5
        or blocks.shape[:2] != (NUM_IMAGES, BLOCKS_PER_IMAGE)
        or blocks.shape[4] != 3
        or blocks.shape[2] != blocks.shape[3]
        or (block_size is not None and blocks.shape[2] != block_size)
    ):
        raise ValueError(f"{where}: expected shape {expected}, got {blocks.shape}")


def write_blocks_mat(path: str | os.PathLike, blocks: np.ndarray, key: str) -> Path:
    """Write a blocks array as the SIDD .mat layout (for tests and for re-exported sets)."""
    import scipy.io

    _check_blocks(np.asarray(blocks), f"blocks for {key!r}", block_size=None)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {key: np.asarray(blocks)}, do_compression=False)
    return path


# -------------------------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class BlockImage:
    """The blocks of one validation image: ``noisy``/``clean`` uint8 (n_blocks, S, S, 3) HWC."""

    index: int
    scene: str
    blocks: tuple[int, ...]
    noisy: np.ndarray
    clean: np.ndarray | None

    @property
    def camera(self) -> str:
        return scene_camera(self.scene)

    @property
    def config(self) -> str:
        return scene_class(self.scene)


_PNG_NAME = re.compile(r"^(\d{4})-(\d{4})\.png$")


class SiddValidation:
    """SIDD validation blocks from the two .mat files, or from the exported-PNG folder.

    ``source`` is a folder holding ``ValidationNoisyBlocksSrgb.mat`` and ``ValidationGtBlocksSrgb.mat``,
    the path of either .mat file (the other is looked up beside it), or the exported-PNG folder
    (``input/``, ``groundtruth/``, ``validation_label.csv``; a ``validation/`` subfolder is accepted).
    ``images`` / ``blocks`` select a subset (scoring all 1,280 blocks costs minutes on a CPU).
    Iterating yields one :class:`BlockImage` per image; the PNG folder is read lazily, image by image.
    """

    def __init__(
        self,
        source: str | os.PathLike,
        *,
        images: Sequence[int] | None = None,
        blocks: Sequence[int] | None = None,
        block_size: int | None = BLOCK_SIZE,
    ):
        source = Path(source)
        if not source.exists():
            raise FileNotFoundError(f"SIDD validation source {source} does not exist")
        self.source = source
        self.block_size = block_size
        self._noisy: np.ndarray | None = None
        self._clean: np.ndarray | None = None
        self._png_root: Path | None = None
        self.scenes: dict[int, str] = dict(enumerate(SCENES))
        available: list[int]
        if source.is_file() or (source / f"{VALIDATION_NOISY_KEY}.mat").is_file():
            folder = source.parent if source.is_file() else source
            self._noisy = read_blocks_mat(folder / f"{VALIDATION_NOISY_KEY}.mat", VALIDATION_NOISY_KEY,
                                          block_size=block_size)
            self._clean = read_blocks_mat(folder / f"{VALIDATION_GT_KEY}.mat", VALIDATION_GT_KEY,
                                          block_size=block_size)
            available = list(range(NUM_IMAGES))
            available_blocks = list(range(BLOCKS_PER_IMAGE))
        else:
            root = source / "validation" if (source / "validation" / "input").is_dir() else source
            if not (root / "input").is_dir() or not (root / "groundtruth").is_dir():
                raise ValueError(
                    f"{source} is neither a folder with {VALIDATION_NOISY_KEY}.mat / {VALIDATION_GT_KEY}.mat "
                    "nor an exported-PNG validation folder (input/, groundtruth/, validation_label.csv)"
                )
            self._png_root = root
            self._png_index = _index_png_folder(root)
            labels = root / "validation_label.csv"
            if labels.is_file():
                self.scenes.update(read_validation_labels(labels))
            available = sorted(self._png_index)
            available_blocks = sorted({b for bs in self._png_index.values() for b in bs})
        self.images = tuple(available if images is None else _check_subset(images, available, "image"))
        self.blocks = tuple(
            available_blocks if blocks is None else _check_subset(blocks, available_blocks, "block")
        )

    def __len__(self) -> int:
        return len(self.images)

    def subset(
        self, *, images: Sequence[int] | None = None, blocks: Sequence[int] | None = None
    ) -> SiddValidation:
        """The same source restricted to ``images`` / ``blocks`` (shares the loaded arrays)."""
        other = copy.copy(self)
        if images is not None:
            other.images = tuple(_check_subset(images, self.images, "image"))
        if blocks is not None:
            other.blocks = tuple(_check_subset(blocks, self.blocks, "block"))
        return other

    @property
    def num_blocks(self) -> int:
        return len(self.images) * len(self.blocks)

    def __iter__(self) -> Iterator[BlockImage]:
        for i in self.images:
            yield self.image(i)

    def image(self, index: int) -> BlockImage:
        scene = self.scenes.get(index, SCENES[index] if index < NUM_IMAGES else f"unknown_{index}_?_?")
        if self._noisy is not None:
            assert self._clean is not None
            sel = list(self.blocks)
            return BlockImage(index, scene, self.blocks, self._noisy[index, sel], self._clean[index, sel])
        assert self._png_root is not None
        from PIL import Image

        noisy, clean = [], []
        for b in self.blocks:
            name = f"{index:04d}-{b:04d}.png"
            for sub, out in (("input", noisy), ("groundtruth", clean)):
                path = self._png_root / sub / name
                if not path.is_file():
                    raise FileNotFoundError(f"missing validation block {path}")
                with Image.open(path) as im:
                    out.append(np.asarray(im.convert("RGB")))
        return BlockImage(index, scene, self.blocks, np.stack(noisy), np.stack(clean))


def _index_png_folder(root: Path) -> dict[int, set[int]]:
    index: dict[int, set[int]] = {}
    for p in (root / "input").iterdir():
        if m := _PNG_NAME.match(p.name):
            index.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    if not index:
        raise ValueError(f"{root / 'input'} holds no IIII-BBBB.png blocks")
    return index


def _check_subset(chosen: Iterable[int], available: Sequence[int], what: str) -> list[int]:
    chosen = [int(c) for c in chosen]
    missing = sorted(set(chosen) - set(available))
    if missing:
        raise ValueError(f"{what} indices {missing} are not available (available: {list(available)})")
    return chosen


def read_validation_labels(path: str | os.PathLike) -> dict[int, str]:
    """Read the header-less ``validation_label.csv`` (``<image index>,<scene instance name>``)."""
    labels: dict[int, str] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row_number, row in enumerate(csv.reader(f), start=1):
            if not row:
                continue
            if len(row) < 2 or not row[0].strip().isdigit():
                raise ValueError(f"{path}:{row_number}: expected '<image index>,<scene name>', got {row!r}")
            labels[int(row[0])] = row[1].strip()
    return labels


def write_validation_png_folder(
    root: str | os.PathLike, noisy: np.ndarray, clean: np.ndarray, scenes: Sequence[str] = SCENES
) -> Path:
    """Export validation blocks (N, 32, S, S, 3) uint8 as the official PNG folder layout."""
    from PIL import Image

    root = Path(root)
    (root / "input").mkdir(parents=True, exist_ok=True)
    (root / "groundtruth").mkdir(parents=True, exist_ok=True)
    for i in range(noisy.shape[0]):
        for b in range(noisy.shape[1]):
            Image.fromarray(noisy[i, b]).save(root / "input" / f"{i:04d}-{b:04d}.png")
            Image.fromarray(clean[i, b]).save(root / "groundtruth" / f"{i:04d}-{b:04d}.png")
    lines = "".join(f"{i},{scenes[i]}\n" for i in range(noisy.shape[0]))
    (root / "validation_label.csv").write_text(lines, encoding="utf-8")
    return root


# -------------------------------------------------------------------------------------------- submission


def quantize_uint8(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """Float images in [0, 1] -> uint8: clamp to [0, 1], then round half up of x * 255. uint8 passes."""
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    if not np.issubdtype(images.dtype, np.floating):
        raise TypeError(f"expected float images in [0, 1] or uint8, got dtype {images.dtype}")
    return round_half_up_exact(torch.from_numpy(images.astype(np.float64))).to(torch.uint8).numpy()


def write_submission(path: str | os.PathLike, blocks: np.ndarray | torch.Tensor) -> Path:
    """Write ``SubmitSrgb.csv`` from denoised benchmark blocks (40, 32, S, S, 3) (uint8, or float in [0, 1]
    quantised by :func:`quantize_uint8`). Rows ``ID = image * 32 + block``, ``BLOCK`` = base64 of HWC bytes.
    """

    blocks = quantize_uint8(blocks)
    if blocks.ndim != 5 or blocks.shape[4] != 3 or blocks.shape[2] != blocks.shape[3]:
        raise ValueError(f"submission blocks must be (images, blocks, S, S, 3), got {blocks.shape}")
    n_img, n_blk = blocks.shape[:2]
    lines = ["ID,BLOCK"]
    for i in range(n_img):
        for b in range(n_blk):
            data = base64.b64encode(np.ascontiguousarray(blocks[i, b]).tobytes()).decode("ascii")
            lines.append(f"{i * n_blk + b},{data}")
    return atomic_write_text(path, "\n".join(lines) + "\n")


def read_submission(
    path: str | os.PathLike, *, blocks_per_image: int = BLOCKS_PER_IMAGE
) -> np.ndarray:
    """Decode ``SubmitSrgb.csv`` -> uint8 (images, blocks_per_image, S, S, 3); S from the byte count."""
    path = Path(path)
    with open(path, newline="", encoding="ascii") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != ["ID", "BLOCK"]:
            raise ValueError(f"{path}: expected the header ['ID', 'BLOCK'], got {header!r}")
        rows: dict[int, np.ndarray] = {}
        side = None
        for line, row in enumerate(reader, start=2):
            if len(row) != 2 or not row[0].isdigit():
                raise ValueError(f"{path}:{line}: expected '<ID>,<base64 block>', got {str(row)[:80]}")
            try:
                data = base64.b64decode(row[1], validate=True)
            except (binascii.Error, ValueError) as err:
                raise ValueError(f"{path}:{line}: BLOCK is not base64: {err}") from err
            s = math.isqrt(len(data) // 3)
            if s * s * 3 != len(data) or (side is not None and s != side):
                raise ValueError(f"{path}:{line}: {len(data)} bytes is not an S*S*3 block like the others")
            side = s
            rows[int(row[0])] = np.frombuffer(data, dtype=np.uint8).reshape(s, s, 3)
    if not rows:
        raise ValueError(f"{path} holds no blocks")
    n = len(rows)
    if sorted(rows) != list(range(n)) or n % blocks_per_image:
        raise ValueError(f"{path}: IDs must be 0..N-1 with N a multiple of {blocks_per_image}, got {n} rows")
    out = np.stack([rows[i] for i in range(n)])
    return out.reshape(n // blocks_per_image, blocks_per_image, side, side, 3)
