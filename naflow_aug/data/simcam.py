"""A simulated camera: procedural clean scenes -> RAW with real-looking noise -> sRGB, in the SIDD layout.

The embedded default data set (no download): :func:`write_simulated_sidd` renders, for each camera
configuration (``<phone>_<ISO>``), a few scenes through one small camera pipeline and writes them as
``Data/<inst>_<scene>_<phone>_<ISO>_<shutter>_<temp>_<L|N|H>/<inst>_{GT,NOISY}_SRGB_010.PNG``, so
:class:`naflow_aug.data.SiddMediumDataset` reads them back. The pipeline, per image:

1. scene: linear RGB irradiance (gradients, shapes, gratings, checkerboards, smooth texture), an
   illuminant tint (colour temperature) and an exposure (low / normal / high brightness);
2. sensor: the camera's inverse colour matrix and white balance give RAW values, sampled through an
   RGGB Bayer mosaic; noise is signal dependent, variance ``shot * x + read**2`` (Poisson-Gaussian
   approximation), with the configuration's gains (they grow with ISO and differ per phone);
3. ISP: bilinear demosaicking (which spreads each RAW sample's noise over its neighbours: spatially
   correlated sRGB noise), the phone's optional noise-reduction blur, white balance, colour matrix,
   tone curve (gamma + S-curve), 8-bit quantisation. The clean image is the same pipeline without noise.

Everything is deterministic from ``seed`` (own ``torch.Generator``s; no global RNG is touched).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from naflow_aug.data.images import write_png
from naflow_aug.data.sidd import SiddMediumDataset
from naflow_aug.images import round_nearest, to_float
from naflow_aug.metrics import neighbour_correlation

__all__ = [
    "DEFAULT_CAMERAS",
    "CameraConfig",
    "PhoneModel",
    "SimulationResult",
    "make_scene",
    "noise_statistics",
    "render",
    "write_simulated_sidd",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PhoneModel:
    """What differs between phones: sensor gain scale, colour pipeline, tone curve, noise reduction."""

    name: str  # two letters, used in class names: "SA"
    gain_scale: float = 1.0  # multiplies the ISO's shot and read noise (sensor sensitivity)
    wb: tuple[float, float, float] = (2.0, 1.0, 1.6)  # white-balance gains under a 5500 K illuminant
    ccm: tuple[tuple[float, float, float], ...] = ((1.6, -0.4, -0.2), (-0.3, 1.5, -0.2), (0.0, -0.5, 1.5))
    gamma: float = 2.2
    s_curve: float = 0.0  # 0 = pure gamma; > 0 adds contrast around mid grey
    nr_strength: float = 0.0  # 0..1 mix of a 3x3 smoothing after demosaicking (phone noise reduction)

    def __post_init__(self) -> None:
        if len(self.wb) != 3 or len(self.ccm) != 3 or any(len(r) != 3 for r in self.ccm):
            raise ValueError(f"PhoneModel {self.name!r}: wb must have 3 gains and ccm be 3x3")
        if not 0.0 <= self.nr_strength <= 1.0:
            raise ValueError(
                f"PhoneModel {self.name!r}: nr_strength must be in [0, 1], got {self.nr_strength!r}"
            )


# Base RAW noise at ISO 100 (on [0, 1] RAW values): variance = shot * x + read**2; both scale with gain.
_BASE_SHOT = 3.0e-4
_BASE_READ = 1.5e-3


@dataclass(frozen=True)
class CameraConfig:
    """One camera configuration (a class): a phone at an ISO."""

    phone: PhoneModel
    iso: int

    @property
    def name(self) -> str:
        return f"{self.phone.name}_{self.iso:05d}"

    @property
    def gain(self) -> float:
        return self.phone.gain_scale * self.iso / 100.0

    @property
    def shot(self) -> float:
        return _BASE_SHOT * self.gain

    @property
    def read(self) -> float:
        # read noise grows more slowly than the analogue gain (part of it is after the amplifier)
        return _BASE_READ * self.gain**0.75


PHONE_A = PhoneModel("SA", gain_scale=1.0, wb=(2.0, 1.0, 1.6), gamma=2.2, s_curve=0.0, nr_strength=0.0)
PHONE_B = PhoneModel(
    "SB",
    gain_scale=1.6,
    wb=(2.4, 1.0, 1.4),
    ccm=((1.8, -0.6, -0.2), (-0.2, 1.4, -0.2), (0.1, -0.7, 1.6)),
    gamma=2.4,
    s_curve=0.3,
    nr_strength=0.6,
)
DEFAULT_CAMERAS: tuple[CameraConfig, ...] = tuple(
    CameraConfig(p, iso) for p in (PHONE_A, PHONE_B) for iso in (100, 800, 3200)
)

_BRIGHTNESS = {"L": (0.12, 0.3), "N": (0.4, 0.7), "H": (0.8, 1.0)}
_TEMPERATURES = (3200, 4400, 5500)
# Illuminant tint relative to 5500 K (warm light: more red, less blue), applied to the scene.
_TINT = {3200: (1.35, 1.0, 0.65), 4400: (1.15, 1.0, 0.82), 5500: (1.0, 1.0, 1.0)}


# ------------------------------------------------------------------------------------------- scenes


def _rand(g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(shape, generator=g)


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def make_scene(height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """A procedural clean scene, (3, H, W) float32 linear reflectance in [0.02, 1].

    A colour gradient background, 6-12 shapes (rectangles, discs, bands) filled with flat colour, a
    grating, a checkerboard or a smooth random texture, and a slight blur (a lens) on the whole.
    """
    g = generator
    yy, xx = torch.meshgrid(
        torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij"
    )  # fmt: skip
    angle = _uniform(g, 0, 2 * math.pi)
    t = (math.cos(angle) * xx + math.sin(angle) * yy).clamp(0, 1)
    c0, c1 = _rand(g, 3, 1, 1), _rand(g, 3, 1, 1)
    img = c0 * (1 - t) + c1 * t
    n_shapes = int(torch.randint(6, 13, (), generator=g))
    for _ in range(n_shapes):
        kind = int(torch.randint(0, 3, (), generator=g))
        cy, cx = _uniform(g, 0, 1), _uniform(g, 0, 1)
        sy, sx = _uniform(g, 0.08, 0.35), _uniform(g, 0.08, 0.35)
        if kind == 0:
            mask = ((yy - cy).abs() < sy / 2) & ((xx - cx).abs() < sx / 2)
        elif kind == 1:
            mask = ((yy - cy) ** 2 + (xx - cx) ** 2) < (sy / 2) ** 2
        else:
            a = _uniform(g, 0, math.pi)
            mask = ((math.cos(a) * (xx - cx) + math.sin(a) * (yy - cy)).abs() < sy / 6) & (
                ((xx - cx) ** 2 + (yy - cy) ** 2) < sx**2
            )
        fill_kind = int(torch.randint(0, 4, (), generator=g))
        colour = _rand(g, 3, 1, 1)
        if fill_kind == 0:
            fill = colour.expand(3, height, width)
        elif fill_kind == 1:  # grating
            freq, phase, a = _uniform(g, 4, 30), _uniform(g, 0, 2 * math.pi), _uniform(g, 0, math.pi)
            wave = 0.5 + 0.5 * torch.sin(2 * math.pi * freq * (math.cos(a) * xx + math.sin(a) * yy) + phase)
            fill = colour * (0.3 + 0.7 * wave)
        elif fill_kind == 2:  # checkerboard
            cells = int(torch.randint(4, 24, (), generator=g))
            check = ((torch.floor(yy * cells) + torch.floor(xx * cells)) % 2).float()
            fill = colour * (0.35 + 0.65 * check) + (1 - colour) * 0.15 * (1 - check)
        else:  # smooth texture: low-resolution noise, upsampled
            low = _rand(g, 1, 3, max(2, height // 16), max(2, width // 16))
            tex = F.interpolate(low, size=(height, width), mode="bicubic", align_corners=False)[0]
            fill = (colour * 0.6 + 0.4 * tex).clamp(0, 1)
        img = torch.where(mask, fill, img)
    blur = torch.tensor([0.25, 0.5, 0.25])
    k = torch.outer(blur, blur).expand(3, 1, 3, 3)
    img = F.conv2d(F.pad(img[None], (1, 1, 1, 1), mode="replicate"), k, groups=3)[0]
    return img.clamp(0.02, 1.0).contiguous()


# ------------------------------------------------------------------------------------------ pipeline

_RGGB = ((0, 0, 0), (1, 0, 1), (1, 1, 0), (2, 1, 1))  # (channel, row offset, col offset)


def _bayer_masks(h: int, w: int) -> torch.Tensor:
    """(3, H, W) 0/1 masks of the RGGB mosaic."""
    m = torch.zeros(3, h, w)
    for c, dy, dx in _RGGB:
        m[c, dy::2, dx::2] = 1.0
    return m


def _demosaic_bilinear(mosaic: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(H, W) RGGB mosaic -> (3, H, W) by bilinear interpolation (reflect padding)."""
    planes = (mosaic[None] * masks)[None]  # (1, 3, H, W)
    k_rb = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 4
    k_g = torch.tensor([[0.0, 1.0, 0.0], [1.0, 4.0, 1.0], [0.0, 1.0, 0.0]]) / 4
    kernel = torch.stack([k_rb, k_g, k_rb])[:, None]
    return F.conv2d(F.pad(planes, (1, 1, 1, 1), mode="reflect"), kernel, groups=3)[0]


def _tone(x: torch.Tensor, gamma: float, s_curve: float) -> torch.Tensor:
    y = x.clamp(0, 1) ** (1.0 / gamma)
    if s_curve:
        y = y + s_curve * y * (1 - y) * (2 * y - 1)  # S-shaped around 0.5, keeps 0 and 1 fixed
    return y.clamp(0, 1)


def _isp(raw_rgb: torch.Tensor, phone: PhoneModel, wb: torch.Tensor) -> torch.Tensor:
    """Demosaicked camera RGB (3, H, W) -> display sRGB in [0, 1] (not yet quantised)."""
    x = raw_rgb
    if phone.nr_strength:
        box = torch.full((3, 1, 3, 3), 1.0 / 9)
        smooth = F.conv2d(F.pad(x[None], (1, 1, 1, 1), mode="reflect"), box, groups=3)[0]
        x = (1 - phone.nr_strength) * x + phone.nr_strength * smooth
    x = x * wb[:, None, None]
    ccm = torch.tensor(phone.ccm)
    x = torch.einsum("ij,jhw->ihw", ccm, x)
    return _tone(x, phone.gamma, phone.s_curve)


def _quantise(x: torch.Tensor) -> torch.Tensor:
    return to_float(round_nearest(x), x.dtype)


def render(
    scene: torch.Tensor,
    camera: CameraConfig,
    generator: torch.Generator,
    *,
    exposure: float = 0.6,
    temperature: int = 5500,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Photograph a linear scene (3, H, W) (H, W even) with ``camera``: -> (clean, noisy) sRGB, 8-bit levels.

    Both (3, H, W) float32 in [0, 1], multiples of 1/255. The noise draws come from ``generator``.
    """
    if scene.ndim != 3 or scene.shape[0] != 3 or scene.shape[1] % 2 or scene.shape[2] % 2:
        raise ValueError(f"scene must be (3, H, W) with even H and W, got {tuple(scene.shape)}")
    if temperature not in _TINT:
        raise ValueError(f"temperature must be one of {sorted(_TINT)}, got {temperature!r}")
    phone = camera.phone
    tint = torch.tensor(_TINT[temperature])
    # the camera's auto white balance compensates the illuminant's tint
    wb = torch.tensor(phone.wb) / tint
    ccm_inv = torch.linalg.inv(torch.tensor(phone.ccm))
    light = scene * tint[:, None, None] * exposure
    cam = torch.einsum("ij,jhw->ihw", ccm_inv, light) / wb[:, None, None]
    cam = cam.clamp(0, 1)
    h, w = scene.shape[-2:]
    masks = _bayer_masks(h, w)
    mosaic = (cam * masks).sum(0)
    std = torch.sqrt(camera.shot * mosaic + camera.read**2)
    noisy_mosaic = mosaic + std * torch.randn(mosaic.shape, generator=generator)
    clean = _quantise(_isp(_demosaic_bilinear(mosaic, masks), phone, wb))
    noisy = _quantise(_isp(_demosaic_bilinear(noisy_mosaic, masks), phone, wb))
    return clean, noisy


# ------------------------------------------------------------------------------------------- dataset


@dataclass(frozen=True)
class SimulationResult:
    """What :func:`write_simulated_sidd` wrote."""

    root: Path
    classes: list[str]
    folders: list[str] = field(default_factory=list)


def _shutter(iso: int, exposure: float) -> int:
    # exposure ~ ISO * time; a readable, monotone stand-in for SIDD's shutter field (1/x s)
    return max(1, int(round(iso * 0.5 / exposure)))


def write_simulated_sidd(
    out: str | os.PathLike,
    *,
    seed: int = 0,
    cameras: Sequence[CameraConfig] = DEFAULT_CAMERAS,
    scenes_per_config: int = 8,
    size_range: tuple[int, int] = (128, 192),
    shots: int = 1,
    progress: bool = False,
) -> SimulationResult:
    """Write a simulated data set in the SIDD-Medium layout under ``out/Data``. Deterministic from ``seed``.

    Scene ``j`` has the same content for every configuration (as SIDD's scenes are shot by several
    phones); each instance draws its own size (multiples of 8 in ``size_range``), crop of the scene,
    brightness (L/N/H), colour temperature and noise. ``shots`` (1 or 2) pairs per folder share the
    clean image and differ in noise, as SIDD's ``_010``/``_011``.
    """
    lo, hi = size_range
    if lo % 8 or hi % 8 or not 8 <= lo <= hi:
        raise ValueError(f"size_range must be two multiples of 8 with 8 <= low <= high, got {size_range!r}")
    if scenes_per_config < 1 or shots not in (1, 2):
        raise ValueError(f"need scenes_per_config >= 1 and shots in (1, 2), got {scenes_per_config}, {shots}")
    if not cameras:
        raise ValueError("cameras must list at least one CameraConfig")
    names = [c.name for c in cameras]
    if len(set(names)) != len(names):
        raise ValueError(f"camera configurations must have distinct names, got {names}")
    if len(cameras) * scenes_per_config > 9999:
        raise ValueError("at most 9999 instances (4-digit instance ids)")
    out = Path(out)
    data = out / "Data"
    if data.exists() and any(data.iterdir()):
        raise ValueError(f"{data} already exists and is not empty; choose a new --out folder")
    master = torch.Generator().manual_seed(int(seed))
    scene_seeds = torch.randint(0, 2**62, (scenes_per_config,), generator=master).tolist()
    inst_seeds = torch.randint(0, 2**62, (len(cameras), scenes_per_config), generator=master).tolist()
    sizes = list(range(lo, hi + 1, 8))
    folders: list[str] = []
    bar = tqdm(total=len(cameras) * scenes_per_config, desc="simulate", unit="scene", disable=not progress)
    for j in range(scenes_per_config):
        scene = make_scene(hi, hi, torch.Generator().manual_seed(scene_seeds[j]))
        for ci, cam in enumerate(cameras):
            g = torch.Generator().manual_seed(inst_seeds[ci][j])
            h = sizes[int(torch.randint(0, len(sizes), (), generator=g))]
            w = sizes[int(torch.randint(0, len(sizes), (), generator=g))]
            top = int(torch.randint(0, hi - h + 1, (), generator=g)) // 2 * 2
            left = int(torch.randint(0, hi - w + 1, (), generator=g)) // 2 * 2
            level = "LNH"[int(torch.randint(0, 3, (), generator=g))]
            exposure = _uniform(g, *_BRIGHTNESS[level])
            temp = _TEMPERATURES[int(torch.randint(0, len(_TEMPERATURES), (), generator=g))]
            crop = scene[:, top : top + h, left : left + w]
            inst = f"{ci * scenes_per_config + j + 1:04d}"
            name = f"{inst}_{j + 1:03d}_{cam.name}_{_shutter(cam.iso, exposure):05d}_{temp}_{level}"
            for s in range(shots):
                clean, noisy = render(crop, cam, g, exposure=exposure, temperature=temp)
                write_png(data / name / f"{inst}_GT_SRGB_01{s}.PNG", clean)
                write_png(data / name / f"{inst}_NOISY_SRGB_01{s}.PNG", noisy)
            folders.append(name)
            bar.update(1)
    bar.close()
    log.info("wrote %d simulated scene instances (%d classes) to %s", len(folders), len(cameras), data)
    return SimulationResult(root=out, classes=sorted(names), folders=sorted(folders))


def noise_statistics(root: str | os.PathLike, *, progress: bool = False) -> dict[str, dict[str, float]]:
    """Per class of a SIDD-layout folder: pairs, mean noise std (in 8-bit levels) and neighbour correlation.

    ``neighbour_corr`` is the mean correlation of each pixel's noise with its 4 nearest neighbours
    (:func:`naflow_aug.metrics.neighbour_correlation`), averaged over the class's pairs.
    """

    ds = SiddMediumDataset(root, augment=False, progress=progress)
    acc: dict[str, list[tuple[float, float]]] = {c: [] for c in ds.classes}
    for i in tqdm(range(len(ds)), desc="noise stats", unit="pair", disable=not progress, leave=False):
        item = ds[i]
        noise = item["noisy"] - item["clean"]
        corr = float(neighbour_correlation(item["noisy"], item["clean"]))
        acc[item["cls"]].append((255.0 * float(noise.std()), corr))
    return {
        c: {
            "pairs": len(v),
            "noise_std": sum(a for a, _ in v) / len(v),
            "neighbour_corr": sum(b for _, b in v) / len(v),
        }
        for c, v in acc.items()
    }
