"""The GPU path, proven in one run (issue 19): every CUDA use of the library, timed and checked.

    python3 benchmarks/gpu_check.py --out DIR [--device cuda] [--quick] [--data SIDD_DIR] [--skip tests]

Run through ``benchmarks/gpu_check.sh`` (it sets up the machine's own Python and torch, installs the
missing wheels, then runs this). Writes ``DIR/gpu_check.json`` (every figure, each section's status and
the issue's targets as pass/fail lines) and ``DIR/gpu_check.log``. Sections, in order of priority (each
one is skipped, saying why, when the time budget ``--budget-s`` is spent; a failing section is recorded
with its error and the others still run):

- ``env``: torch, CUDA, the GPU, TF32 settings, albumentations present or not.
- ``nas_speed``: NAS (`FastNAFlow.sample` with a reference, seeds given) on crops of 160x160 at batch
  1/64/256 in float32 and with bfloat16 autocast, a CUDA graph (`CudaGraphNAS`, eps drawn per call and
  pre-drawn), the CPU draw of eps alone, and the plain batch-1 reference of `bench_nas_speed.py` on the
  same device; a paper-size DnCNN training step (Adam, MSE) on the same batch, and NAS / step.
- ``quality``: KLD / AKLD (naflow_aug.metrics) between float32 and bfloat16 samples of the same crops,
  seeds and weights; for scale, float32 samples against the real noisy crops.
- ``tiled_memory``: the ``nas`` noise source on one 4000x3000 image (tiles of 512): peak GPU memory.
- ``generate``: ``naflow-aug generate --noise nas`` on the CPU, and on the device under
  ``torchrun --nproc_per_node 1``; metadata must be identical, samples within the stated tolerance.
- ``loader``: `NAFlowNoise` on device batches in a DnCNN training loop fed by a DataLoader (workers,
  pinned memory), against the same loop with Gaussian noise; `NAFlowNoiseAlb` in CPU DataLoader
  workers (skipped, saying so, without albumentations). Images/s.
- ``tests``: ``pytest -m device --device DEVICE``: the suite's device-aware tests.
- ``nas_compiled``: `FastNAFlow(compile=True)` at the largest batch (compile time, crops/s, KLD vs fp32).

Data: the crops come from ``--data`` (a SIDD-Medium layout folder) or, by default, from the simulated
camera written on the spot (`naflow_aug.data.write_simulated_sidd`); the JSON says which. Model: the
bundled ``sidd-mini`` (published architecture) unless ``--model``. ``--quick`` uses tiny sizes (a CPU
smoke test of every section; its figures mean nothing).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
log = logging.getLogger("gpu_check")
SECTIONS = ("env", "nas_speed", "quality", "tiled_memory", "generate", "loader", "tests", "nas_compiled")
GIB = 2**30


@dataclass(frozen=True)
class Sizes:
    crop: int
    batches: tuple[int, ...]
    ref_crops: int  # crops the batch-1 reference runs
    dncnn_max_batch: int  # DnCNN steps are timed up to this batch
    quality_crops: int
    loader_images: int
    loader_batch: int
    loader_workers: int
    alb_images: int
    alb_workers: int
    gen_crop: int
    gen_images: int
    tiled_hw: tuple[int, int]
    tile_size: int
    min_seconds: float  # each timing runs at least this long (after one warm-up call)
    sim_scenes: int
    sim_size: tuple[int, int]


FULL = Sizes(
    crop=160,
    batches=(1, 64, 256),
    ref_crops=8,
    dncnn_max_batch=64,
    quality_crops=256,
    loader_images=2048,
    loader_batch=64,
    loader_workers=4,
    alb_images=512,
    alb_workers=8,
    gen_crop=64,
    gen_images=12,
    tiled_hw=(3000, 4000),
    tile_size=512,
    min_seconds=1.0,
    sim_scenes=4,
    sim_size=(176, 256),
)
QUICK = Sizes(
    crop=32,
    batches=(1, 2),
    ref_crops=1,
    dncnn_max_batch=2,
    quality_crops=4,
    loader_images=8,
    loader_batch=4,
    loader_workers=1,
    alb_images=4,
    alb_workers=1,
    gen_crop=32,
    gen_images=2,
    tiled_hw=(128, 192),
    tile_size=128,
    min_seconds=0.0,
    sim_scenes=1,
    sim_size=(64, 96),
)
# stated tolerances of the generate comparison (device vs CPU file)
GEN_WEIGHTS_ATOL = 1e-3  # NAS mixture weights, absolute
GEN_NOISY_MAX_LEVELS = 2  # uint8 levels, any pixel
# fraction of pixels that may differ at all: cuDNN's default TF32 convolutions (Ampere and later) move
# values by about 1e-4, which flips the 8-bit rounding of a few percent of the pixels (an estimate)
GEN_NOISY_DIFF_FRACTION = 0.05


class Check:
    """What the sections share: device, sizes, model, data, output, the time budget, the result."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.device = torch.device(args.device)
        self.cuda = self.device.type == "cuda"
        self.sizes = QUICK if args.quick else FULL
        self.out = Path(args.out)
        self.work = Path(tempfile.mkdtemp(prefix="gpu_check."))
        self.deadline = time.perf_counter() + args.budget_s
        self.result: dict[str, Any] = {
            "device": str(self.device),
            "quick": bool(args.quick),
            "sizes": asdict(self.sizes),
            "sections": {},
            "targets": [],
        }
        self._model = None
        self._data: Path | None = None
        self.seconds = 0.0

    # ---------------------------------------------------------------- shared inputs
    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def timeit(self, fn: Callable[[], Any]) -> float:
        """Seconds per call: one warm-up call, then calls until ``min_seconds`` have passed (>= 2 calls)."""
        fn()
        self.sync()
        n, start = 0, time.perf_counter()
        while n < 2 or time.perf_counter() - start < self.sizes.min_seconds:
            fn()
            n += 1
            if not self.cuda:  # CPU: one timed call is the figure's worth in quick mode
                if self.sizes.min_seconds == 0.0:
                    break
        self.sync()
        return (time.perf_counter() - start) / n

    @property
    def model(self):
        if self._model is None:
            import naflow_aug

            self._model = naflow_aug.load(self.args.model, device=self.device)
        return self._model

    @property
    def data(self) -> Path:
        """A SIDD-Medium layout folder: ``--data`` or the simulated camera, written once."""
        if self._data is None:
            if self.args.data:
                self._data = Path(self.args.data)
                self.result["data"] = f"--data {self._data}"
            else:
                from naflow_aug.data.simcam import write_simulated_sidd

                self._data = self.work / "sim"
                write_simulated_sidd(
                    self._data,
                    seed=0,
                    scenes_per_config=self.sizes.sim_scenes,
                    size_range=self.sizes.sim_size,
                )
                self.result["data"] = (
                    "the simulated camera (naflow_aug.data.write_simulated_sidd, seed 0, "
                    f"{self.sizes.sim_scenes} scenes per configuration, sides {self.sizes.sim_size}), "
                    "made by the script: no real SIDD tiles travel to the GPU machine"
                )
        return self._data

    def crops(self, n: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """n (clean, noisy) float crops (n, 3, size, size) from the data's pairs, cycling over the pairs
        with seeded offsets; on the CPU."""
        from naflow_aug.data.images import load_image
        from naflow_aug.data.sidd import scan_sidd_medium

        pairs = [p for p in scan_sidd_medium(self.data, check_sizes=False)]
        images = []
        for p in pairs:
            c, x = load_image(p.clean_path), load_image(p.noisy_path)
            if min(c.shape[1:]) >= size:
                images.append((c, x))
            if len(images) >= n:
                break
        if not images:
            raise ValueError(f"no pair in {self.data} is at least {size}x{size}")
        g = np.random.default_rng(0)
        cleans, noisies = [], []
        for i in range(n):
            c, x = images[i % len(images)]
            y0, x0 = (int(g.integers(0, s - size + 1)) for s in c.shape[1:])
            cleans.append(c[:, y0 : y0 + size, x0 : x0 + size])
            noisies.append(x[:, y0 : y0 + size, x0 : x0 + size])
        return torch.stack(cleans), torch.stack(noisies)

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def target(self, name: str, value: float | None, op: str, bound: float, note: str = "") -> None:
        ok = None if value is None else (value >= bound if op == ">=" else value <= bound)
        if not self.cuda:
            note = (note + "; " if note else "") + "not the target machine (CPU): figure not meaningful"
        self.result["targets"].append(
            {"name": name, "value": value, "target": f"{op} {bound}", "pass": ok, "note": note}
        )
        log.info(
            "TARGET %s: %s (%s %s) %s",
            name,
            "n/a" if value is None else f"{value:.4g}",
            op,
            bound,
            {True: "PASS", False: "FAIL", None: "NOT MEASURED"}[ok],
        )


# ============================================================================ sections
def section_env(ck: Check) -> dict:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "torch_cuda": torch.version.cuda,
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
    }
    if ck.cuda:
        props = torch.cuda.get_device_properties(ck.device)
        info.update(
            gpu=props.name,
            gpu_memory_gib=round(props.total_memory / GIB, 1),
            capability=f"{props.major}.{props.minor}",
            bf16=torch.cuda.is_bf16_supported(),
        )
    for name in ("albumentations", "torchvision", "h5py", "naflow_aug"):
        try:
            mod = __import__(name)
            info[name] = getattr(mod, "__version__", "present")
        except ImportError as err:
            info[name] = f"missing ({err})"
    import naflow_aug

    info["naflow_aug_path"] = str(Path(naflow_aug.__file__).parent)
    return info


def _nas_inputs(ck: Check, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    clean, noisy = ck.crops(n, ck.sizes.crop)
    return clean.to(ck.device), noisy.to(ck.device), torch.arange(n, dtype=torch.int64) * 7919 + 1


def _graph_rows(ck: Check, c, x, sd, size, fp32_out) -> dict[str, dict]:
    """`CudaGraphNAS` in float32 and with bfloat16 sub-networks: eps drawn on the host per call (the
    randomness contract) and pre-drawn (the device's share alone)."""
    from naflow_aug.flow.fast import CudaGraphNAS, FastNAFlow, draw_item_noise

    if not ck.cuda:
        return {"cudagraph": {"skipped": "CUDA graphs need a CUDA device"}}
    model, b, rows = ck.model, c.shape[0], {}
    for name, autocast in (("cudagraph", None), ("cudagraph_bf16", torch.bfloat16)):
        try:
            graph = CudaGraphNAS(FastNAFlow(model, autocast=autocast), tuple(c.shape))
            eps = draw_item_noise(sd, model.num_classes, size)[1].to(ck.device)
            t_dev = ck.timeit(lambda graph=graph, eps=eps: graph(c, x, eps))

            def with_draw(graph=graph) -> torch.Tensor:
                host = draw_item_noise(sd, model.num_classes, size, pin_memory=True)[1]
                return graph(c, x, host.to(ck.device, non_blocking=True))

            t_all = ck.timeit(with_draw)
            diff = float((graph(c, x, eps) - fp32_out).abs().max())
            rows[name] = {"s_per_batch": t_all, "crops_per_s": b / t_all, "max_diff_vs_fp32": diff}
            rows[f"{name}_eps_predrawn"] = {"s_per_batch": t_dev, "crops_per_s": b / t_dev}
        except Exception as err:  # noqa: BLE001 - recorded, the other variants still count
            rows[name] = {"error": f"{type(err).__name__}: {err}"}
    return rows


def section_nas_speed(ck: Check) -> dict:
    from bench_nas_speed import RefNAFlow, official_state_from_library

    from naflow_aug.denoisers import DnCNN
    from naflow_aug.flow.fast import FastNAFlow, draw_item_noise

    model, s = ck.model, ck.sizes
    m = model.size_multiple
    clean, noisy, seeds = _nas_inputs(ck, max(s.batches))
    modes = {"fp32": FastNAFlow(model), "bf16": FastNAFlow(model, autocast=torch.bfloat16)}
    out: dict[str, Any] = {"crop": s.crop, "batches": {}}
    net = DnCNN.paper().to(ck.device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    for b in s.batches:
        row: dict[str, Any] = {}
        c, x, sd = clean[:b], noisy[:b], seeds[:b]
        first = None
        for name, fast in modes.items():
            t = ck.timeit(lambda fast=fast, c=c, x=x, sd=sd: fast.sample(c, reference=x, seeds=sd))
            y = fast.sample(c, reference=x, seeds=sd)
            first = y if first is None else first
            row[name] = {
                "s_per_batch": t,
                "crops_per_s": b / t,
                "max_diff_vs_fp32": float((y - first).abs().max()),
            }
        size = (model.latent_channels, s.crop // m, s.crop // m)
        t_eps = ck.timeit(
            lambda sd=sd, size=size: draw_item_noise(sd, model.num_classes, size)[1].to(ck.device)
        )
        row["eps_draw_cpu"] = {"s_per_batch": t_eps, "fraction_of_fp32": t_eps / row["fp32"]["s_per_batch"]}
        row.update(_graph_rows(ck, c, x, sd, size, first))
        if b <= s.dncnn_max_batch:

            def step(c=c, x=x) -> None:
                opt.zero_grad(set_to_none=True)
                F.mse_loss(net(x), c).backward()
                opt.step()

            t_step = ck.timeit(step)
            row["dncnn_paper_step"] = {"s_per_batch": t_step}
            for name in (*modes, "cudagraph", "cudagraph_bf16"):
                if "s_per_batch" in row.get(name, {}):
                    row[name]["fraction_of_dncnn_step"] = row[name]["s_per_batch"] / t_step
        out["batches"][str(b)] = row
        log.info("NAS batch %d: %s", b, json.dumps(row))
    # the plain batch-1 reference (bench_nas_speed.py), same weights, same device
    ref = RefNAFlow(model.classes)
    ref.load_state_dict(official_state_from_library(model), strict=True)
    ref.to(ck.device).eval().requires_grad_(False)
    n_ref = s.ref_crops

    def run_ref() -> None:
        with torch.no_grad():
            for i in range(n_ref):
                ref.nas(clean[i : i + 1], noisy[i : i + 1], int(seeds[i]))

    t_ref = ck.timeit(run_ref) / n_ref
    with torch.no_grad():
        diff = float(
            (
                ref.nas(clean[:1], noisy[:1], int(seeds[0]))
                - modes["fp32"].sample(clean[:1], reference=noisy[:1], seeds=seeds[:1])
            )
            .abs()
            .max()
        )
    out["reference_batch1"] = {"s_per_crop": t_ref, "crops_per_s": 1 / t_ref, "max_diff_vs_fast": diff}
    for row in out["batches"].values():
        for name in ("fp32", "bf16", "cudagraph", "cudagraph_bf16"):
            if "crops_per_s" in row.get(name, {}):
                row[name]["speedup_vs_reference"] = row[name]["crops_per_s"] * t_ref
    best = {
        name: max((r.get(name, {}).get("crops_per_s", 0.0) for r in out["batches"].values()), default=0.0)
        for name in ("fp32", "bf16", "cudagraph", "cudagraph_bf16")
    }
    out["best_crops_per_s"] = best
    bf16_best = max(best["bf16"], best["cudagraph_bf16"])
    ck.target(
        f"NAS bf16 crops/s at {s.crop}x{s.crop} (best batch; best of FastNAFlow.sample and CudaGraphNAS, "
        "eps drawn on the host per call)",
        bf16_best,
        ">=",
        5000.0,
        note=f"eager {best['bf16']:.0f}, CUDA graph {best['cudagraph_bf16']:.0f}",
    )
    fb = str(min(s.dncnn_max_batch, max(s.batches)))
    fracs = [out["batches"][fb].get(n, {}).get("fraction_of_dncnn_step") for n in ("bf16", "cudagraph_bf16")]
    frac = min((f for f in fracs if f is not None), default=None)
    ck.target(f"NAS bf16 / paper DnCNN training step, batch {fb} (eager or CUDA graph)", frac, "<=", 0.25)
    return out


def section_quality(ck: Check) -> dict:
    from naflow_aug import metrics
    from naflow_aug.flow.fast import FastNAFlow

    n = ck.sizes.quality_crops
    clean, noisy, seeds = _nas_inputs(ck, n)
    fp32, params = FastNAFlow(ck.model).sample(clean, reference=noisy, seeds=seeds, return_params=True)
    bf16 = FastNAFlow(ck.model, autocast=torch.bfloat16).sample(clean, weights=params.weights, seeds=seeds)
    bf16_nas = FastNAFlow(ck.model, autocast=torch.bfloat16).sample(clean, reference=noisy, seeds=seeds)

    def pair(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
        a, b, c = a.double(), b.double(), clean.double()  # metrics are batched torch: on the device
        return {
            "kld": float(metrics.kld(a, b, c).mean()),
            "akld": float(metrics.akld(a, b, c).mean()),
            "max_abs_diff": float((a - b).abs().max()),
        }

    out = {
        "crops": n,
        "crop": ck.sizes.crop,
        "bf16_vs_fp32_same_weights": pair(fp32, bf16),
        "bf16_nas_vs_fp32_nas": pair(fp32, bf16_nas),
        "fp32_vs_real_noisy": pair(noisy, fp32),
        "weights_max_diff_bf16_nas": float(
            (
                params.weights.cpu()
                - FastNAFlow(ck.model, autocast=torch.bfloat16)
                .sample(clean, reference=noisy, seeds=seeds, return_params=True)[1]
                .weights.cpu()
            )
            .abs()
            .max()
        ),
    }
    ck.target(
        "KLD(bf16 vs fp32 samples), same seeds and weights",
        out["bf16_vs_fp32_same_weights"]["kld"],
        "<=",
        0.005,
    )
    return out


def section_tiled_memory(ck: Check) -> dict:
    from naflow_aug.noise import make_noise_source

    h, w = ck.sizes.tiled_hw
    g = torch.Generator().manual_seed(0)
    clean = F.interpolate(torch.rand(1, 3, h // 16, w // 16, generator=g), size=(h, w), mode="bilinear")
    clean = clean.clamp(0.05, 0.95)
    noisy = (clean + 0.03 * torch.randn(clean.shape, generator=g)).clamp(0, 1)
    source = make_noise_source("nas", ck.model, tile_size=ck.sizes.tile_size)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if ck.cuda:
        ck.sync()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(ck.device)
        base = torch.cuda.memory_allocated(ck.device)
    start = time.perf_counter()
    out, params = source(clean, reference=noisy, seeds=[1])
    ck.sync()
    result: dict[str, Any] = {
        "image": f"{w}x{h}",
        "tile_size": ck.sizes.tile_size,
        "inputs_on": "cpu",
        "seconds": time.perf_counter() - start,
        "peak_rss_growth_mib": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024,
    }
    assert out.shape == clean.shape and bool(torch.isfinite(out).all())
    if ck.cuda:
        peak = torch.cuda.max_memory_allocated(ck.device)
        result.update(
            peak_gpu_allocated_gib=peak / GIB,
            model_and_cache_gib=base / GIB,
            peak_gpu_reserved_gib=torch.cuda.max_memory_reserved(ck.device) / GIB,
        )
    ck.target(
        f"tiled NAS {w}x{h}: peak GPU memory allocated (GiB)", result.get("peak_gpu_allocated_gib"), "<=", 2.0
    )
    return result


def _h5_summary(path: Path) -> tuple[dict, dict, np.ndarray, np.ndarray, np.ndarray]:
    import h5py

    with h5py.File(path, "r") as f:
        attrs = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in f.attrs.items()}
        meta = {}
        for k in f["meta"]:
            d = f["meta"][k]
            meta[k] = d.asstr()[...].tolist() if d.dtype.kind in "OS" else d[...].tolist()
        return attrs, meta, np.asarray(f["meta/weights"]), f["clean"][...], f["noisy"][...]


def section_generate(ck: Check) -> dict:
    s = ck.sizes
    common = [
        "generate",
        "--clean",
        str(ck.data),
        "--model",
        ck.args.model,
        "--noise",
        "nas",
        "--crop",
        str(s.gen_crop),
        "--max-images",
        str(s.gen_images),
        "--batch-size",
        "8",
        "--seed",
        "3",
        "--no-progress",
    ]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    if ck.args.quick and not ck.cuda:
        env["OMP_NUM_THREADS"] = "1"  # as the quick run itself: tiny shapes on a possibly shared CPU
    cpu_file, dev_file = ck.work / "cpu.h5", ck.work / "device.h5"
    runs = {
        "cpu": [sys.executable, "-m", "naflow_aug.cli", *common, "--out", str(cpu_file), "--device", "cpu"],
        "device": [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "1",
            "-m",
            "naflow_aug.cli",
            *common,
            "--out",
            str(dev_file),
            "--device",
            ck.device.type,
        ],
    }
    out: dict[str, Any] = {"noise": "nas", "crop": s.gen_crop, "max_images": s.gen_images}
    for name, cmd in runs.items():
        start = time.perf_counter()
        proc = subprocess.run(
            cmd,
            env=env,
            cwd=ck.work,
            capture_output=True,
            text=True,
            timeout=max(30.0, min(240.0, ck.left())),
        )
        log.info("generate (%s): %s\n%s", name, " ".join(cmd), (proc.stdout + proc.stderr)[-3000:])
        if proc.returncode != 0:
            raise RuntimeError(f"generate on {name} exited {proc.returncode}: {proc.stderr[-2000:]}")
        out[f"{name}_seconds"] = time.perf_counter() - start
    a_cpu, m_cpu, w_cpu, c_cpu, n_cpu = _h5_summary(cpu_file)
    a_dev, m_dev, w_dev, c_dev, n_dev = _h5_summary(dev_file)
    varying = {"config", "command"}  # they record the device and the output path
    diff_attrs = sorted(
        k for k in set(a_cpu) | set(a_dev) if k not in varying and a_cpu.get(k) != a_dev.get(k)
    )
    diff_meta = sorted(k for k in set(m_cpu) | set(m_dev) if k != "weights" and m_cpu.get(k) != m_dev.get(k))
    levels = np.abs(n_cpu.astype(np.int16) - n_dev.astype(np.int16))
    out.update(
        samples=int(n_cpu.shape[0]),
        attrs_differing=diff_attrs,
        meta_differing=diff_meta,
        clean_identical=bool(np.array_equal(c_cpu, c_dev)),
        weights_max_abs_diff=float(np.abs(w_cpu - w_dev).max()) if w_cpu.size else 0.0,
        noisy_max_levels=int(levels.max()) if levels.size else 0,
        noisy_fraction_differing=float((levels > 0).mean()) if levels.size else 0.0,
        tolerance={
            "weights_atol": GEN_WEIGHTS_ATOL,
            "noisy_max_levels": GEN_NOISY_MAX_LEVELS,
            "noisy_fraction_differing": GEN_NOISY_DIFF_FRACTION,
        },
    )
    out["within_tolerance"] = bool(
        not diff_attrs
        and not diff_meta
        and out["clean_identical"]
        and out["weights_max_abs_diff"] <= GEN_WEIGHTS_ATOL
        and out["noisy_max_levels"] <= GEN_NOISY_MAX_LEVELS
        and out["noisy_fraction_differing"] <= GEN_NOISY_DIFF_FRACTION
    )
    if not out["within_tolerance"]:
        raise RuntimeError(f"generate on {ck.device} differs from the CPU file beyond tolerance: {out}")
    return out


class _Crops(torch.utils.data.Dataset):
    """uint8 crops (N, 3, H, W) held in memory, cycled to ``length`` items; ``pipeline``: an albumentations
    pipeline applied in the worker (HWC numpy in and out)."""

    def __init__(self, crops: torch.Tensor, length: int, pipeline: Any = None) -> None:
        self.crops, self.length, self.pipeline = crops, length, pipeline

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int):
        x = self.crops[i % len(self.crops)]
        if self.pipeline is None:
            return x
        hwc = x.permute(1, 2, 0).numpy()
        out = self.pipeline(image=hwc, clean=hwc)
        return torch.from_numpy(out["image"]).permute(2, 0, 1), torch.from_numpy(out["clean"]).permute(
            2, 0, 1
        )


def section_loader(ck: Check) -> dict:
    from naflow_aug.denoisers import DnCNN
    from naflow_aug.transforms import NAFlowNoise

    s = ck.sizes
    clean, _ = ck.crops(min(64, s.loader_images), s.crop)
    crops8 = clean.mul(255).round().to(torch.uint8)
    net = DnCNN.paper().to(ck.device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    add_noise = NAFlowNoise(ck.model, noise="random", seed=0)

    def loop(noise: Callable[[torch.Tensor], torch.Tensor]) -> float:
        loader = torch.utils.data.DataLoader(
            _Crops(crops8, s.loader_images),
            batch_size=s.loader_batch,
            shuffle=True,
            num_workers=s.loader_workers,
            pin_memory=ck.cuda,
            drop_last=True,
        )
        n, start = 0, None
        for i, batch in enumerate(loader):
            if i == 1:  # the first batch pays for worker start-up and warm-up
                ck.sync()
                start, n = time.perf_counter(), 0
            x = batch.to(ck.device, non_blocking=True).float().div_(255)
            noisy = noise(x)
            opt.zero_grad(set_to_none=True)
            F.mse_loss(net(noisy), x).backward()
            opt.step()
            n += x.shape[0]
        ck.sync()
        return n / (time.perf_counter() - start) if start is not None else float("nan")

    out: dict[str, Any] = {
        "images": s.loader_images,
        "batch": s.loader_batch,
        "workers": s.loader_workers,
        "pin_memory": ck.cuda,
        "crop": s.crop,
        "denoiser": "DnCNN.paper(), Adam",
    }
    out["nas_random_images_per_s"] = loop(add_noise)
    out["gaussian_images_per_s"] = loop(lambda x: (x + 0.05 * torch.randn_like(x)).clamp_(0, 1))
    out["slowdown_vs_gaussian"] = out["gaussian_images_per_s"] / out["nas_random_images_per_s"]
    try:
        import albumentations as A
    except ImportError as err:
        out["albumentations"] = f"skipped: albumentations is not installed ({err}); NAFlowNoiseAlb not run"
        log.warning(out["albumentations"])
        return out
    from naflow_aug.transforms import NAFlowNoiseAlb

    pipe = A.Compose([NAFlowNoiseAlb(ck.args.model, noise="random")], additional_targets={"clean": "image"})
    loader = torch.utils.data.DataLoader(
        _Crops(crops8, s.alb_images, pipe), batch_size=16, num_workers=s.alb_workers
    )
    start, n = time.perf_counter(), 0
    for noisy, _ in loader:
        n += noisy.shape[0]
    out["albumentations"] = {
        "images_per_s": n / (time.perf_counter() - start),
        "workers": s.alb_workers,
        "images": n,
        "note": "includes worker start-up and one model load per worker",
    }
    return out


def section_tests(ck: Check) -> dict:
    junit = ck.work / "junit.xml"
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-m",
        "device",
        "--device",
        str(ck.device),
        "-p",
        "no:cacheprovider",
        f"--junitxml={junit}",
        str(ROOT / "tests"),
    ]
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=max(30.0, min(240.0, ck.left() + 60.0))
    )
    log.info("pytest: %s\n%s", " ".join(cmd), (proc.stdout + proc.stderr)[-6000:])
    import xml.etree.ElementTree as ET

    counts: dict[str, Any] = {"returncode": proc.returncode, "seconds": time.perf_counter() - start}
    if junit.is_file():
        suite = ET.parse(junit).getroot()
        suite = suite if suite.tag == "testsuite" else suite[0]
        counts.update({k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")})
        counts["failed"] = [
            f"{c.get('classname')}::{c.get('name')}"
            for c in suite.iter("testcase")
            if c.find("failure") is not None or c.find("error") is not None
        ]
    if proc.returncode not in (0, 5):
        raise RuntimeError(f"pytest -m device exited {proc.returncode}: {counts}")
    return counts


def section_nas_compiled(ck: Check) -> dict:
    from naflow_aug import metrics
    from naflow_aug.flow.fast import FastNAFlow

    if not ck.cuda and not ck.args.compile_on_cpu:
        return {"skipped": "torch.compile on the CPU takes minutes (--compile-on-cpu to run it)"}
    b = max(ck.sizes.batches)
    clean, noisy, seeds = _nas_inputs(ck, b)
    fast = FastNAFlow(ck.model, compile=True)
    start = time.perf_counter()
    y = fast.sample(clean, reference=noisy, seeds=seeds)
    ck.sync()
    compile_s = time.perf_counter() - start
    t = ck.timeit(lambda: fast.sample(clean, reference=noisy, seeds=seeds))
    ref = FastNAFlow(ck.model).sample(clean, reference=noisy, seeds=seeds)
    a, c = ref.double(), clean.double()
    return {
        "batch": b,
        "first_call_seconds": compile_s,
        "s_per_batch": t,
        "crops_per_s": b / t,
        "max_diff_vs_fp32": float((y - ref).abs().max()),
        "kld_vs_fp32": float(metrics.kld(a, y.double(), c).mean()),
        "akld_vs_fp32": float(metrics.akld(a, y.double(), c).mean()),
    }


# ============================================================================ driver
def run(args: argparse.Namespace) -> dict:
    ck = Check(args)
    t0 = time.perf_counter()
    for name in SECTIONS:
        if name in args.skip:
            ck.result["sections"][name] = {"status": "skipped", "reason": "--skip"}
            continue
        if ck.left() <= 0:
            ck.result["sections"][name] = {
                "status": "skipped",
                "reason": f"time budget {args.budget_s}s spent",
            }
            log.warning("section %s skipped: time budget spent", name)
            continue
        log.info("==== %s (%.0f s left)", name, ck.left())
        start = time.perf_counter()
        try:
            data = globals()[f"section_{name}"](ck)
            status = "skipped" if isinstance(data, dict) and set(data) == {"skipped"} else "ok"
            entry = {"status": status, **data}
        except Exception as err:  # noqa: BLE001 - one failing section must not hide the others' figures
            log.error("section %s failed:\n%s", name, traceback.format_exc())
            entry = {"status": "failed", "error": f"{type(err).__name__}: {err}"[:2000]}
        entry["seconds"] = round(time.perf_counter() - start, 2)
        ck.result["sections"][name] = entry
        log.info("==== %s: %s in %.1f s", name, entry["status"], entry["seconds"])
        _write(ck)
    shutil.rmtree(ck.work, ignore_errors=True)
    ck.result["total_seconds"] = round(time.perf_counter() - t0, 2)
    ck.result["ok"] = all(s["status"] != "failed" for s in ck.result["sections"].values())
    _write(ck)
    return ck.result


def _write(ck: Check) -> None:
    path = ck.out / "gpu_check.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(ck.result, indent=1, default=str, allow_nan=True))
    os.replace(tmp, path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="folder for gpu_check.json and gpu_check.log")
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:1, or cpu")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of every section")
    ap.add_argument("--data", default=None, help="SIDD-Medium layout folder (default: a simulated camera)")
    ap.add_argument("--model", default="sidd-mini", help="bundled model name or checkpoint path")
    ap.add_argument(
        "--budget-s",
        type=float,
        default=330.0,
        help="sections still starting after this many seconds are skipped",
    )
    ap.add_argument("--skip", action="append", default=[], choices=SECTIONS, help="leave a section out")
    ap.add_argument("--compile-on-cpu", action="store_true", help="run nas_compiled on the CPU too")
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: CUDA is not available here (torch {torch.__version__})")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    handlers = [logging.StreamHandler(sys.stdout), logging.FileHandler(out / "gpu_check.log", mode="w")]
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", handlers=handlers, force=True
    )
    if args.quick and not args.device.startswith("cuda"):
        torch.set_num_threads(1)  # tiny CPU shapes: threads cost more than they give on a shared machine
    result = run(args)
    failed = [k for k, v in result["sections"].items() if v["status"] == "failed"]
    log.info(
        "done in %.0f s; failed sections: %s; JSON: %s",
        result["total_seconds"],
        failed or "none",
        out / "gpu_check.json",
    )
    for t in result["targets"]:
        log.info("TARGET %-75s %s", t["name"], {True: "PASS", False: "FAIL", None: "NOT MEASURED"}[t["pass"]])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
