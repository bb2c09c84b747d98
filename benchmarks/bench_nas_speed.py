"""Speed of noise-aware sampling (NAS): the library's fast path against a plain reference, in one run.

Prints one table (issue 10):
  1. NAS throughput on 160x160 crops: a straightforward reference implementation of the published
     architecture kept in this file (per-layer modules, official parameter names, nothing cached,
     batch of one, per-class loop: the way the official code runs) against the library's batched
     `FastNAFlow` NAS (encode the reference pair, mix, decode), same weights, same seeds; the ratio
     and the largest output difference. Also `FastNAFlow(compile=True)` (torch.compile of the
     per-step kernels; its one-off compile time with a fresh inductor cache is printed, not timed;
     ``--skip-compile`` leaves it out).
  2. FLOPs: counted with torch.utils.flop_counter.FlopCounterMode (convolutions and matrix products)
     on the reference's encode + decode of one crop, and on what the fast path executes; achieved
     GFLOP/s, executed and effective (reference FLOPs / fast time), against a float32 2048^2 matrix
     product timed in the same run, with torch's ``@`` (MKL) and with oneDNN: the faster is the peak
     (on AMD CPUs MKL does not run its AVX-512 code; oneDNN, which the fast path uses, does).
  3. Peak memory (VmHWM growth, one fresh subprocess per figure): NAS on a 1024x1024 image; tiled NAS
     (the noise source, tiles of 512) on a 4000x3000 image.
  4. The albumentations transform (NAFlowNoiseAlb, noise "nas" and "random") in images/s for one
     DataLoader worker (one torch thread).
  5. CUDA only: NAS time per batch as a fraction of a DnCNN training step on the same batch.

Weights: the NAS fixture (official layout; the reference loads the official state dict as it is, the
library imports it through naflow_aug.checkpoints), or ``--weights random`` (published default
configuration, random weights, ActNorm initialised on data, zero layers perturbed).

Timings are the fastest of ``--rounds`` interleaved rounds (the machine is shared); the median ratio is
printed as well. Sections 1-2 run with ``--threads`` (default: all cores) and again with one thread. Run
with ``nice`` on a shared machine and read the load average printed with the table; on an oversubscribed
machine OpenMP's spinning threads slow every parallel region (most of all the batch-1 reference's many
small ones): ``OMP_WAIT_POLICY=PASSIVE`` makes the multi-thread figures less erratic there.
By default sections 1-2 run twice: with glibc's malloc as it is, then (``--malloc both``) after
`keep_freed_memory()` for the whole process, reference included (glibc then reuses freed blocks
instead of page-faulting fresh ones on every batch); ``--malloc default`` / ``keep`` run one of them.

    nice .venv/bin/python benchmarks/bench_nas_speed.py
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NAFLOW_AUG_SHARED", ROOT.parent / "shared"))
FIXTURE = SHARED / "fixtures" / "official_naflow_nas.pt"
DATA = SHARED / "data" / "sidd-medium-mini" / "Data"


# ============================================================================ plain reference
# The published architecture written plainly (see shared/reference/official-architecture.md): every
# layer a module, weights rebuilt from their factors on every call, the clean-image features recomputed
# by encode and by decode, one image at a time. Parameter names follow the official state dict.
class RefActNorm(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.logs = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, x: Tensor, reverse: bool = False) -> Tensor:
        if reverse:
            return x * torch.exp(-self.logs) - self.bias
        return (x + self.bias) * torch.exp(self.logs)


class RefInvConv(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.register_buffer("p", torch.eye(c))
        self.register_buffer("sign_s", torch.ones(c))
        self.l = nn.Parameter(torch.zeros(c, c))
        self.u = nn.Parameter(torch.zeros(c, c))
        self.log_s = nn.Parameter(torch.zeros(c))

    def get_weight(self, reverse: bool) -> Tensor:
        c = self.l.shape[0]
        mask_l = torch.tril(torch.ones(c, c), -1)
        lower = self.l * mask_l + torch.eye(c)
        upper = self.u * mask_l.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        if reverse:
            u_inv = torch.inverse(upper.double()).float()
            l_inv = torch.inverse(lower.double()).float()
            return (u_inv @ l_inv @ torch.inverse(self.p)).view(c, c, 1, 1)
        return (self.p @ lower @ upper).view(c, c, 1, 1)

    def forward(self, x: Tensor, reverse: bool = False) -> Tensor:
        return F.conv2d(x, self.get_weight(reverse))


class RefConv2dActNorm(nn.Conv2d):
    def __init__(self, cin: int, cout: int, k: int = 1):
        super().__init__(cin, cout, k, padding=k // 2, bias=False)
        self.actnorm = RefActNorm(cout)

    def forward(self, x: Tensor) -> Tensor:
        return self.actnorm(super().forward(x))


class RefConv2dZeros(nn.Conv2d):
    def __init__(self, cin: int, cout: int):
        super().__init__(cin, cout, 1)
        self.logs = nn.Parameter(torch.zeros(cout, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x) * torch.exp(self.logs * 3)


class RefResBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), RefConv2dActNorm(c, c))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def ref_subnet(cin: int, cout: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(
        RefConv2dActNorm(cin, hidden), nn.ReLU(), RefResBlock(hidden), RefConv2dZeros(hidden, cout)
    )


def ref_shift_scale(h: Tensor) -> tuple[Tensor, Tensor]:
    return h[:, 0::2], torch.sigmoid(h[:, 1::2] + 2.0) + 1e-3


class RefCondAffine(nn.Module):
    def __init__(self, c: int, cond: int, hidden: int):
        super().__init__()
        self.c1 = c // 2
        self.fFeatures = ref_subnet(cond, 2 * c, hidden)
        self.fAffine = ref_subnet(self.c1 + cond, 2 * (c - self.c1), hidden)

    def forward(self, z: Tensor, ft: Tensor, reverse: bool = False) -> Tensor:
        if not reverse:  # data -> latent
            z1, z2 = z[:, : self.c1], z[:, self.c1 :]
            shift, scale = ref_shift_scale(self.fAffine(torch.cat([z1, ft], 1)))
            z = torch.cat([z1, z2 / scale - shift], 1)
            shift, scale = ref_shift_scale(self.fFeatures(ft))
            return z / scale - shift
        shift, scale = ref_shift_scale(self.fFeatures(ft))
        z = (z + shift) * scale
        z1, z2 = z[:, : self.c1], z[:, self.c1 :]
        shift, scale = ref_shift_scale(self.fAffine(torch.cat([z1, ft], 1)))
        return torch.cat([z1, (z2 + shift) * scale], 1)


class RefStep(nn.Module):
    def __init__(self, c: int, actnorm: bool, cond: int = 0, hidden: int = 64):
        super().__init__()
        if actnorm:
            self.actnorm = RefActNorm(c)
        self.invconv = RefInvConv(c)
        if cond:
            self.affine = RefCondAffine(c, cond, hidden)

    def forward(self, x: Tensor, ft: Tensor, reverse: bool = False) -> Tensor:
        parts = [getattr(self, n) for n in ("actnorm", "invconv", "affine") if hasattr(self, n)]
        for part in reversed(parts) if reverse else parts:
            x = part(x, ft, reverse) if isinstance(part, RefCondAffine) else part(x, reverse)
        return x


class RefSqueeze(nn.Module):
    def forward(self, x: Tensor, ft: Tensor, reverse: bool = False) -> Tensor:
        return F.pixel_shuffle(x, 2) if reverse else F.pixel_unshuffle(x, 2)


class RefCondNet(nn.Module):
    def __init__(self, width: int = 128):
        super().__init__()
        self.down1 = nn.Conv2d(3, width, 1)
        self.down2 = nn.Conv2d(width, width // 4, 1)
        self.down4 = nn.Conv2d(width, width // 4, 1)
        self.down8 = nn.Conv2d(width, width // 4, 1)

    def forward(self, x: Tensor) -> list[Tensor]:
        f0 = self.down1(x)
        f1 = F.pixel_unshuffle(self.down2(f0), 2)
        f2 = F.pixel_unshuffle(self.down4(f1), 2)
        return [f0, f1, f2, F.pixel_unshuffle(self.down8(f2), 2)]


class RefNAFlow(nn.Module):
    """The published SIDD NAFlow: 3 levels, 2 transition + 2 conditional steps per level."""

    def __init__(self, classes: list[str]):
        super().__init__()
        self.classes = list(classes)
        self.cond_net = RefCondNet()
        layers, levels, c = [RefStep(3, actnorm=False)], [0], 3
        layers += [RefStep(3, True), RefStep(3, True)]
        levels += [0, 0]
        for level in (1, 2, 3):
            c *= 4
            layers += [RefSqueeze(), RefStep(c, True), RefStep(c, True)]
            layers += [RefStep(c, True, cond=128), RefStep(c, True, cond=128)]
            levels += [level] * 5
        self.flowUpsamplerNet = nn.Module()
        self.flowUpsamplerNet.layers = nn.ModuleList(layers)
        self.levels = levels
        for name in self.classes:
            self.register_parameter(f"mean_shift_{name}", nn.Parameter(torch.zeros(c)))
            self.register_parameter(f"cov_shift_{name}", nn.Parameter(torch.ones(c)))

    def encode(self, noisy: Tensor, clean: Tensor) -> Tensor:
        feats = self.cond_net(clean)
        z = noisy
        for layer, level in zip(self.flowUpsamplerNet.layers, self.levels, strict=True):
            z = layer(z, feats[level])
        return z

    def decode(self, z: Tensor, clean: Tensor) -> Tensor:
        feats = self.cond_net(clean)
        for layer, level in zip(reversed(self.flowUpsamplerNet.layers), reversed(self.levels), strict=True):
            z = layer(z, feats[level], reverse=True)
        return z

    def nas(self, clean: Tensor, noisy: Tensor, seed: int) -> Tensor:
        """One image (1, 3, H, W): encode, class log-likelihoods one class at a time, mix, draw, decode."""
        z = self.encode(noisy, clean)
        loglik = []
        for name in self.classes:
            mean = getattr(self, f"mean_shift_{name}").view(1, -1, 1, 1)
            std = getattr(self, f"cov_shift_{name}").view(1, -1, 1, 1)
            ll = -0.5 * (math.log(2 * math.pi) + 2 * torch.log(std.abs()) + ((z - mean) / std) ** 2)
            loglik.append(ll.sum())
        weights = torch.softmax(torch.stack(loglik) / (z.shape[2] * z.shape[3]), 0)
        mean = sum(w * getattr(self, f"mean_shift_{n}") for w, n in zip(weights, self.classes, strict=True))
        std = sum(w * getattr(self, f"cov_shift_{n}") for w, n in zip(weights, self.classes, strict=True))
        g = torch.Generator().manual_seed(seed)
        torch.randint(len(self.classes), (1,), generator=g)  # the contract: configuration pick first
        eps = torch.randn(z.shape[1:], generator=g).to(z.device)  # the CPU draw, then the model's device
        return self.decode(mean.view(1, -1, 1, 1) + std.view(1, -1, 1, 1) * eps[None], clean).clamp(0, 1)


def official_state_from_library(model) -> dict[str, Tensor]:
    """The library model's weights under the official names (for --weights random)."""
    sub = {"inp.conv.weight": "0.weight", "inp.actnorm.bias": "0.actnorm.bias",
           "inp.actnorm.logs": "0.actnorm.logs", "res_conv.weight": "2.body.0.weight",
           "res_conv.bias": "2.body.0.bias",
           "res_out.conv.weight": "2.body.2.weight", "res_out.actnorm.bias": "2.body.2.actnorm.bias",
           "res_out.actnorm.logs": "2.body.2.actnorm.logs", "out.conv.weight": "3.weight",
           "out.conv.bias": "3.bias", "out.logs": "3.logs"}  # fmt: skip
    enc = {"inp": "down1", "down.0": "down2", "down.1": "down4", "down.2": "down8"}
    out = {}
    for key, v in model.state_dict().items():
        parts = key.split(".")
        if key.startswith("encoder."):
            mod = ".".join(parts[1:-1])
            out[f"cond_net.{enc[mod]}.{parts[-1]}"] = v
        elif key.startswith("flow."):
            i, rest = parts[1], ".".join(parts[2:])
            if rest.endswith("initialized"):
                continue
            for lib, off in (("coupling.net.", "affine.fAffine."), ("injector.net.", "affine.fFeatures.")):
                if rest.startswith(lib):
                    rest = off + sub[rest[len(lib) :]]
            out[f"flowUpsamplerNet.layers.{i}.{rest}"] = v
    for k, name in enumerate(model.classes):
        out[f"mean_shift_{name}"] = model.prior.mean[k]
        out[f"cov_shift_{name}"] = model.prior.std[k]
    return out


# ============================================================================ set-up
def load_models(weights: str):
    from naflow_aug.checkpoints import model_from_checkpoint
    from naflow_aug.flow import NAFlow

    if weights == "fixture":
        if not FIXTURE.exists():
            sys.exit(f"{FIXTURE} not found (set NAFLOW_AUG_SHARED or use --weights random)")
        fx = torch.load(FIXTURE, weights_only=True)
        model = model_from_checkpoint(fx["checkpoint"]).freeze()
        state = {k.removeprefix("model."): v for k, v in fx["checkpoint"]["state_dict"].items()}
        state = {k: v for k, v in state.items() if k != "I" and not k.startswith("flowUpsamplerNet.f.")}
    else:
        torch.manual_seed(0)
        model = NAFlow().train()
        clean = torch.rand(4, 3, 64, 64) * 0.8 + 0.1
        with torch.no_grad():
            model.encode((clean + 0.05 * torch.randn_like(clean)).clamp(0, 1), clean)  # ActNorm init
            for name, p in model.named_parameters():
                if name.endswith(("out.conv.weight", "out.conv.bias", "out.logs")):
                    p.add_(0.01 * torch.randn_like(p))  # zero-initialised layers: make couplings non-trivial
            model.prior.mean.copy_(0.1 * torch.randn_like(model.prior.mean))
            model.prior.std.copy_(0.5 + torch.rand_like(model.prior.std))
        model.freeze()
        state = official_state_from_library(model)
    ref = RefNAFlow(model.classes)
    ref.load_state_dict(state, strict=True)
    ref.eval().requires_grad_(False)
    return model, ref


def crops(n: int, size: int) -> tuple[Tensor, Tensor]:
    """n (clean, noisy) 160x160 crops of the real SIDD-mini pairs, else synthetic ones."""
    from naflow_aug.data.images import load_image

    cleans, noisies = [], []
    for scene in sorted(DATA.iterdir()) if DATA.exists() else []:
        gt = sorted(scene.glob("*GT_SRGB*"))
        ny = sorted(scene.glob("*NOISY_SRGB*"))
        if not gt or not ny:
            continue
        c, x = load_image(gt[0]), load_image(ny[0])
        h, w = c.shape[1:]
        if h < size or w < size:
            continue
        y0, x0 = (h - size) // 2, (w - size) // 2
        cleans.append(c[:, y0 : y0 + size, x0 : x0 + size])
        noisies.append(x[:, y0 : y0 + size, x0 : x0 + size])
        if len(cleans) == n:
            return torch.stack(cleans), torch.stack(noisies)
    g = torch.Generator().manual_seed(0)
    clean = F.interpolate(torch.rand(n, 3, size // 8, size // 8, generator=g), size=size, mode="bilinear")
    return clean, (clean + 0.04 * torch.randn(clean.shape, generator=g)).clamp(0, 1)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def matmul_peak(n: int, repeats: int) -> dict[str, float]:
    """GFLOP/s of an n x n float32 matrix product, best of ``repeats``: torch's ``@`` (MKL on the CPU)
    and, on the CPU, oneDNN's (the library the fast path's kernels come from; faster than MKL on AMD)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    kernels = {"matmul": lambda: a @ b}
    onednn = getattr(torch.ops.mkldnn, "_linear_pointwise", None)
    if onednn is not None and torch.backends.mkldnn.is_available():
        kernels["onednn"] = lambda: onednn(a, b, None, "none", [], "")
    rates = {}
    for name, fn in kernels.items():
        fn()
        rates[name] = max(2 * n**3 / timed(fn) / 1e9 for _ in range(repeats))
    return rates


def flops_of(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


# ============================================================================ memory probes
def vm_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_probe(kind: str, weights: str, threads: int) -> dict:
    """Runs in a fresh subprocess: peak RSS growth (VmHWM after reset minus VmRSS before) of one NAS."""
    torch.set_num_threads(threads)
    model, _ = load_models(weights)
    if kind.startswith("tiled"):
        h, w = 3000, 4000
    else:
        h = w = 1024
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(1, 3, h, w, generator=g) * 0.8 + 0.1
    noisy = (clean + 0.04 * torch.randn(clean.shape, generator=g)).clamp(0, 1)
    if kind == "nas-1024-reference":
        model.fast_sampling = False
        run = lambda: model.sample(clean, reference=noisy, seeds=[0])  # noqa: E731
    elif kind == "nas-1024-fast":
        run = lambda: model.sample(clean, reference=noisy, seeds=[0])  # noqa: E731
    elif kind == "tiled-nas-4000x3000":
        from naflow_aug.noise import make_noise_source

        source = make_noise_source("nas", model, tile_size=512, overlap=32)
        run = lambda: source(clean, reference=noisy, seeds=[0])  # noqa: E731
    else:
        raise ValueError(kind)
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        reset = True
    except OSError:
        reset = False
    before = vm_kib("VmRSS")
    start = time.perf_counter()
    out = run()
    seconds = time.perf_counter() - start
    peak = vm_kib("VmHWM")
    out = out[0] if isinstance(out, tuple) else out
    assert out.shape == clean.shape and bool(torch.isfinite(out).all())
    return {"kind": kind, "growth_mib": (peak - before) / 1024, "rss_before_mib": before / 1024,
            "hwm_reset": reset, "seconds": seconds}  # fmt: skip


def run_probe(kind: str, weights: str, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--memory-probe", kind, "--weights", weights, "--threads", str(threads)]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if res.returncode:
        return {"kind": kind, "error": res.stderr.strip().splitlines()[-1:]}
    return json.loads(res.stdout.strip().splitlines()[-1])


# ============================================================================ transform
def transform_rate(model, n: int, size: int, noise: str) -> float:
    import albumentations as A

    from naflow_aug.data.images import to_uint8
    from naflow_aug.transforms import NAFlowNoiseAlb

    clean, noisy = crops(n, size)
    pairs = [(to_uint8(c), to_uint8(x)) for c, x in zip(clean, noisy, strict=True)]
    pipe = A.Compose([NAFlowNoiseAlb(model, noise=noise)],
                     additional_targets={"clean": "image", "reference": "image"})  # fmt: skip
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one DataLoader worker = one torch thread (as the transform sets there)
    try:
        pipe(image=pairs[0][0], clean=pairs[0][0], reference=pairs[0][1])
        start = time.perf_counter()
        for c, x in pairs:
            out = pipe(image=c, clean=c, reference=x)
        seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    assert out["image"].shape == pairs[0][0].shape
    return n / seconds


# ============================================================================ CUDA
def cuda_section(model, batch: int, size: int) -> list[str]:
    if not torch.cuda.is_available():
        return ["5. CUDA: skipped (no CUDA device here): NAS per batch vs a DnCNN training step not measured"]
    from naflow_aug.denoisers.dncnn import DnCNN
    from naflow_aug.flow.fast import CudaGraphNAS, FastNAFlow, draw_item_noise

    dev = torch.device("cuda")
    model = model.to(dev)
    clean, noisy = (t.to(dev) for t in crops(batch, size))
    net = DnCNN.paper().to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)

    def sync_time(fn, n=10) -> float:
        fn()
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(n):
            fn()
        torch.cuda.synchronize()
        return (time.perf_counter() - start) / n

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss = F.mse_loss(net(noisy), clean)
        loss.backward()
        opt.step()

    t_step = sync_time(train_step)
    name = torch.cuda.get_device_name()
    lines = [f"5. CUDA ({name}), batch {batch}x{size}x{size}: DnCNN training step {t_step * 1e3:.1f} ms"]
    seeds = torch.arange(batch)
    m = model.size_multiple
    variants = {"fast fp32": FastNAFlow(model),
                "fast bf16 subnets": FastNAFlow(model, autocast=torch.bfloat16),
                "fast fp32 compiled": FastNAFlow(model, compile=True)}  # fmt: skip
    for name, fast in variants.items():
        t = sync_time(lambda fast=fast: fast.sample(clean, reference=noisy, seeds=seeds))
        inv = fast.check_invertibility(clean, noisy)
        lines.append(f"   NAS {name}: {t * 1e3:.1f} ms = {t / t_step:.3f} x step (target < 0.25); "
                     f"decode(encode) rel err {inv:.1e}")  # fmt: skip
    try:
        graph = CudaGraphNAS(FastNAFlow(model), tuple(clean.shape))
        _, eps = draw_item_noise(seeds, model.num_classes, (model.latent_channels, size // m, size // m))
        eps = eps.to(dev)
        t = sync_time(lambda: graph(clean, noisy, eps))
        ref = FastNAFlow(model).sample(clean, reference=noisy, seeds=seeds)
        diff = float((graph(clean, noisy, eps) - ref).abs().max())
        lines.append(f"   NAS CUDA graph: {t * 1e3:.1f} ms = {t / t_step:.3f} x step; max diff {diff:.1e}")
    except Exception as e:  # noqa: BLE001 - report, do not hide, a failed optional variant
        lines.append(f"   NAS CUDA graph: failed ({type(e).__name__}: {e})")
    return lines


# ============================================================================ main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", choices=("fixture", "random"), default="fixture")
    ap.add_argument("--batch", type=int, default=8, help="crops per batch (reference: one at a time)")
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ref-crops", type=int, default=4, help="crops the slow reference runs per round")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-transform", action="store_true")
    ap.add_argument(
        "--malloc",
        choices=("default", "keep", "both"),
        default="both",
        help="default: glibc's own settings; keep: naflow_aug.flow.fast.keep_freed_memory() for the "
        "whole process (reference included); both: sections 1-2 with the defaults, then again after "
        "keep_freed_memory()",
    )
    ap.add_argument("--skip-compile", action="store_true", help="leave out FastNAFlow(compile=True)")
    ap.add_argument("--memory-probe", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_probe:
        print(json.dumps(memory_probe(args.memory_probe, args.weights, args.threads)))
        return
    from naflow_aug.flow.fast import keep_freed_memory

    malloc_modes = {"default": ["default"], "keep": ["keep"], "both": ["default", "keep"]}[args.malloc]
    malloc = " then ".join(
        {"default": "glibc defaults", "keep": "keep_freed_memory()"}[m] for m in malloc_modes
    )

    model, ref = load_models(args.weights)
    clean, noisy = crops(args.batch, args.size)
    seeds = list(range(args.batch))
    n_ref = min(args.ref_crops, args.batch)
    from naflow_aug.flow.fast import FastNAFlow

    fast = FastNAFlow(model)

    def run_ref() -> Tensor:  # one crop at a time; per-crop cost does not depend on how many
        with torch.no_grad():
            return torch.cat([ref.nas(clean[i : i + 1], noisy[i : i + 1], seeds[i]) for i in range(n_ref)])

    def run_fast() -> Tensor:
        return fast.sample(clean, reference=noisy, seeds=seeds)

    compiled, compile_s, out_compiled = None, float("nan"), None
    if not args.skip_compile:
        torch.set_num_threads(args.threads)
        # a fresh inductor cache, so that the compile time printed is the cold one
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench_nas_inductor_")
        compiled = FastNAFlow(model, compile=True)
        # one-off: torch.compile traces and builds its kernels on the first call (not timed below)
        compile_s = timed(lambda: compiled.sample(clean, reference=noisy, seeds=seeds))
        out_compiled = compiled.sample(clean, reference=noisy, seeds=seeds)

    def run_compiled() -> Tensor:
        return compiled.sample(clean, reference=noisy, seeds=seeds)

    def run_lib_layers() -> Tensor:  # the library's own layer-by-layer path, batched
        model.fast_sampling = False
        try:
            return model.sample(clean, reference=noisy, seeds=seeds)
        finally:
            model.fast_sampling = True

    out_ref, out_fast, out_lib = run_ref(), run_fast(), run_lib_layers()
    diff = float((out_fast[:n_ref] - out_ref).abs().max())
    rel = diff / float(out_ref.abs().max())
    diff_lib = float((out_lib[:n_ref] - out_ref).abs().max())
    with torch.no_grad():
        one_c, one_n = clean[:1], noisy[:1]
        ref_flops = flops_of(lambda: ref.decode(ref.encode(one_n, one_c), one_c))
    import naflow_aug.flow.fast as fast_module

    onednn, fast_module.ONEDNN = fast_module.ONEDNN, False  # FlopCounterMode has no formula for
    try:  # oneDNN's fused kernels (matrix products, convolution + relu): count the same arithmetic unfused
        fast_flops = flops_of(run_fast) / args.batch
    finally:
        fast_module.ONEDNN = onednn
    rows = [
        ("max |fast - ref| (relative)", f"{diff:.2e}",
         f"{rel:.2e} (target <= 1e-4), {n_ref} crops; library layer path {diff_lib:.1e}"),
    ]  # fmt: skip
    if out_compiled is not None:
        diff_c = float((out_compiled[:n_ref] - out_ref).abs().max())
        rows.append(("max |compiled - ref| (relative)", f"{diff_c:.2e}",
                     f"{diff_c / float(out_ref.abs().max()):.2e} (target <= 1e-4)"))  # fmt: skip
    rows += [
        ("GFLOP/crop, ref encode+decode", f"{ref_flops / 1e9:.2f}", "FlopCounterMode (conv, matmul)"),
        ("GFLOP/crop executed by fast NAS", f"{fast_flops / 1e9:.2f}", "clean features once, folded"),
    ]  # fmt: skip
    for mode, threads in ((m, t) for m in malloc_modes for t in dict.fromkeys([args.threads, 1])):
        if mode == "keep" and not keep_freed_memory():  # process-wide from here on (idempotent)
            rows.append(("keep_freed_memory()", "n/a", "not glibc: nothing applied"))
        torch.set_num_threads(threads)
        times: dict[str, list[float]] = {"ref": [], "fast": [], "lib": [], "compiled": []}
        matmul: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            times["ref"].append(timed(run_ref) / n_ref)
            times["fast"].append(timed(run_fast) / args.batch)
            if compiled is not None:
                times["compiled"].append(timed(run_compiled) / args.batch)
            times["lib"].append(timed(run_lib_layers) / args.batch)
            for name, rate in matmul_peak(2048, 3).items():
                matmul.setdefault(name, []).append(rate)
        t_ref, t_fast, t_lib = min(times["ref"]), min(times["fast"]), min(times["lib"])
        median_ratio = statistics.median(r / f for r, f in zip(times["ref"], times["fast"], strict=True))
        rates = {name: max(v) for name, v in matmul.items()}
        peak_name = max(rates, key=rates.get)
        peak = rates[peak_name]  # the machine's practical peak: the faster of the two products
        rows += [
            (f"[{threads} thread(s), malloc {mode}] 1. reference (plain, batch 1) s/crop", f"{t_ref:.4f}",
             ""),
            ("   library layer-by-layer path, batched", f"{t_lib:.4f}", f"{t_ref / t_lib:.2f}x ref"),
            (f"   library fast NAS, batch {args.batch}", f"{t_fast:.4f}",
             f"{t_ref / t_fast:.2f}x ref (median of rounds {median_ratio:.2f}x; target >= 3x)"),
        ]  # fmt: skip
        if compiled is not None:
            t_c = min(times["compiled"])
            note = f"{t_ref / t_c:.2f}x ref; one-off compile + first call {compile_s:.1f} s (cold cache)"
            rows.append((f"   fast NAS, compile=True, batch {args.batch}", f"{t_c:.4f}", note))
        for name, rate in rates.items():
            label = {"matmul": "torch @ (MKL)", "onednn": "oneDNN"}.get(name, name)
            note = f"best of {args.rounds * 3}, same run" + (" = peak" if name == peak_name else "")
            rows.append((f"   2. matmul 2048^2 float32 GFLOP/s, {label}", f"{rate:.1f}", note))
        for name, flops, t, target in (("fast: ref GFLOP / time (effective)", ref_flops, t_fast, ""),
                                       ("fast: executed GFLOP / time", fast_flops, t_fast, " (target 60%)"),
                                       ("reference: GFLOP / time", ref_flops, t_ref, "")):  # fmt: skip
            rate = flops / t / 1e9
            rows.append((f"   {name}", f"{rate:.1f}", f"{rate / peak:.0%} of peak matmul{target}"))
    torch.set_num_threads(args.threads)
    if not args.skip_memory:
        for kind in ("nas-1024-fast", "nas-1024-reference", "tiled-nas-4000x3000"):
            r = run_probe(kind, args.weights, args.threads)
            if "error" in r:
                rows.append((f"3. peak RSS growth {kind}", "failed", str(r["error"])))
            else:
                note = f"{r['seconds']:.1f} s; target < 2048 MiB"
                note += "" if r["hwm_reset"] else " (VmHWM not reset: since process start)"
                rows.append((f"3. peak RSS growth {kind} MiB", f"{r['growth_mib']:.0f}", note))
    if not args.skip_transform:
        for noise in ("nas", "random"):
            rate = transform_rate(model, 2 * args.batch, args.size, noise)
            model.fast_sampling = False  # the noise source then runs the layer-by-layer path
            try:
                slow = transform_rate(model, args.batch, args.size, noise)
            finally:
                model.fast_sampling = True
            note = f"{args.size}x{args.size} uint8, 1 torch thread; layer-by-layer path {slow:.2f}"
            rows.append((f"4. NAFlowNoiseAlb noise={noise} img/s/worker", f"{rate:.2f}", note))

    load = os.getloadavg()
    print(f"bench_nas_speed: {args.size}x{args.size} crops, weights={args.weights}, "
          f"torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} cores, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}, malloc: {malloc}")  # fmt: skip
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>9}  {note}")
    for line in cuda_section(model, args.batch, args.size):
        print(line)


if __name__ == "__main__":
    main()
