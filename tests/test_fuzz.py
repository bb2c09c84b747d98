"""Property-based checks (hypothesis) over the public API and the CLI's arguments.

Every call gives a correct output (right shape and dtype, finite, in range) or a clear ValueError/TypeError
(the CLI: exit code 2 and one `error:` line): never NaN, never a silent dtype or size change, never a
stray IndexError/RuntimeError/RecursionError. Tiny models and shapes, derandomized, so CI is
deterministic and the module runs in well under a minute.
"""

from __future__ import annotations

import contextlib
import io
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from naflow_aug import tiling
from naflow_aug.cli import main
from naflow_aug.noise import make_noise_source
from naflow_aug.transforms import NAFlowNoise

CLEAR = (ValueError, TypeError)
FUZZ = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
FLOATS = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
CLASSES = ("A_00100", "B_00800", "C_03200")


@st.composite
def images(draw, multiple: int = 8, valid: bool | None = None):
    """(B, 3, H, W) tensors: mostly valid float images, sometimes with one defect (NaN, out of range,
    wrong size or channels, integer dtype)."""
    b = draw(st.integers(1, 2))
    h, w = (draw(st.integers(1, 3)) * multiple for _ in range(2))
    dtype = draw(st.sampled_from(FLOATS))
    seed = draw(st.integers(0, 2**16))
    x = torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed)).to(dtype)
    defect = "none" if valid else draw(st.sampled_from(["none"] * 4 + ["nan", "range", "size", "channels",
                                                                       "uint8", "dims"]))  # fmt: skip
    if defect == "nan":
        x[0, 0, 0, 0] = float("nan")
    elif defect == "range":
        x = x * 3 - 1
    elif defect == "size":
        x = x[..., : h - 1, :]
    elif defect == "channels":
        x = x[:, :2]
    elif defect == "uint8":
        x = (x.float() * 255).to(torch.uint8)
    elif defect == "dims":
        x = x[0, 0]
    return x


def _good_image(out: torch.Tensor, like: torch.Tensor) -> None:
    assert out.shape == like.shape and out.dtype == like.dtype, (out.shape, out.dtype, like.shape, like.dtype)
    assert bool(torch.isfinite(out).all())
    assert float(out.min()) >= 0 and float(out.max()) <= 1


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "layers"])
def test_sample(tiny_model, fast) -> None:
    @FUZZ
    @given(clean=images(), source=st.sampled_from(["random", "config", "weights", "nas"]),
           seed=st.integers(0, 2**63 - 1), temperature=st.sampled_from([1.0, 0.5, 0.0, float("nan")]))
    def check(clean, source, seed, temperature) -> None:  # fmt: skip
        kwargs: dict = {"seeds": [seed] * (clean.shape[0] if clean.dim() == 4 else 1)}
        if source == "config":
            kwargs["config"] = "B_00800"
        elif source == "weights":
            kwargs["weights"] = torch.tensor([0.2, 0.0, 0.8])
        elif source == "nas":
            kwargs["reference"] = clean
            kwargs["temperature"] = temperature
        try:
            noisy = tiny_model.sample(clean, **kwargs)
        except CLEAR:
            return
        _good_image(noisy, clean)

    tiny_model.fast_sampling = fast
    try:
        check()
    finally:
        tiny_model.fast_sampling = True


@FUZZ
@given(clean=images(), noise=st.floats(0, 0.05), seed=st.integers(0, 2**16))
def test_encode_decode_round_trip(tiny_model, clean, noise, seed) -> None:
    try:
        eps = torch.randn(clean.shape, generator=torch.Generator().manual_seed(seed))
        noisy = clean.float() + noise * eps
        noisy = noisy.clamp(0, 1).to(clean.dtype)
        z, logdet = tiny_model.encode(noisy, clean)
    except CLEAR:
        return
    assert z.dtype == logdet.dtype == clean.dtype and bool(torch.isfinite(z).all())
    back = tiny_model.decode(z, clean)
    assert back.shape == clean.shape and back.dtype == clean.dtype
    tolerance = 1e-3 if clean.dtype in (torch.float32, torch.float64) else 0.1
    assert float((back.float() - noisy.float()).abs().max()) < tolerance


@FUZZ
@given(h=st.integers(1, 3), w=st.integers(1, 3), scale=st.sampled_from([0.0, 1.0, 1e3, 1e30]),
       poison=st.sampled_from([None, float("nan"), float("inf")]),
       temperature=st.sampled_from([1.0, 0.1, 10.0, 0.0, -1.0, float("nan")]),
       top_k=st.sampled_from([None, 1, 2, 3, 0, 4, True]))  # fmt: skip
def test_posterior(tiny_model, h, w, scale, poison, temperature, top_k) -> None:
    g = torch.Generator().manual_seed(h * w)
    z = scale * torch.randn(2, tiny_model.latent_channels, h, w, generator=g)
    if poison is not None:
        z[1, 0, 0, 0] = poison
    try:
        weights = tiny_model.posterior(z, temperature=temperature, top_k=top_k)
    except CLEAR:
        assert poison is not None or not temperature > 0 or top_k in (0, 4, True) or scale == 1e30
        return
    assert weights.shape == (2, tiny_model.num_classes) and bool(torch.isfinite(weights).all())
    assert torch.allclose(weights.sum(1), torch.ones(2))


SPELLINGS = st.one_of(
    st.sampled_from(["random", "nas", "real", "gaussian-per-config", "poisson-gaussian",
                     "albumentations-gauss", "albumentations-iso", "config:A_00100", "config:Z_1", "config:",
                     "weights:1,2,3",
                     "weights:1,2", "weights:A_00100=1", "weights:A_00100=1,A_00100=2", "weights:0,0,0",
                     "weights:nan,1,1", "weights:-1,2,2", "gaussian:5", "gaussian:-1", "gaussian:nan",
                     "gaussian:inf", "gaussian:", "gaussian", "profile:/nonexistent.json", "random:3",
                     "  random  ", "RANDOM", "", ":"]),
    st.text(min_size=0, max_size=12),
)  # fmt: skip


@FUZZ
@given(spec=SPELLINGS, clean=images(valid=True))
def test_noise_spellings(tiny_model, spec, clean) -> None:
    try:
        source = make_noise_source(spec, tiny_model)
    except CLEAR:
        return
    try:
        reference = clean if source.needs_reference else None
        noisy, params = source(clean, reference=reference, seeds=[1] * len(clean))
    except CLEAR:
        return
    _good_image(noisy, clean)
    assert len(params) == len(clean)


@FUZZ
@given(tile=st.one_of(st.none(), st.integers(-8, 80)), overlap=st.integers(-8, 24), clean=images(),
       uint8=st.booleans(), single=st.booleans())  # fmt: skip
def test_transform(tiny_model, tile, overlap, clean, uint8, single) -> None:
    try:
        transform = NAFlowNoise(tiny_model, "random", seed=0, tile_size=tile, overlap=overlap)
    except CLEAR:
        core = None if tile is None else tile // 8 * 8 - 2 * math.ceil(overlap / 8) * 8
        assert overlap < 0 or (tile is not None and (tile < 1 or core < 8))
        return
    x = clean
    if uint8 and clean.is_floating_point() and bool(torch.isfinite(clean).all()):
        x = (clean.float().clamp(0, 1) * 255).round().to(torch.uint8)
    if single and x.dim() == 4:
        x = x[0]
    try:
        out = transform(x)
    except CLEAR:
        return
    assert out.shape == x.shape and out.dtype == x.dtype
    if out.is_floating_point():
        assert bool(torch.isfinite(out).all()) and float(out.min()) >= 0 and float(out.max()) <= 1


@FUZZ
@given(h=st.integers(1, 40), w=st.integers(1, 40), multiple=st.sampled_from([1, 2, 8]),
       tile=st.one_of(st.none(), st.integers(-4, 200)), overlap=st.integers(-4, 64))  # fmt: skip
def test_tiles_partition_the_image(h, w, multiple, tile, overlap) -> None:
    height, width = h * multiple, w * multiple
    try:
        tiles = tiling.make_tiles(height, width, multiple, tile, overlap)
    except CLEAR:
        return
    covered = np.zeros((height, width), int)
    for t in tiles:
        y0, y1, x0, x1 = t.core
        oy0, oy1, ox0, ox1 = t.outer
        assert oy0 <= y0 < y1 <= oy1 and ox0 <= x0 < x1 <= ox1
        assert all(v % multiple == 0 for v in (*t.core, *t.outer))
        if tile is not None and len(tiles) > 1:
            assert oy1 - oy0 <= tile and ox1 - ox0 <= tile
        covered[y0:y1, x0:x1] += 1
    assert (covered == 1).all()


# ----------------------------------------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def cli_files(tiny_checkpoint, tmp_path_factory) -> dict[str, Path]:
    from naflow_aug.data.images import write_png

    root = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    return {
        "root": root,
        "model": tiny_checkpoint,
        "clean": write_png(root / "clean.png", rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)),
        "odd": write_png(root / "odd.png", rng.integers(0, 256, (13, 9, 3), dtype=np.uint8)),
        "big": write_png(root / "big.png", rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)),
        "text": _text(root / "notes.txt"),
    }


def _text(path: Path) -> Path:
    path.write_text("not an image\n")
    return path


def _run_cli(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse's own usage errors
            code = exit_.code if isinstance(exit_.code, int) else 2
    return code, err.getvalue()


def _clear_outcome(code: int, err: str) -> None:
    assert code in (0, 2), (code, err)
    assert "Traceback" not in err
    if code == 2:
        assert "error:" in err.strip().splitlines()[-1], err


FILES = st.sampled_from(["clean", "odd", "big", "text", "missing"])


@FUZZ
@given(images_=st.lists(FILES, min_size=1, max_size=2), noise=SPELLINGS,
       reference=st.lists(FILES, max_size=2),
       seed=st.sampled_from(["0", "7", "-1", "1.5", "nan", str(2**64), "x"]),
       device=st.sampled_from([None, "cpu", "auto", "bogus", "cuda:7", ""]),
       out=st.sampled_from(["new", "file", "under-file"]))  # fmt: skip
def test_cli_sample_arguments(cli_files, images_, noise, reference, seed, device, out) -> None:
    def path(name: str) -> str:
        return str(cli_files.get(name, cli_files["root"] / "missing.png"))

    with tempfile.TemporaryDirectory(dir=cli_files["root"]) as tmp:
        targets = {"new": Path(tmp) / "o", "file": cli_files["text"], "under-file": cli_files["text"] / "o"}
        target = targets[out]
        argv = ["sample", *map(path, images_), "--model", str(cli_files["model"]), f"--noise={noise}",
                f"--seed={seed}", "--out", str(target)]  # fmt: skip
        if reference:
            argv += ["--reference", *map(path, reference)]
        if device is not None:
            argv += [f"--device={device}"]
        _clear_outcome(*_run_cli(argv))


@FUZZ
@given(steps=st.sampled_from(["0", "-5", "1.5", "x"]), data=st.sampled_from(["root", "missing", "text"]),
       config=st.sampled_from([None, "missing", "text", "deep"]), device=st.sampled_from([None, "bogus"]))
def test_cli_train_bad_arguments(cli_files, steps, data, config, device) -> None:  # fmt: skip
    """Always at least one bad value (steps < 1 or not a number): never a training run, never a traceback."""
    with tempfile.TemporaryDirectory(dir=cli_files["root"]) as tmp:
        deep = Path(tmp) / "deep.toml"
        deep.write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
        files = {"root": cli_files["root"], "missing": Path(tmp) / "none", "text": cli_files["text"],
                 "deep": deep}
        argv = ["train", "--preset", "cpu", "--steps", steps, "--data", str(files[data]), "--out",
                str(Path(tmp) / "run"), "--no-progress"]  # fmt: skip
        if config is not None:
            argv += ["--config", str(files[config])]
        if device is not None:
            argv += ["--device", device]
        code, err = _run_cli(argv)
        assert code == 2, err
        _clear_outcome(code, err)


@FUZZ
@given(file=st.sampled_from(["missing", "text", "clean"]), tolerance=st.sampled_from(["-1", "0", "3", "x"]),
       regenerate=st.sampled_from(["-2", "0", "2"]))  # fmt: skip
def test_cli_verify_arguments(cli_files, file, tolerance, regenerate) -> None:
    target = cli_files.get(file, cli_files["root"] / "missing.h5")
    code, err = _run_cli(["verify", str(target), "--tolerance", tolerance, "--regenerate", regenerate])
    assert code in (1, 2), (code, err)  # nothing here is a valid generated file
    assert "Traceback" not in err
