"""Generation throughput (``naflow_aug.generate``) as a ratio of raw batched NAS throughput, same run.

The raw reference: the same noise source (``nas`` through ``naflow_aug.noise``) called on the same
crops, already decoded and held in memory, in the same batches, with nothing written. The generator does
everything else as well: scan the source, read and crop the PNGs (a reader thread), convert, write the
parts (a writer thread), fsync, rename, and join them into the output file. Target: ratio >= 0.9.

    .venv/bin/python benchmarks/bench_generate.py            # SIDD-mini tiles, published architecture
    .venv/bin/python benchmarks/bench_generate.py --images 1 --crop 64  # quick
    .venv/bin/python benchmarks/bench_generate.py --crops random --images 48 --samples-per-crop 1  # I/O-heavy
    .venv/bin/python benchmarks/bench_generate.py --device cuda --crop 256 --batch-size 16 --images 64

Model: ``--model NAME_OR_PATH``; default: the official-layout Lightning fixture in ``../shared/fixtures``
(the published architecture with test weights), else a randomly initialised published architecture.
Source: ``--source`` folder; default ``../shared/data/sidd-medium-mini``, else a simulated camera folder.
The measurements alternate (raw, generate, raw, generate, ...) and the table reports the medians of wall
time and, since a busy shared machine inflates wall times unevenly, of process CPU time (all threads).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SHARED = Path(os.environ.get("NAFLOW_AUG_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))


def _default_model(tmp: Path) -> str:
    fixture = SHARED / "fixtures" / "official_naflow_lightning.ckpt"
    if fixture.is_file():
        return str(fixture)
    from naflow_aug import NAFlow, NAFlowConfig, save_checkpoint

    torch.manual_seed(0)
    net = NAFlow(NAFlowConfig())
    clean = torch.rand(2, 3, 64, 64) * 0.8 + 0.1
    net.train()
    with torch.no_grad():
        net.encode((clean + 0.05 * torch.randn_like(clean)).clamp(0, 1), clean)
    path = tmp / "published-random.pt"
    save_checkpoint(net.freeze(), path)
    return str(path)


def _default_source(tmp: Path) -> str:
    sidd = SHARED / "data" / "sidd-medium-mini"
    if sidd.is_dir():
        return str(sidd)
    from naflow_aug.data.simcam import write_simulated_sidd

    write_simulated_sidd(tmp / "sim", seed=0, scenes_per_config=4, size_range=(256, 320))
    return str(tmp / "sim")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="bundled name or checkpoint (default: see above)")
    p.add_argument("--source", help="SIDD-Medium-layout or paired folder (default: see above)")
    p.add_argument("--images", type=int, default=4, help="source images (pairs) used")
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--crops", choices=("grid", "random"), default="grid")
    p.add_argument("--crops-per-image", type=int, default=1, help="with --crops random")
    p.add_argument("--samples-per-crop", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--part-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from naflow_aug.generate import GenerateConfig, generate, load_noise, make_plan, read_rows, sample_seeds

    with tempfile.TemporaryDirectory(prefix="bench-generate-") as tmp_name:
        tmp = Path(tmp_name)
        model = args.model or _default_model(tmp)
        source = args.source or _default_source(tmp)
        noise, sha = load_noise(model, "nas", args.device)

        def config(out: Path) -> GenerateConfig:
            return GenerateConfig(
                out=str(out), source=source, model=model, noise="nas", crop=args.crop, crops=args.crops,
                crops_per_image=args.crops_per_image, samples_per_crop=args.samples_per_crop, seed=0,
                batch_size=args.batch_size, part_size=args.part_size, max_images=args.images, progress=False,
            )  # fmt: skip

        cfg = config(tmp / "x.h5")
        plan = make_plan(cfg)
        n = plan.num_samples

        # raw batched NAS: the same crops, decoded once and held in memory, the same batches
        rows = np.arange(n)
        clean_u8, ref_u8 = read_rows(plan, rows, True, {})
        dev = torch.device(args.device)
        batches = []
        for b0 in range(0, n, args.batch_size):
            sl = slice(b0, min(b0 + args.batch_size, n))
            c = torch.from_numpy(clean_u8[sl]).permute(0, 3, 1, 2).float().div(255).to(dev)
            r = torch.from_numpy(ref_u8[sl]).permute(0, 3, 1, 2).float().div(255).to(dev)
            batches.append((c, r, torch.from_numpy(sample_seeds(0, rows[sl]))))

        def sync() -> None:
            if dev.type == "cuda":
                torch.cuda.synchronize()

        cpu_raw, cpu_gen = [], []  # process CPU seconds (all threads): robust to a busy, shared machine

        def raw() -> float:
            sync()
            c0 = time.process_time()
            t0 = time.perf_counter()
            for c, r, s in batches:
                noisy, _ = noise(c, r, s)
                noisy.cpu()
            sync()
            cpu_raw.append(time.process_time() - c0)
            return time.perf_counter() - t0

        class Timed:  # the same noise function, timing what the generator spends inside it
            mode, classes, needs_reference, device = noise.mode, noise.classes, noise.needs_reference, dev
            inside = 0.0

            def __call__(self, *a):
                t = time.perf_counter()
                result = noise(*a)
                sync()
                self.inside += time.perf_counter() - t
                return result

        outside_s = []

        def gen(i: int) -> float:
            out = tmp / f"gen{i}.h5"
            timed = Timed()
            c0 = time.process_time()
            t0 = time.perf_counter()
            generate(GenerateConfig(**{**cfg.__dict__, "out": str(out)}), noise_fn=timed, model_sha=sha)
            sync()
            seconds = time.perf_counter() - t0
            cpu_gen.append(time.process_time() - c0)
            outside_s.append(seconds - timed.inside)
            out.unlink()
            return seconds

        noise(*batches[0])  # warm-up (first-call allocations)
        raw_s, gen_s = [], []
        for i in range(args.repeats):
            raw_s.append(raw())
            gen_s.append(gen(i))
        raw_med, gen_med = statistics.median(raw_s), statistics.median(gen_s)

    name = (
        torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    )
    print(f"bench_generate: {n} samples of {args.crop}x{args.crop} ({args.crops} crops of {args.images} "
          f"images, {args.samples_per_crop} per crop), batch {args.batch_size}, "
          f"model {Path(model).name}, source {Path(source).name}, device {name}")  # fmt: skip
    print()
    print("| measurement | samples | median s | samples/s | ratio to raw NAS |")
    print("|---|---|---|---|---|")
    print(
        f"| raw batched NAS (in memory, nothing written) | {n} | {raw_med:.2f} | {n / raw_med:.2f} | 1.00 |"
    )
    print(f"| generate -> HDF5 (read, NAS, write, join) | {n} | {gen_med:.2f} | {n / gen_med:.2f} | "
          f"{raw_med / gen_med:.2f} |")  # fmt: skip
    print(f"| generate, best run (vs best raw run) | {n} | {min(gen_s):.2f} | {n / min(gen_s):.2f} | "
          f"{min(raw_s) / min(gen_s):.2f} |")  # fmt: skip
    cr, cg = statistics.median(cpu_raw), statistics.median(cpu_gen)
    print(
        f"| CPU time, all threads (median; raw {cr:.2f} s) | {n} | {cg:.2f} | {n / cg:.2f} | {cr / cg:.2f} |"
    )
    print()
    print(f"all runs (s): raw {[round(x, 2) for x in raw_s]}, generate {[round(x, 2) for x in gen_s]}")
    print(
        f"generator time outside the noise function (scan, read, convert, write, fsync, join; s): "
        f"{[round(x, 2) for x in outside_s]} = {statistics.median(outside_s) / gen_med:.1%} of the median run"
    )
    print(f"target ratio >= 0.90 (median): {'met' if raw_med / gen_med >= 0.9 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
