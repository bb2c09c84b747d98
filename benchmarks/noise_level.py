"""Noise level of NAS per ISO: the mixture's own level (the official NAS) against the reference-matched one.

For every held-out real pair (default: the validation instances of the committed SIDD-mini split; or
``--pairs DIR`` for a folder of camera+ISO groups with ``noisy/`` and ``clean/``, e.g. nam-cc60) it draws
``--samples`` NAS samples with ``noise_level="model"`` (the official NAS) and with the default
``noise_level="reference"`` (:mod:`naflow_aug.flow.noise_level`), plus, for SIDD pairs, samples of the pair's
true configuration, and prints per ISO (SIDD) or per group: the real noise std (8-bit units), each
source's std and its ratio to the real one, and KLD / AKLD (``naflow_aug.metrics``).

    .venv/bin/python benchmarks/noise_level.py                       # SIDD-mini held-out tiles
    .venv/bin/python benchmarks/noise_level.py --pairs ../shared/data/nam-cc60 --max-pairs 4
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

import naflow_aug
from naflow_aug import metrics
from naflow_aug.data import sidd
from naflow_aug.data.images import load_image
from naflow_aug.data.pairs import split_pairs
from naflow_aug.evaluate import trim_to_multiple
from naflow_aug.flow.noise_level import noise_std

SHARED = Path(os.environ.get("NAFLOW_AUG_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
SOURCES = {"NAS, model level (official)": "model", "NAS, reference level (default)": "reference"}


def _sidd_pairs(data: Path, split: str) -> list[tuple[str, str, str, Path, Path]]:
    _, val = split_pairs(sidd.scan_sidd_medium(data), split)
    return [
        (f"{p.sidd.folder}/{p.noisy_path.name}", f"ISO {p.sidd.iso}", p.cls, p.clean_path, p.noisy_path)
        for p in val
    ]


def _folder_pairs(root: Path, max_pairs: int) -> list[tuple[str, str, str, Path, Path]]:
    out = []
    for group in sorted(d for d in root.iterdir() if (d / "noisy").is_dir()):
        names = sorted(p.name for p in (group / "noisy").iterdir() if (group / "clean" / p.name).is_file())
        for name in names[:max_pairs] if max_pairs else names:
            out.append(
                (f"{group.name}/{name}", group.name, "", group / "clean" / name, group / "noisy" / name)
            )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="sidd-mini", help="bundled model name or checkpoint path")
    p.add_argument("--data", default=str(SHARED / "data" / "sidd-medium-mini"), help="SIDD-Medium folder")
    p.add_argument("--split", default="sidd-mini", help="split name or TOML: its validation instances")
    p.add_argument("--pairs", help="instead: a folder of groups with noisy/ and clean/ (e.g. nam-cc60)")
    p.add_argument("--max-pairs", type=int, default=0, help="with --pairs: at most this many per group")
    p.add_argument("--max-size", type=int, default=512, help="centre crop to this side (0: whole images)")
    p.add_argument("--samples", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", help="write the per-pair and per-group figures as JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    pairs = (
        _folder_pairs(Path(args.pairs), args.max_pairs)
        if args.pairs
        else _sidd_pairs(Path(args.data), args.split)
    )
    if not pairs:
        print("no pairs found (set --data / --pairs or NAFLOW_AUG_SHARED)", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    model = naflow_aug.load(args.model)
    classes = set(model.classes)
    g = torch.Generator().manual_seed(args.seed)
    rows = []
    for name, group, cls, clean_path, noisy_path in pairs:
        clean = trim_to_multiple(load_image(clean_path), model.size_multiple, args.max_size)[None]
        noisy = trim_to_multiple(load_image(noisy_path), model.size_multiple, args.max_size)[None]
        row = {"name": name, "group": group, "real": 255 * float(noise_std(noisy, clean).mean())}
        specs = dict(SOURCES)
        if cls in classes:
            specs["true configuration"] = None
        for label, level in specs.items():
            stds, klds, aklds = [], [], []
            for _ in range(args.samples):
                seed = [int(torch.randint(0, 2**62, (), generator=g))]
                if level is None:
                    fake = model.sample(clean, config=cls, seeds=seed)
                else:
                    fake = model.sample(clean, reference=noisy, seeds=seed, noise_level=level)
                stds.append(255 * float(noise_std(fake, clean).mean()))
                klds.append(float(metrics.kld(noisy, fake, clean)))
                aklds.append(float(metrics.akld(noisy, fake, clean)))
            row[label] = {
                "std": sum(stds) / len(stds),
                "kld": sum(klds) / len(klds),
                "akld": sum(aklds) / len(aklds),
            }
        rows.append(row)
        print(
            f"{name}: real std {row['real']:.2f}; "
            + "; ".join(
                f"{k} {v['std']:.2f} (KLD {v['kld']:.3f})" for k, v in row.items() if isinstance(v, dict)
            ),
            flush=True,
        )

    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r["group"]].append(r)
    labels = [*SOURCES, "true configuration"]
    print(
        f"\nNoise std (8-bit units) and KLD / AKLD per group, {args.model}, {len(rows)} pairs, "
        f"{args.samples} samples each, seed {args.seed}; ratio = mean over pairs of std / real std\n"
    )
    head = ["group", "pairs", "real std"] + [f"{lab}: std (ratio) / KLD / AKLD" for lab in labels]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))

    def line(title: str, rs: list[dict]) -> str:
        cells = [title, str(len(rs)), f"{sum(r['real'] for r in rs) / len(rs):.2f}"]
        for lab in labels:
            have = [r for r in rs if lab in r]
            if not have:
                cells.append("")
                continue
            n = len(have)
            ratio = sum(r[lab]["std"] / r["real"] for r in have) / n
            cells.append(
                f"{sum(r[lab]['std'] for r in have) / n:.2f} ({ratio:.2f}) / "
                f"{sum(r[lab]['kld'] for r in have) / n:.4f} / {sum(r[lab]['akld'] for r in have) / n:.4f}"
            )
        return "| " + " | ".join(cells) + " |"

    def key(gname: str) -> tuple:
        return (int(gname.split()[1]), gname) if gname.startswith("ISO ") else (0, gname)

    for gname in sorted(groups, key=key):
        print(line(gname, groups[gname]))
    print(line("all", rows))
    print(f"\n{time.perf_counter() - t0:.0f} s")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "noise_level.json").write_text(json.dumps({"rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
