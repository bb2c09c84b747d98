"""Any image size for the flow: pad to the model's size multiple, and run large images in tiles.

Why tiles are seamless: the noise of an image is fixed by its *latent* ``z`` (B, C, H/8, W/8), which is
drawn once for the whole (padded) image, and by its per-image mixture weights. Each tile decodes its slice
of that one latent together with a margin of context on every side, and only the tile's core (the part
away from the margin) is kept. Cores partition the image, so every output pixel comes from exactly one
decode that saw at least ``overlap`` pixels of context around it; nothing is averaged, so the noise
variance does not dip where tiles meet (blending two independent noise fields would). Encoding (for NAS) is
tiled the same way: the latents of the cores are stitched into one ``z`` for the whole image, so the NAS
posterior is computed once per image, as if untiled.

This module is the geometry (padding, tile boxes, stitching); the sampling path runs the model on the
tiles (`naflow_aug.flow.nas.CleanBatch`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

DEFAULT_TILE_SIZE = 512
DEFAULT_OVERLAP = 32


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad (B, C, H, W) bottom and right to multiples of ``multiple``; returns (padded, (H, W))."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x, (h, w)
    # reflect needs the pad to be smaller than the side; tiny images fall back to edge replication
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode), (h, w)


def crop_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Undo :func:`pad_to_multiple`."""
    return x[..., : size[0], : size[1]]


@dataclass(frozen=True)
class Tile:
    """Pixel boxes (y0, y1, x0, x1): ``outer`` is what the model sees, ``core`` what is kept."""

    outer: tuple[int, int, int, int]
    core: tuple[int, int, int, int]


def _splits(size: int, core: int, multiple: int) -> list[tuple[int, int]]:
    units = size // multiple
    n = max(1, math.ceil(size / core))
    edges = [round(i * units / n) * multiple for i in range(n + 1)]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


def check_tiling(tile_size: int | None, overlap: int, multiple: int) -> int:
    """Validate tiling settings (at construction, not deep in a call); returns the core size (0: untiled).

    ``tile_size``: None (never tile) or an int whose tiles keep a core after ``overlap`` (an int >= 0)
    pixels of context on each side, both rounded to ``multiple``.
    """
    if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0:
        raise ValueError(f"overlap must be an integer >= 0 pixels, got {overlap!r}")
    if tile_size is None:
        return 0
    if isinstance(tile_size, bool) or not isinstance(tile_size, int) or tile_size < 1:
        raise ValueError(f"tile_size must be None or a positive integer, got {tile_size!r}")
    rounded = math.ceil(overlap / multiple) * multiple
    core = tile_size // multiple * multiple - 2 * rounded
    if core < multiple:
        raise ValueError(
            f"tile_size {tile_size} leaves no core after an overlap of {rounded} on each side "
            f"(need tile_size >= 2*overlap + {multiple}, overlap rounded up to a multiple of {multiple})"
        )
    return core


def make_tiles(height: int, width: int, multiple: int, tile_size: int | None, overlap: int) -> list[Tile]:
    """Tiles covering a (height, width) image whose sides are multiples of ``multiple``.

    ``tile_size=None`` or an image that fits gives one tile. Otherwise cores are at most
    ``tile_size - 2*overlap`` pixels, all boxes aligned to ``multiple``, outer boxes at most ``tile_size``.
    """
    if height % multiple or width % multiple:
        raise ValueError(f"image size {height}x{width} is not a multiple of {multiple}; pad it first")
    core = check_tiling(tile_size, overlap, multiple)
    if tile_size is None or (height <= tile_size and width <= tile_size):
        return [Tile((0, height, 0, width), (0, height, 0, width))]
    overlap = math.ceil(overlap / multiple) * multiple
    tiles = []
    for y0, y1 in _splits(height, core, multiple):
        for x0, x1 in _splits(width, core, multiple):
            outer = (
                max(0, y0 - overlap),
                min(height, y1 + overlap),
                max(0, x0 - overlap),
                min(width, x1 + overlap),
            )
            tiles.append(Tile(outer, (y0, y1, x0, x1)))
    return tiles


def run_tiled(
    fn: Callable[[tuple[int, int, int, int]], torch.Tensor],
    tiles: list[Tile],
    out_size: tuple[int, int],
    scale: int,
) -> torch.Tensor:
    """Stitch the core of ``fn(outer box)`` of every tile; ``scale`` = image pixels per output element."""
    out = None
    for tile in tiles:
        oy0, _, ox0, _ = tile.outer
        cy0, cy1, cx0, cx1 = tile.core
        result = fn(tile.outer)
        if out is None:
            out = result.new_empty((*result.shape[:-2], *out_size))
        out[..., cy0 // scale : cy1 // scale, cx0 // scale : cx1 // scale] = result[
            ..., (cy0 - oy0) // scale : (cy1 - oy0) // scale, (cx0 - ox0) // scale : (cx1 - ox0) // scale
        ]
    assert out is not None
    return out
