"""SIDD-Medium sRGB reader: a lazy folder scan, a paired-crop Dataset, a class-balanced sampler.

Layout (SIDD-Medium sRGB as its authors distribute it)::

    <root>/Data/<inst>_<scene>_<phone>_<ISO>_<shutter>_<temperature>_<L|N|H>/
        <inst>_GT_SRGB_010.PNG   <inst>_NOISY_SRGB_010.PNG   (and optionally the _011 pair)

A camera configuration ("class") is ``<phone>_<ISO>``, e.g. ``S6_01600``. Images may have any size.
The scan yields :class:`naflow_aug.data.pairs.Pair` records with their SIDD metadata; splits by scene
instance are :func:`naflow_aug.data.pairs.split_pairs`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler
from tqdm.auto import tqdm

from naflow_aug.data.cache import ImageCache, find_cache
from naflow_aug.data.images import image_size, load_uint8, read_crop
from naflow_aug.data.pairs import Pair, SiddMeta, load_split, select_instances
from naflow_aug.images import to_float

__all__ = [
    "ClassBalancedSampler",
    "PairedCropDataset",
    "SiddMediumDataset",
    "SiddPair",
    "load_split",
    "parse_instance_folder",
    "random_paired_crop",
    "scan_sidd_medium",
]

log = logging.getLogger(__name__)

FOLDER_RE = re.compile(
    r"^(?P<instance>\d+)_(?P<scene>\d+)_(?P<phone>[A-Za-z0-9]+)_(?P<iso>\d+)_(?P<shutter>\d+)"
    r"_(?P<temperature>\d+)_(?P<brightness>[LNH])$"
)
FILE_RE = re.compile(r"^(?P<instance>\d+)_(?P<kind>GT|NOISY)_SRGB_(?P<shot>\d+)\.png$", re.IGNORECASE)


SiddPair = Pair  # the name of a SIDD pair before every source yielded one record (kept for imports)


def parse_instance_folder(name: str) -> dict[str, Any]:
    """Metadata of a folder name ``<inst>_<scene>_<phone>_<ISO>_<shutter>_<temp>_<L|N|H>``.

    Returns a dict with instance, scene, phone, iso, shutter, temperature, brightness and cls.
    """
    m = FOLDER_RE.match(name)
    if m is None:
        raise ValueError(
            f"folder name {name!r} does not follow the SIDD-Medium rule "
            "'<inst>_<scene>_<phone>_<ISO>_<shutter>_<temperature>_<L|N|H>' "
            "(e.g. 0052_002_S6_01600_01000_5500_N)"
        )
    g = m.groupdict()
    return {
        "instance": g["instance"],
        "scene": g["scene"],
        "phone": g["phone"],
        "iso": int(g["iso"]),
        "shutter": int(g["shutter"]),
        "temperature": int(g["temperature"]),
        "brightness": g["brightness"],
        "cls": f"{g['phone']}_{g['iso']}",
    }


def _data_dir(root: str | os.PathLike) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"SIDD-Medium root {root} is not a directory")
    data = root / "Data"
    return data if data.is_dir() else root


def looks_like_sidd_medium(root: str | os.PathLike) -> bool:
    """Whether a folder (``root`` or ``root/Data``, or a cache of one) holds SIDD-Medium instance folders."""
    cache = find_cache(root)
    if cache is not None:
        return cache.kind == "sidd"
    return any(p.is_dir() and FOLDER_RE.match(p.name) for p in _data_dir(root).iterdir())


def _sidd_pair(
    folder: str, shot: str, clean: Path, noisy: Path, height: int | None, width: int | None
) -> Pair:
    """The pair of one shot of an instance folder, with what the folder's name says."""
    meta = parse_instance_folder(folder)
    sidd = SiddMeta(folder, meta["scene"], meta["phone"], meta["iso"], meta["shutter"], meta["temperature"],
                    meta["brightness"], shot)  # fmt: skip
    return Pair(clean, noisy, meta["cls"], meta["instance"], height, width, sidd)


def _folder_pairs(folder: Path, check_sizes: bool) -> list[Pair]:
    meta = parse_instance_folder(folder.name)
    found: dict[str, dict[str, Path]] = {}
    for f in sorted(folder.iterdir()):
        if f.name.startswith(".") or not f.is_file():
            continue
        m = FILE_RE.match(f.name)
        if m is None:
            if f.suffix.lower() == ".png":
                raise ValueError(
                    f"{f}: PNG name does not follow '<inst>_{{GT,NOISY}}_SRGB_<shot>.PNG' "
                    f"(e.g. {meta['instance']}_NOISY_SRGB_010.PNG)"
                )
            continue  # other files (RAW .MAT, metadata) are not ours
        if m["instance"] != meta["instance"]:
            raise ValueError(
                f"{f}: instance {m['instance']} differs from its folder's instance {meta['instance']}"
            )
        found.setdefault(m["shot"], {})[m["kind"].upper()] = f
    if not found:
        raise ValueError(f"{folder}: no <inst>_GT_SRGB_*.PNG / <inst>_NOISY_SRGB_*.PNG pair in this folder")
    pairs = []
    for shot, kinds in sorted(found.items()):
        for have, missing in (("GT", "NOISY"), ("NOISY", "GT")):
            if missing not in kinds:
                partner = kinds[have].name.replace(f"_{have}_", f"_{missing}_", 1)
                raise ValueError(f"{kinds[have]}: its {missing} partner {partner} is missing")
        h = w = None
        if check_sizes:
            hc, wc = image_size(kinds["GT"])
            hn, wn = image_size(kinds["NOISY"])
            if (hc, wc) != (hn, wn):
                raise ValueError(
                    f"{kinds['NOISY']}: size {hn}x{wn} differs from its GT {kinds['GT'].name} size {hc}x{wc}"
                )
            h, w = hc, wc
        pairs.append(_sidd_pair(folder.name, shot, kinds["GT"], kinds["NOISY"], h, w))
    return pairs


def scan_sidd_medium(
    root: str | os.PathLike, *, check_sizes: bool = True, progress: bool = False
) -> Iterator[Pair]:
    """Lazily yield the pairs of a SIDD-Medium folder (``root`` or ``root/Data``), folder by folder.

    Hidden entries and plain files at the top are skipped; any other folder must follow the naming rule.
    With ``check_sizes`` the PNG headers are read (not the pixels) to check that GT and NOISY agree.
    A cache of a SIDD-Medium folder (``naflow-aug prepare``) gives the same pairs, in the same order,
    with paths to its arrays and the sizes filled in.
    """
    cache = find_cache(root)
    if cache is not None:
        yield from cached_sidd_pairs(cache)
        return
    data = _data_dir(root)
    folders = sorted(p for p in data.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise ValueError(
            f"{data}: no scene-instance folders found (expected SIDD-Medium 'Data/<inst>_...' folders)"
        )
    for folder in tqdm(folders, desc=f"scan {data.name}", unit="folder", disable=not progress, leave=False):
        yield from _folder_pairs(folder, check_sizes)


def cached_sidd_pairs(cache: ImageCache) -> list[Pair]:
    """The pairs of a cache of a SIDD-Medium folder, reading its arrays."""
    if cache.kind != "sidd":
        raise ValueError(f"{cache.root}: a cache of a {cache.kind} folder, not of a SIDD-Medium folder")
    return [_sidd_pair(it.meta["folder"], it.meta["shot"], cache.path(it.clean), cache.path(it.noisy),
                       it.height, it.width) for it in cache.items]  # fmt: skip


# ------------------------------------------------------------------------------------------- crops


def crop_hw(crop_size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if crop_size is None:
        return None
    if isinstance(crop_size, int) and not isinstance(crop_size, bool):
        hw = (crop_size, crop_size)
    elif (
        isinstance(crop_size, Sequence) and len(crop_size) == 2 and all(isinstance(v, int) for v in crop_size)
    ):
        hw = (int(crop_size[0]), int(crop_size[1]))
    else:
        raise TypeError(f"crop_size must be None, an int or (height, width), got {crop_size!r}")
    if min(hw) < 1:
        raise ValueError(f"crop_size must be positive, got {crop_size!r}")
    return hw


def random_window(
    h: int, w: int, ch: int, cw: int, generator: torch.Generator | None, name: str
) -> tuple[int, int]:
    """(top, left) of a random ch x cw window of an h x w image, drawn from ``generator`` (top first)."""
    if ch > h or cw > w:
        raise ValueError(f"{name}: crop {ch}x{cw} is larger than the image ({h}x{w})")
    top = int(torch.randint(0, h - ch + 1, (1,), generator=generator))
    left = int(torch.randint(0, w - cw + 1, (1,), generator=generator))
    return top, left


def _draw_orientation(ch: int, cw: int, generator: torch.Generator | None) -> tuple[list[int], int]:
    """(dims to flip, quarter turns): odd turns only for square crops, so the output shape is fixed."""
    flips = torch.randint(0, 2, (2,), generator=generator).tolist()
    k = int(torch.randint(0, 4 if ch == cw else 2, (1,), generator=generator)) * (1 if ch == cw else 2)
    return [d for d, f in zip((-1, -2), flips, strict=True) if f], k


def _orient(x: torch.Tensor, dims: list[int], k: int) -> torch.Tensor:
    if dims:
        x = x.flip(dims)
    return torch.rot90(x, k, (-2, -1)) if k else x


def random_paired_crop(
    clean: torch.Tensor,
    noisy: torch.Tensor,
    crop_size: int | Sequence[int] | None,
    *,
    augment: bool = True,
    generator: torch.Generator | None = None,
    name: str = "image",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random crop, flips and 90-degree rotation on both (C, H, W) tensors.

    Draws (top, left, hflip, vflip, k) from ``generator`` (torch's default one when None). Rotations by
    an odd multiple of 90 degrees are used only when the output is square, so the output shape is fixed.
    """
    if clean.shape != noisy.shape:
        raise ValueError(f"{name}: clean {tuple(clean.shape)} and noisy {tuple(noisy.shape)} differ in size")
    h, w = clean.shape[-2:]
    ch, cw = crop_hw(crop_size) or (h, w)
    top, left = random_window(h, w, ch, cw, generator, name)
    clean = clean[..., top : top + ch, left : left + cw]
    noisy = noisy[..., top : top + ch, left : left + cw]
    if augment:
        dims, k = _draw_orientation(ch, cw, generator)
        clean, noisy = _orient(clean, dims, k), _orient(noisy, dims, k)
    return clean.contiguous(), noisy.contiguous()


def _unit_float(hwc: np.ndarray, dims: list[int], k: int) -> torch.Tensor:
    """(3, h, w) float32 in [0, 1] of a uint8 (h, w, 3) view after :func:`_orient`'s flips and turns.

    One pass over the pixels (the flips, turns and transpose are views): the same values as
    ``naflow_aug.images.to_float(_orient(torch chw, dims, k))``.
    """
    view = np.flip(hwc, [1 if d == -1 else 0 for d in dims]) if dims else hwc
    if k:
        view = np.rot90(view, k, (0, 1))
    return torch.from_numpy(np.divide(view.transpose(2, 0, 1), np.float32(255.0), dtype=np.float32))


def _read_paired_window(
    it: Any, crop_size: tuple[int, int] | None, augment: bool, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`random_paired_crop` of a pair's files with the same draws, reading only the window;
    returns (3, h, w) float32 in [0, 1]. Cache arrays are memory-mapped, so only the window's pages
    are read; other files are decoded whole."""
    name = str(it.noisy_path)
    h, w = getattr(it, "height", None), getattr(it, "width", None)
    if h is None or w is None:
        (h, w), (hn, wn) = image_size(it.clean_path), image_size(it.noisy_path)
        if (h, w) != (hn, wn):
            raise ValueError(f"{name}: size {hn}x{wn} differs from its clean image {it.clean_path} ({h}x{w})")
    ch, cw = crop_size or (h, w)
    top, left = random_window(h, w, ch, cw, generator, name)
    dims, k = _draw_orientation(ch, cw, generator) if augment else ([], 0)
    clean, noisy = (read_crop(path, top, left, ch, cw) for path in (it.clean_path, it.noisy_path))
    return _unit_float(clean, dims, k), _unit_float(noisy, dims, k)


class PairedCropDataset(Dataset):
    """(clean, noisy) image pairs with class labels -> random paired crops.

    ``items``: records with attributes ``clean_path``, ``noisy_path``, ``cls``, ``instance`` and optionally
    ``height``/``width`` (checked against the crop at construction). ``classes`` fixes the label order
    (e.g. a model's ``model.classes``); by default the sorted classes present. Each item is a dict:
    ``clean``, ``noisy`` (3, h, w) float32 in [0, 1], ``label`` (int class id), ``cls``, ``instance``,
    ``path`` (the noisy file). Randomness comes from ``generator`` or torch's default generator (which
    DataLoader seeds per worker; a passed generator is copied into every worker as it is).
    """

    def __init__(
        self,
        items: Sequence[Any],
        *,
        crop_size: int | Sequence[int] | None = None,
        classes: Sequence[str] | None = None,
        augment: bool = True,
        preload: bool = False,
        generator: torch.Generator | None = None,
        progress: bool = False,
    ) -> None:
        self.items = list(items)
        if not self.items:
            raise ValueError("no image pairs to read (empty selection)")
        self.crop_size = crop_hw(crop_size)
        present = sorted({it.cls for it in self.items})
        if classes is None:
            self.classes = present
        else:
            self.classes = [str(c) for c in classes]
            if len(set(self.classes)) != len(self.classes):
                raise ValueError(f"classes contains duplicates: {self.classes}")
            for it in self.items:
                if it.cls not in self.classes:
                    raise ValueError(
                        f"{it.noisy_path}: class {it.cls!r} is not in the given classes {self.classes}"
                    )
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.labels = [self.class_to_idx[it.cls] for it in self.items]
        self.augment = augment
        self.generator = generator
        if self.crop_size is not None:
            for it in self.items:
                h, w = getattr(it, "height", None), getattr(it, "width", None)
                if h is not None and w is not None and (self.crop_size[0] > h or self.crop_size[1] > w):
                    raise ValueError(
                        f"{it.noisy_path}: crop {self.crop_size[0]}x{self.crop_size[1]} is larger than "
                        f"the image ({h}x{w})"
                    )
        self._cache: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        if preload:
            self._cache = [
                self._read(it)
                for it in tqdm(self.items, desc="preload", unit="pair", disable=not progress, leave=False)
            ]

    @staticmethod
    def _read(it: Any) -> tuple[torch.Tensor, torch.Tensor]:
        clean, noisy = load_uint8(it.clean_path), load_uint8(it.noisy_path)
        if clean.shape != noisy.shape:
            raise ValueError(
                f"{it.noisy_path}: size {tuple(noisy.shape[1:])} differs from its clean image "
                f"{it.clean_path} size {tuple(clean.shape[1:])}"
            )
        return clean, noisy

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        it = self.items[index]
        if self._cache is not None:
            clean, noisy = random_paired_crop(
                *self._cache[index], self.crop_size, augment=self.augment, generator=self.generator,
                name=str(it.noisy_path),
            )
            clean, noisy = to_float(clean), to_float(noisy)
        else:
            clean, noisy = _read_paired_window(it, self.crop_size, self.augment, self.generator)
        return {
            "clean": clean,
            "noisy": noisy,
            "label": self.labels[index],
            "cls": it.cls,
            "instance": it.instance,
            "path": str(it.noisy_path),
        }

    def class_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(self.classes, 0)
        for it in self.items:
            counts[it.cls] += 1
        return counts

    def balanced_sampler(
        self, num_samples: int | None = None, generator: torch.Generator | None = None
    ) -> ClassBalancedSampler:
        """A sampler that draws a class uniformly (among those present), then a pair of it uniformly."""
        return ClassBalancedSampler(self.labels, num_samples=num_samples, generator=generator)


def _match_instances(pairs: Sequence[Pair], wanted: Iterable[str], what: str) -> set[str]:
    """Instance ids for ``wanted`` names (4-digit ids or full folder names); unknown names raise."""
    wanted = [str(w) for w in wanted]
    by_id = {p.instance for p in pairs}
    by_folder = {p.sidd.folder: p.instance for p in pairs if p.sidd is not None}
    out, unknown = set(), []
    for w in wanted:
        if w in by_id:
            out.add(w)
        elif w in by_folder:
            out.add(by_folder[w])
        else:
            unknown.append(w)
    if unknown:
        raise ValueError(f"{what}: unknown scene instance(s) {unknown}; the data has {sorted(by_id)}")
    return out


class SiddMediumDataset(PairedCropDataset):
    """SIDD-Medium pairs as random paired crops (see :class:`PairedCropDataset` for the items).

    ``root``: a SIDD-Medium folder, or a cache of one (``naflow-aug prepare``): the same pairs and, for
    the same random draws, the same crops, each read from its window of the memory-mapped arrays.

    Selection: ``include_classes`` keeps only those classes (each must exist in the data);
    ``instances`` keeps only those scene instances and ``exclude_instances`` drops some (ids like
    ``"0052"`` or full folder names; each must exist). ``pairs`` replaces the scan (e.g. a cached list).
    """

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        *,
        crop_size: int | Sequence[int] | None = None,
        classes: Sequence[str] | None = None,
        include_classes: Sequence[str] | None = None,
        instances: Sequence[str] | None = None,
        exclude_instances: Sequence[str] | None = None,
        augment: bool = True,
        preload: bool = False,
        generator: torch.Generator | None = None,
        progress: bool = False,
        pairs: Sequence[Pair] | None = None,
    ) -> None:
        if pairs is None:
            if root is None:
                raise TypeError("SiddMediumDataset needs a root folder or a list of pairs")
            pairs = list(scan_sidd_medium(root, progress=progress))
        pairs = list(pairs)
        self.root = None if root is None else Path(root)
        if include_classes is not None:
            present = {p.cls for p in pairs}
            unknown = [c for c in include_classes if c not in present]
            if unknown:
                raise ValueError(
                    f"include_classes: unknown class(es) {unknown}; the data has {sorted(present)}"
                )
            keep = set(include_classes)
            pairs = [p for p in pairs if p.cls in keep]
        if instances is not None:
            pairs = select_instances(pairs, _match_instances(pairs, instances, "instances"))
        if exclude_instances is not None:
            drop = _match_instances(pairs, exclude_instances, "exclude_instances")
            pairs = [p for p in pairs if p.instance not in drop]
        self.pairs = pairs
        super().__init__(
            pairs,
            crop_size=crop_size,
            classes=classes,
            augment=augment,
            preload=preload,
            generator=generator,
            progress=progress,
        )


class ClassBalancedSampler(Sampler[int]):
    """Indices drawn so that every class present is equally likely: a class uniformly, then an item of it.

    ``labels``: the class id of each dataset item. Draws ``num_samples`` indices (default: as many as
    items) with replacement from ``generator`` (torch's default generator when None).
    """

    def __init__(
        self, labels: Sequence[int], num_samples: int | None = None, generator: torch.Generator | None = None
    ) -> None:
        labels_t = torch.as_tensor(list(labels), dtype=torch.int64)
        if labels_t.numel() == 0:
            raise ValueError("ClassBalancedSampler needs at least one label")
        self.num_samples = int(labels_t.numel() if num_samples is None else num_samples)
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be positive, got {num_samples!r}")
        self.generator = generator
        self._groups = [torch.nonzero(labels_t == c).flatten() for c in torch.unique(labels_t)]
        self._sizes = torch.tensor([len(g) for g in self._groups])

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        n = self.num_samples
        cls = torch.randint(0, len(self._groups), (n,), generator=self.generator)
        u = torch.rand(n, generator=self.generator)
        within = (u * self._sizes[cls]).long().clamp_max(self._sizes[cls] - 1)
        for c, j in zip(cls.tolist(), within.tolist(), strict=True):
            yield int(self._groups[c][j])
