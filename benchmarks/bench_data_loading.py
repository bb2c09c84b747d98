"""Training-crop throughput from full-size images: lazy PNG decoding against the cache (``prepare``).

On a simulated camera written at SIDD-Medium size (``naflow-aug simulate`` with 12-16 MP images), the
same ``SiddMediumDataset`` (160x160 crops, flips/rotations, class-balanced sampler) runs through the real
``torch.utils.data.DataLoader`` with worker processes, once over the PNG folder (every crop decodes its
two PNGs) and once over the cache; the table gives crop pairs/s of each, their ratio (target >= 50x and
>= 2,000 pairs/s from the cache), the cache build time and the peak resident memory of each worker.
Then ``naflow-aug train`` runs the paper preset for ``--train-steps`` steps from the cache on the CPU as
an end-to-end check (validation only at the end, on ``--val-pairs`` held-out pairs).

    nice .venv/bin/python benchmarks/bench_data_loading.py                      # ~10 min on 2 cores
    nice .venv/bin/python benchmarks/bench_data_loading.py --data /tmp/sim12    # reuse a simulated folder
    nice .venv/bin/python benchmarks/bench_data_loading.py --train-steps 0      # loading figures only

Everything is written under ``--work`` (default: a folder under /tmp). Throughput is measured from the
first batch on (worker start-up excluded), over ``--png-batches`` / ``--cache-batches`` batches of 8.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader


def _status(pid: int) -> dict[str, float]:
    """Resident-memory fields of /proc/PID/status, in MiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem"):
            out[key] = int(value.split()[0]) / 1024
    return out


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_loader(root: Path, *, batches: int, workers: int, batch_size: int, crop: int) -> dict:
    from naflow_aug.data import SiddMediumDataset

    ds = SiddMediumDataset(root, crop_size=crop)
    sampler = ds.balanced_sampler(num_samples=(batches + 1) * batch_size,
                                  generator=torch.Generator().manual_seed(0))  # fmt: skip
    loader = DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=workers)
    parent = _status(os.getpid())
    it = iter(loader)
    t0 = time.perf_counter()
    first = next(it)  # worker start-up and the first batch: not counted
    t1 = time.perf_counter()
    assert first["clean"].shape == (batch_size, 3, crop, crop)
    pids = [w.pid for w in getattr(it, "_workers", [])]
    cpu0, main0 = [_cpu_seconds(p) for p in pids], time.process_time()
    n = 0
    for batch in it:
        n += batch["clean"].shape[0]
        if n >= batches * batch_size:
            break
    t2 = time.perf_counter()
    cpu = sum(_cpu_seconds(p) - c for p, c in zip(pids, cpu0, strict=True)) + time.process_time() - main0
    mem = [_status(pid) for pid in pids]
    del it
    return {"pairs": n, "seconds": t2 - t1, "pairs_per_s": n / (t2 - t1), "startup_s": t1 - t0,
            "cpu_seconds": cpu, "pairs_per_cpu_s": n / cpu, "workers": mem,
            "parent_rss_mib": parent.get("VmRSS")}  # fmt: skip


def run(cmd: list[str], log: Path) -> float:
    t = time.perf_counter()
    with open(log, "w") as f:
        subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=None, help="output folder (default: a new one under /tmp)")
    ap.add_argument("--data", type=Path, help="an existing SIDD-layout folder (default: simulate one)")
    ap.add_argument("--scenes", type=int, default=1, help="simulated scenes per camera (6 cameras)")
    ap.add_argument("--shots", type=int, default=2, help="pairs per scene folder")
    ap.add_argument("--min-size", type=int, default=3000)
    ap.add_argument("--max-size", type=int, default=4000)
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers and prepare processes")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--crop", type=int, default=160)
    ap.add_argument("--png-batches", type=int, default=4)
    ap.add_argument("--cache-batches", type=int, default=1000)
    ap.add_argument("--train-steps", type=int, default=50, help="paper-preset steps from the cache (0: skip)")
    ap.add_argument("--val-pairs", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    work = args.work or Path(tempfile.mkdtemp(prefix="naflow-data-bench-", dir="/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    cli = [sys.executable, "-m", "naflow_aug.cli"]
    print(f"work folder: {work}; load average at start: {os.getloadavg()}")

    data = args.data
    if data is None:
        data = work / "sim"
        s = run([*cli, "simulate", "--out", str(data), "--scenes", str(args.scenes), "--shots",
                 str(args.shots), "--min-size", str(args.min_size), "--max-size", str(args.max_size),
                 "--no-progress"], work / "simulate.log")  # fmt: skip
        print(f"simulated camera written in {s:.0f} s")
    from naflow_aug.data.sidd import scan_sidd_medium

    pairs = list(scan_sidd_medium(data))
    mp = [p.height * p.width / 1e6 for p in pairs]
    png_bytes = sum(p.clean_path.stat().st_size + p.noisy_path.stat().st_size for p in pairs)
    print(f"data: {len(pairs)} pairs, {min(mp):.1f}-{max(mp):.1f} MP, PNG {png_bytes / 1e9:.2f} GB")

    cache = work / "cache"
    build = run([*cli, "prepare", "--data", str(data), "--out", str(cache), "--workers", str(args.workers),
                 "--no-progress"], work / "prepare.log")  # fmt: skip
    cache_bytes = sum(p.stat().st_size for p in (cache / "arrays").glob("*.npy"))
    print(f"cache: {cache_bytes / 1e9:.2f} GB built in {build:.1f} s ({len(pairs) / build:.2f} pairs/s, "
          f"{args.workers} processes)")  # fmt: skip

    kw = {"workers": args.workers, "batch_size": args.batch_size, "crop": args.crop}
    png = measure_loader(data, batches=args.png_batches, **kw)
    cached = measure_loader(cache, batches=args.cache_batches, **kw)
    ratio = cached["pairs_per_s"] / png["pairs_per_s"]
    print()
    print(f"DataLoader, {args.workers} workers, batch {args.batch_size}, {args.crop}x{args.crop} crop pairs "
          f"(class-balanced, flips/rotations); load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print("| source | pairs | seconds | pairs/s | CPU s (workers + main) | pairs per CPU s "
          "| worker peak RSS (MiB) | anon / file RSS at end (MiB) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in (("PNG (lazy decoding)", png), ("cache (prepare)", cached)):
        peak = ", ".join(f"{w['VmHWM']:.0f}" for w in r["workers"])
        end = ", ".join(f"{w['RssAnon']:.0f} / {w['RssFile']:.0f}" for w in r["workers"])
        print(f"| {name} | {r['pairs']} | {r['seconds']:.2f} | {r['pairs_per_s']:.1f} "
              f"| {r['cpu_seconds']:.2f} | {r['pairs_per_cpu_s']:.1f} | {peak} | {end} |")  # fmt: skip
    cpu_ratio = cached["pairs_per_cpu_s"] / png["pairs_per_cpu_s"]
    print(f"ratio cache / PNG: {ratio:.0f}x in pairs/s, {cpu_ratio:.0f}x in pairs per CPU second "
          "(target >= 50x); "
          f"cache {cached['pairs_per_s']:.0f} pairs/s (target >= 2000), {cached['pairs_per_cpu_s']:.0f} "
          f"per CPU second; parent RSS {cached['parent_rss_mib']:.0f} MiB")  # fmt: skip
    results = {"pairs": len(pairs), "png_gb": png_bytes / 1e9, "cache_gb": cache_bytes / 1e9,
               "build_s": build, "png": png, "cache": cached, "ratio": ratio,
               "cpu_ratio": cpu_ratio}  # fmt: skip

    if args.train_steps:
        toml = work / "paper-50.toml"
        toml.write_text(f'preset = "paper"\nsteps = {args.train_steps}\nval_every = 0\n'
                        f"val_max_pairs = {args.val_pairs}\nnum_workers = {args.workers}\nthreads = 2\n"
                        "log_every = 10\ndevice = \"cpu\"\n")  # fmt: skip
        run_dir = work / "train-paper"
        seconds = run([*cli, "train", "--config", str(toml), "--data", str(cache), "--out", str(run_dir),
                       "--no-progress"], work / "train.log")  # fmt: skip
        res = json.loads((run_dir / "results.json").read_text())
        logs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        train = [r for r in logs if r.get("kind") == "train"]
        print()
        print(f"naflow-aug train, paper preset, {args.train_steps} steps from the cache on the CPU "
              f"(batch 8 of 160x160, {args.workers} loader workers, 2 threads): {seconds:.0f} s in all, "
              f"training {res['train_seconds']:.0f} s ({res['train_seconds'] / args.train_steps:.2f} s/step);"
              f" "
              f"loss {train[0]['loss']:.3f} -> {train[-1]['loss']:.3f}; final validation "
              + ", ".join(f"{k} {v:.4f}" for k, v in res.get("final_val", {}).items()))  # fmt: skip
        results["train"] = {"seconds": seconds, "results": res}
    (work / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print(f"\nload average at the end: {os.getloadavg()}; results: {work / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
