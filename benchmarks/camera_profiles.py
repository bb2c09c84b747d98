"""Profiles of cameras the model never saw (issue 17): adapted vs mixture profiles vs 2-pair baselines.

For each camera+ISO group of ``../shared/data/nam-cc60`` (three DSLRs outside SIDD): calibrate on the
group's first 2 pairs (file-name order), score on the others (KLD / AKLD of ``naflow_aug.metrics``, one
sample per pair, lower is better):

  adapted profile      ``naflow-aug calibrate`` (default mode): a new configuration learned from the 2 pairs
  mixture profile      ``naflow-aug calibrate --mode mixture``: the mean NAS posterior of the 2 pairs
  Gaussian (2 pairs)   white Gaussian noise with the std of the 2 pairs' noise
  Poisson-Gaussian     per-channel ``var = a*x + b`` fitted on the 2 pairs
  (both baselines also rounded to 8 bits, as the cameras' files and the adapted profile are)

and, given what NAS is given (each scored pair's own noisy image as the reference):

  NAS                  ``nas``: the bundled model's noise-aware sampling at the reference's level
  profile-ref          ``profile-ref:P``: the adapted profile at the reference's per-channel noise std

The same for a few SIDD configurations of the committed split (``naflow_aug/splits/sidd_mini.toml``):
calibrate on 2 training pairs of the configuration (of two scenes where it has two), score on its
validation pairs, with NAS as the row to match and the model's own Gaussian of the configuration ("true
configuration"); a second table scores the same profiles on the configuration's other training pairs
(data the base model was trained on: NAS and the true configuration have seen them, the profile has not).

Then one denoising check (``--denoise GROUP``): a DnCNN (``naflow-aug bench``'s ``cpu`` preset) trained
on clean images (the SIDD-mini training split's ground truth) with the group's adapted profile, one with
its 2-pair Gaussian, both scored on the group's scored real pairs.

    nice -n 10 python benchmarks/camera_profiles.py --out /tmp/camera_profiles --denoise Nikon_D800_ISO1600

Prints the tables (Markdown) and writes everything to ``OUT/results.json``; profiles go to ``OUT/profiles``.
Groups can run in parallel (``--groups A B --sidd-configs`` in one process, ``--groups --sidd-configs X``
in another); ``--merge OUT1 OUT2 ...`` prints the tables of their results together; ``--reuse-profiles
EARLIER_OUT`` scores an earlier run's adapted profiles again (same recipe and pairs, checked) instead of
making them.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import os
import time
from pathlib import Path

import torch

import naflow_aug
from naflow_aug.adapt import AdaptConfig
from naflow_aug.data import sidd
from naflow_aug.data.images import load_image
from naflow_aug.evaluate import TRUE_CONFIG, HeldOutPair, noise_quality
from naflow_aug.noise import make_noise_source
from naflow_aug.noise.baselines import fit_baselines
from naflow_aug.noise.profiles import NoiseProfile, calibrate, pair_files
from naflow_aug.runs import atomic_write_json

SHARED = Path(os.environ.get("NAFLOW_AUG_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
NAM = SHARED / "data" / "nam-cc60"
SIDD = SHARED / "data" / "sidd-medium-mini"
# one configuration per phone with at least 2 training pairs and a validation pair in the committed split
SIDD_CONFIGS = ("G4_00100", "GP_00800", "IP_01600", "S6_03200")
# Settings chosen leave-one-group-out (naflow_aug/adapt.py's module doc): the response's offset
# (AdaptConfig.offset) was kept for a group when, on the other four groups, it lowered the mean of the
# relative KLD and AKLD changes; it did for four groups, not for Nikon_D600_ISO3200 (it raised KLD by 2 % on
# average on the other four), which therefore runs without it. SIDD configurations use the choice of all
# five groups (kept).
LEAVE_ONE_GROUP_OUT = {"Nikon_D600_ISO3200": {"offset": False}}
ROWS = ("adapted profile", "mixture profile", "Gaussian (2 pairs)", "Poisson-Gaussian (2 pairs)")
# the adapted profile rounds to 8 bits as the cameras' files are; the baselines rounded alike, for fairness
AT_LEVEL = "adapted profile at its noisy image's level (profile-ref)"
NAS = "NAS (own noisy image)"
ROUNDED = ("Gaussian (2 pairs), 8-bit", "Poisson-Gaussian (2 pairs), 8-bit")
log = logging.getLogger("camera_profiles")


class _Rounded:
    """A noise source whose output is rounded to 8 bits (the 2-pair baselines as an 8-bit camera)."""

    def __init__(self, source) -> None:
        self.source, self.classes = source, source.classes

    def __call__(self, clean, **kwargs):
        noisy, params = self.source(clean, **kwargs)
        return (noisy * 255).round() / 255, params


def _profiles(
    base, name: str, label: str, calib: list, files: list[str], out: Path, config: AdaptConfig,
    reuse: Path | None = None,
) -> dict:
    """Adapted and mixture profiles of one group, saved under out/profiles, and the 2-pair baselines fitted
    as configuration ``label`` (the scored pairs' label); their sources and timings. An adapted profile of
    the same name under ``reuse``/profiles (an earlier run's, same recipe) is taken instead of made."""
    folder = out / "profiles"
    earlier = None if reuse is None else reuse / "profiles" / f"{name}.json"
    t = time.perf_counter()
    if earlier is not None and earlier.is_file():
        adapted = NoiseProfile.load(earlier)
        # fields added to the recipe since then take their defaults
        if AdaptConfig(**adapted.extra["adapt"]) != config or adapted.files != tuple(files):
            raise ValueError(f"{earlier} was made with another recipe or other pairs")
        adapt_s = adapted.extra["adapt_info"]["seconds"]
    else:
        adapted = calibrate(base, calib, files=files, adapt_config=config, progress=True)
        adapt_s = time.perf_counter() - t
    adapted_path = adapted.save(folder / f"{name}.json")
    t = time.perf_counter()
    mixture = calibrate(base, calib, mode="mixture", files=files)
    mixture_s = time.perf_counter() - t
    mixture_path = mixture.save(folder / f"{name}.mixture.json")
    fitted = fit_baselines((c, n, label) for c, n in calib)
    sources = {
        "adapted profile": make_noise_source(f"profile:{adapted_path}", base),
        "mixture profile": make_noise_source(f"profile:{mixture_path}", base),
        "Gaussian (2 pairs)": make_noise_source("gaussian-per-config", baselines=fitted),
        "Poisson-Gaussian (2 pairs)": make_noise_source("poisson-gaussian", baselines=fitted),
    }
    sources[AT_LEVEL] = make_noise_source(f"profile-ref:{adapted_path}", base)
    sources[NAS] = make_noise_source("nas", base)
    sources[ROUNDED[0]] = _Rounded(sources["Gaussian (2 pairs)"])
    sources[ROUNDED[1]] = _Rounded(sources["Poisson-Gaussian (2 pairs)"])
    info = {
        "adapt_seconds": round(adapt_s, 1),
        "adapt_info": adapted.extra["adapt_info"],
        "mixture_seconds": round(mixture_s, 1),
        "mixture_top": mixture.top(3),
        "gaussian_sigma_255": fitted[label].gaussian_std * 255,
        "profile": str(adapted_path),
    }
    return {"sources": sources, "info": info}


def _score(
    held: list[HeldOutPair], sources: dict, model=None, samples: int = 1, seed: int = 0
) -> dict[str, tuple[float, float]]:
    result = noise_quality(
        held, sources, model=model, samples=samples, generator=torch.Generator().manual_seed(seed)
    )
    return {r["source"]: (r["kld"], r["akld"], r["n"]) for r in result["sources"]}


def nam_groups(base, out: Path, groups: list[str], config: AdaptConfig, reuse: Path | None = None) -> dict:
    results = {}
    for group in groups:
        files = pair_files(NAM / group)
        pairs = [(load_image(c), load_image(n)) for c, n in files]
        calib, rest = pairs[:2], pairs[2:]
        names = [str(n.relative_to(NAM / group)) for _, n in files]
        overrides = LEAVE_ONE_GROUP_OUT.get(group, {})
        made = _profiles(base, group, group, calib, names[:2], out, dataclasses.replace(config, **overrides),
                         reuse)  # fmt: skip
        held = [HeldOutPair(names[2 + i], group, c, n) for i, (c, n) in enumerate(rest)]
        scores = _score(held, made["sources"])
        results[group] = {"scores": scores, "scored_pairs": names[2:], "adapt_overrides": overrides,
                          **made["info"]}  # fmt: skip
        # the pairs are crops of a few scenes: the pairs of scenes the calibration pairs did not show
        seen = {_scene(n) for n in names[:2]}
        other = [h for h in held if _scene(h.name) not in seen]
        if other:
            results[group]["other_scenes"] = {"scores": _score(other, made["sources"]),
                                              "scored_pairs": [h.name for h in other]}  # fmt: skip
        log.info("%s: %s", group, scores)
    return results


def _scene(name: str) -> str:
    """The scene of a nam-cc60 file (``..._B2_147.png``: crop 147 of scene B2)."""
    parts = Path(name).stem.split("_")
    return parts[-2] if len(parts) >= 2 else name


def sidd_configs(
    base, out: Path, configs: list[str], config: AdaptConfig, reuse: Path | None = None, samples: int = 8,
    draws: int = 0,
) -> tuple[dict, dict]:
    """Per configuration: scores on its validation pairs (the committed split), and on its training pairs
    outside the two calibration pairs; ``samples`` draws per pair (a configuration has one validation
    pair: one draw's KLD varies by about 0.002 between seeds). ``draws`` > 0: also each pair's single
    draws of the profile at the reference's level and of NAS, for :func:`_paired_table`."""
    pairs = list(sidd.scan_sidd_medium(SIDD))
    train_ids, val_ids = (set(x) for x in sidd.load_split("sidd-mini"))
    results, rest_results = {}, {}
    for cls in configs:
        train = sorted(
            (p for p in pairs if p.cls == cls and p.instance in train_ids), key=lambda p: str(p.noisy_path)
        )
        val = sorted(
            (p for p in pairs if p.cls == cls and p.instance in val_ids), key=lambda p: str(p.noisy_path)
        )
        if len(train) < 2 or not val:
            raise ValueError(
                f"SIDD configuration {cls} has {len(train)} training / {len(val)} validation pairs"
            )
        chosen = _two_scenes(train)
        calib = [(load_image(p.clean_path), load_image(p.noisy_path)) for p in chosen]
        files = [p.noisy_path.name for p in chosen]
        made = _profiles(base, f"sidd_{cls}", cls, calib, files, out, config, reuse)
        sources = {**made["sources"], "true configuration": TRUE_CONFIG}
        results[cls] = {**_score_pairs(val, cls, sources, base, samples), **made["info"]}
        paired = {k: sources[k] for k in (AT_LEVEL, NAS)}
        # more held-out pairs for the profile (the base model was trained on them: NAS and the model's
        # own configuration have seen them, the profile has not)
        rest = [p for p in train if p not in chosen]
        if rest:
            rest_results[cls] = {**_score_pairs(rest, cls, sources, base, samples), **made["info"]}
        for part, scored in ((results, val), (rest_results, rest)):
            if draws and scored:
                part[cls]["draws"] = _draws(scored, cls, paired, base, draws)
        log.info("%s: %s", cls, results[cls]["scores"])
    return results, rest_results


def _two_scenes(train: list) -> list:
    """Two calibration pairs of a configuration's training pairs (path order): the first pair of each of the
    first two scene instances, or the two pairs of its only instance (two shots of one scene give the
    level fit half the intensities that two scenes give)."""
    firsts: dict[str, object] = {}
    for p in train:
        firsts.setdefault(p.instance, p)
    return list(firsts.values())[:2] if len(firsts) >= 2 else train[:2]


def _draws(pairs: list, cls: str, sources: dict, base, draws: int) -> dict[str, dict[str, list]]:
    """Per scored pair: each source's (KLD, AKLD) of ``draws`` single draws, draw d from seed d (so two
    sources' draws pair up)."""
    out: dict[str, dict[str, list]] = {}
    for p in pairs:
        held = [HeldOutPair(p.noisy_path.name, cls, load_image(p.clean_path), load_image(p.noisy_path))]
        per_draw = [_score(held, sources, base, 1, seed=d) for d in range(draws)]
        out[p.noisy_path.name] = {name: [s[name][:2] for s in per_draw] for name in sources}
    return out


def _paired_table(results: dict, title: str, better: str = AT_LEVEL, than: str = NAS) -> str:
    """``better`` - ``than`` on KLD and AKLD: per draw, the mean over configurations' pairs (the spread of
    the sampling), and per pair, the mean over draws (the spread over images), each with a paired bootstrap
    interval (negative: ``better`` is closer to the real noise)."""
    from naflow_aug.bench import paired_bootstrap

    pairs = [(cls, name, d) for cls, r in results.items() for name, d in r.get("draws", {}).items()]
    if not pairs:
        return ""
    n_draws = min(len(d[better]) for _, _, d in pairs)
    lines = [f"### {title}: {better} minus {than} ({len(pairs)} pairs x {n_draws} draws)", "",
             "| measure | mean difference | over draws (95 %) | over pairs (95 %) |", "|---|---|---|---|"]
    for m, measure in enumerate(("KLD", "AKLD")):
        diff = torch.tensor([[d[better][k][m] - d[than][k][m] for k in range(n_draws)] for _, _, d in pairs],
                            dtype=torch.float64)  # fmt: skip
        by_draw = paired_bootstrap(diff.mean(dim=0).numpy())
        by_pair = paired_bootstrap(diff.mean(dim=1).numpy())
        lines.append(f"| {measure} | {by_draw['mean']:+.4f} | [{by_draw['lo']:+.4f}, {by_draw['hi']:+.4f}] | "
                     f"[{by_pair['lo']:+.4f}, {by_pair['hi']:+.4f}] |")  # fmt: skip
    return "\n".join(lines) + "\n"


def _score_pairs(pairs: list, cls: str, sources: dict, base, samples: int) -> dict:
    held = [HeldOutPair(p.noisy_path.name, cls, load_image(p.clean_path), load_image(p.noisy_path))
            for p in pairs]  # fmt: skip
    return {"scores": _score(held, sources, base, samples), "scored_pairs": [h.name for h in held],
            "samples": samples}  # fmt: skip


def _table(results: dict, rows: tuple[str, ...], title: str) -> str:
    head = ["group", *rows]
    lines = [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    sums = {r: [0.0, 0.0, 0] for r in rows}
    means = {r: [0.0, 0.0] for r in rows}
    for group, res in results.items():
        cells = [f"{group} ({res['scores'][rows[0]][2]})"]
        for r in rows:
            k, a, n = res["scores"][r]
            cells.append(f"{k:.3f} / {a:.3f}")
            sums[r][0] += k * n
            sums[r][1] += a * n
            sums[r][2] += n
            means[r][0] += k / len(results)
            means[r][1] += a / len(results)
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(
        "| mean of groups | " + " | ".join(f"**{means[r][0]:.3f} / {means[r][1]:.3f}**" for r in rows) + " |"
    )
    lines.append(
        "| all scored pairs | "
        + " | ".join(f"{sums[r][0] / sums[r][2]:.3f} / {sums[r][1] / sums[r][2]:.3f}" for r in rows)
        + " |"
    )
    return "\n".join(lines) + "\n"


def _denoise_inputs(out: Path, group: str, nam: dict) -> tuple[Path, Path]:
    """The clean training images (SIDD-mini training ground truth, linked) and a manifest of the group's
    scored pairs."""
    clean_dir = out / "denoise" / "clean"
    clean_dir.mkdir(parents=True, exist_ok=True)
    train_ids, _ = (set(x) for x in sidd.load_split("sidd-mini"))
    for p in sidd.scan_sidd_medium(SIDD):
        link = clean_dir / f"{p.instance}_{p.clean_path.name}"
        if p.instance in train_ids and not link.exists():
            link.symlink_to(p.clean_path)
    manifest = out / "denoise" / f"{group}.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["noisy", "clean", "class"])
        for name in nam[group]["scored_pairs"]:
            w.writerow([NAM / group / name, NAM / group / name.replace("noisy", "clean", 1), group])
    return clean_dir, manifest


def _training_sets(out: Path, clean_dir: Path, noises: dict[str, str], model: str) -> dict[str, Path]:
    """One HDF5 training set per noise (``naflow-aug generate``): the same 32 random 96x96 crops of every
    clean image (seed 0) in each, so the denoisers differ by their noise only."""
    from naflow_aug.generate import GenerateConfig, generate

    sets = {}
    for spec, label in noises.items():
        h5 = out / "denoise" / "h5" / f"{label.split(' ')[0]}.h5"
        h5.parent.mkdir(parents=True, exist_ok=True)
        generate(GenerateConfig(
            out=str(h5), source=str(clean_dir), source_kind="clean", model=model, noise=spec, crop=96,
            crops="random", crops_per_image=32, seed=0, resume=h5.exists(),
        ))  # fmt: skip
        sets[spec] = h5
    return sets


def denoise_check(
    base, out: Path, group: str, nam: dict, seeds: list[int], data: str = "h5", model: str = "sidd-mini",
    **overrides,
) -> dict:
    """DnCNN (cpu preset, ``overrides`` changing it) trained on SIDD-mini training ground truth with the
    group's adapted profile, and with its 2-pair Gaussian, once per seed; all scored on the group's scored
    real pairs. ``data="h5"``: on HDF5 training sets generated once per noise (:func:`_training_sets`);
    ``"online"``: noise drawn for every batch (costlier: the profile samples the flow each step). Returns
    each seed's PSNR / SSIM per training noise and each scored image's PSNR."""
    from naflow_aug.bench import bench_from_paths

    clean_dir, manifest = _denoise_inputs(out, group, nam)
    sigma = nam[group]["gaussian_sigma_255"]
    names = {
        f"profile:{nam[group]['profile']}": "adapted profile",
        f"gaussian:{sigma:.4f}": "Gaussian (2 pairs)",
        "identity": "none (the noisy input)",
    }
    t = time.perf_counter()
    sets = _training_sets(out, clean_dir, dict(list(names.items())[:2]), model) if data == "h5" else {}
    runs, items = [], []
    for seed in seeds:
        rows = []
        if data == "h5":
            for spec, h5 in sets.items():
                res = bench_from_paths(
                    out / "denoise" / group / f"h5-{h5.stem}" / f"seed-{seed}", train=[h5], pairs=manifest,
                    denoisers=["identity"] if not rows else [], preset="cpu", progress=True, resume=True,
                    seed=seed, **overrides,
                )  # fmt: skip
                rows += [{**r, "source": spec if r["source"].startswith("hdf5:") else r["source"]}
                         for r in res["rows"]]  # fmt: skip
        else:
            rows = bench_from_paths(
                out / "denoise" / group / f"seed-{seed}", clean=clean_dir, noise=list(names)[:2],
                pairs=manifest, denoisers=["identity"], preset="cpu", model=base, progress=True, resume=True,
                seed=seed, **overrides,
            )["rows"]  # fmt: skip
        runs.append({names.get(r["source"], r["source"]): r["pairs"]["overall"] for r in rows})
        items.append({names.get(r["source"], r["source"]): {i["name"]: i["psnr"] for i in r["pairs"]["items"]}
                      for r in rows})  # fmt: skip
        log.info("denoising check %s seed %d: %s", group, seed, runs[-1])
    return {"group": group, "seeds": seeds, "runs": runs, "items": items, "preset_overrides": overrides,
            "data": data, "seconds": round(time.perf_counter() - t, 1), "noise": list(names)[:2]}  # fmt: skip


def _denoise_table(check: dict) -> str:
    from naflow_aug.bench import paired_bootstrap

    runs = check["runs"]
    data = check.get("data", "online")
    head = f"### denoising check ({check['group']}: DnCNN, bench cpu preset"
    head += f" with {check['preset_overrides']}" if check.get("preset_overrides") else ""
    lines = [
        head + f", {data} training noise, seeds {check['seeds']}, scored on the group's real pairs)",
        "",
        "| training noise | PSNR mean ± std | SSIM mean | PSNR per seed |",
        "|---|---|---|---|",
    ]
    for name in runs[0]:
        psnr = torch.tensor([r[name]["psnr"] for r in runs], dtype=torch.float64)
        ssim = sum(r[name]["ssim"] for r in runs) / len(runs)
        spread = float(psnr.std()) if len(runs) > 1 else 0.0
        per_seed = ", ".join(f"{v:.2f}" for v in psnr.tolist())
        lines.append(f"| {name} | {float(psnr.mean()):.2f} ± {spread:.2f} | {ssim:.4f} | {per_seed} |")
    a, b = "adapted profile", "Gaussian (2 pairs)"
    if check.get("items") and all(a in it and b in it for it in check["items"]):
        seed_diffs = [r[a]["psnr"] - r[b]["psnr"] for r in runs]
        names = sorted(set.intersection(*(set(it[a]) & set(it[b]) for it in check["items"])))
        diffs = [sum(it[a][n] - it[b][n] for it in check["items"]) / len(runs) for n in names]
        bs = paired_bootstrap(diffs)
        per_seed = ", ".join(f"{d:+.2f}" for d in seed_diffs)
        interval = f"[{bs['lo']:+.2f}, {bs['hi']:+.2f}]"
        lines += ["", f"{a} minus {b}: per seed {per_seed} dB; per scored image, mean over seeds: "
                  f"{bs['mean']:+.2f} dB, 95 % bootstrap {interval} ({bs['n']} images)"]
        by_scene: dict[str, list[float]] = {}
        for n, d in zip(names, diffs, strict=True):
            by_scene.setdefault(_scene(n), []).append(d)
        lines.append("by scene: " + ", ".join(f"{sc} {sum(v) / len(v):+.2f} dB ({len(v)} images)"
                                              for sc, v in sorted(by_scene.items())))  # fmt: skip
    return "\n".join(lines) + f"\n\n({check['seconds']:.0f} s)\n"


def print_tables(results: dict) -> None:
    """The Markdown tables of one run's results (or of several runs' results merged)."""
    nam = results.get("nam_cc60") or {}
    rounded = ROUNDED if nam and all(r in g["scores"] for g in nam.values() for r in ROUNDED) else ()
    if nam:
        title = "nam-cc60: calibrate on 2 pairs, score on the rest (KLD / AKLD)"
        with_ref = tuple(r for r in (NAS, AT_LEVEL) if all(r in g["scores"] for g in nam.values()))
        print(_table(nam, (*ROWS, *rounded, *with_ref), title))
        other = {g: r["other_scenes"] for g, r in nam.items() if "other_scenes" in r}
        if other:
            title = "nam-cc60: only the scored pairs of other scenes than the 2 calibration pairs'"
            print(_table(other, (*ROWS, *rounded, *with_ref), title))
    sidd_rows: tuple[str, ...] = ()
    if results.get("sidd"):
        sidd_rows = tuple(r for r in (*ROWS, *rounded, NAS, AT_LEVEL, "true configuration")
                          if all(r in g["scores"] for g in results["sidd"].values()))  # fmt: skip
        print(
            _table(
                results["sidd"], sidd_rows, "SIDD-mini: calibrate on 2 training pairs, score on validation"
            )
        )
    both = {f"{k} (validation)": v for k, v in results.get("sidd", {}).items()}
    both.update({f"{k} (other training pairs)": v for k, v in results.get("sidd_rest", {}).items()})
    parts = (("SIDD validation pairs", results.get("sidd", {})), ("SIDD, all held-out pairs", both))
    for title, part in parts:
        table = _paired_table(part, title)
        if table:
            print(table)
    if results.get("sidd_rest"):
        rest = results["sidd_rest"].values()
        rest_rows = tuple(r for r in sidd_rows if all(r in g["scores"] for g in rest))
        title = "SIDD-mini: the same profiles on the configuration's other training pairs (base model's data)"
        print(_table(results["sidd_rest"], rest_rows, title))
    for check in results.get("denoise", []):
        if "runs" in check:
            print(_denoise_table(check))
    times = [r["adapt_seconds"] for part in ("nam_cc60", "sidd") for r in results.get(part, {}).values()]
    if times:
        print(f"adaptation seconds per profile: {times}")


def merge(paths: list[str]) -> dict:
    """The results.json of several runs (e.g. groups or denoising seeds run in parallel) as one; denoising
    checks of one group and preset are joined into one check over all their seeds."""
    merged: dict = {"nam_cc60": {}, "sidd": {}, "sidd_rest": {}, "denoise": []}
    checks: dict[str, dict] = {}
    for path in paths:
        data = json.loads((Path(path) / "results.json").read_text(encoding="utf-8"))
        for key in ("nam_cc60", "sidd", "sidd_rest"):
            if not data.get("profiles_from"):  # a denoising-only run repeats an earlier run's profile
                merged[key].update(data.get(key, {}))
        for check in data.get("denoise", []):
            what = ("group", "preset_overrides", "noise", "data")
            key = json.dumps([check.get(k) for k in what])
            if key not in checks:
                checks[key] = {**check, "seeds": [], "runs": [], "items": [], "seconds": 0.0}
            checks[key]["seeds"] += check["seeds"]
            checks[key]["runs"] += check["runs"]
            checks[key]["items"] += check.get("items", [])
            checks[key]["seconds"] += check["seconds"]
        merged.setdefault("adapt", data.get("adapt"))
    merged["nam_cc60"] = dict(sorted(merged["nam_cc60"].items()))
    merged["denoise"] = list(checks.values())
    return merged


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="output folder (profiles, results.json)")
    p.add_argument("--model", default="sidd-mini")
    p.add_argument("--groups", nargs="*", default=None, help="nam-cc60 groups (default: all five)")
    p.add_argument("--sidd-configs", nargs="*", default=list(SIDD_CONFIGS))
    p.add_argument("--denoise", default=None, help="nam-cc60 group of the denoising check (default: none)")
    p.add_argument("--steps", type=int, default=None, help="adaptation steps (default: the recipe's)")
    p.add_argument("--denoise-seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--denoise-data", choices=("h5", "online"), default="h5",
                   help="denoising check: train on HDF5 sets generated once per noise (default) or on noise "
                        "drawn for every batch")  # fmt: skip
    p.add_argument("--denoise-epochs", type=int, default=None, help="override the cpu preset's epochs")
    p.add_argument("--denoise-steps", type=int, default=None, help="override its steps per epoch")
    p.add_argument("--denoise-milestone", type=int, default=None, help="epoch after which the lr drops x0.1")
    p.add_argument("--profiles-from", default=None,
                   help="take the nam-cc60 profiles of this earlier run (its results.json) for the denoising "
                        "check instead of making them")  # fmt: skip
    p.add_argument("--reuse-profiles", default=None,
                   help="take the adapted profiles of this earlier run (same recipe, same pairs) where it "
                        "has them instead of making them again")  # fmt: skip
    p.add_argument("--sidd-samples", type=int, default=8, help="draws per scored SIDD pair (default 8)")
    p.add_argument("--paired-draws", type=int, default=0,
                   help="SIDD: single draws per pair of profile-ref and NAS for a paired interval (e.g. 12)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--merge", nargs="+", default=None, help="only print the tables of these runs' outputs")
    args = p.parse_args()
    if args.merge:
        print_tables(merge(args.merge))
        return
    if not args.out:
        p.error("--out is required")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = naflow_aug.load(args.model)
    config = AdaptConfig() if args.steps is None else AdaptConfig(steps=args.steps)
    groups = args.groups if args.groups is not None else sorted(d.name for d in NAM.iterdir() if d.is_dir())
    results: dict = {"model": args.model, "model_sha256": base.checkpoint_sha256, "adapt": config.to_dict()}
    reuse = None if args.reuse_profiles is None else Path(args.reuse_profiles)
    if args.profiles_from:
        results["profiles_from"] = args.profiles_from
        earlier = json.loads((Path(args.profiles_from) / "results.json").read_text(encoding="utf-8"))
        results["nam_cc60"] = {g: r for g, r in earlier["nam_cc60"].items() if g == args.denoise}
    else:
        results["reused_profiles_of"] = args.reuse_profiles
        results["nam_cc60"] = nam_groups(base, out, groups, config, reuse)
    atomic_write_json(out / "results.json", results)
    if args.sidd_configs and not args.profiles_from:
        results["sidd"], results["sidd_rest"] = sidd_configs(
            base, out, args.sidd_configs, config, reuse, args.sidd_samples, args.paired_draws
        )
        atomic_write_json(out / "results.json", results)
    if args.denoise:
        overrides = {"epochs": args.denoise_epochs, "steps_per_epoch": args.denoise_steps}
        if args.denoise_milestone is not None:
            overrides["lr_milestones"] = (args.denoise_milestone,)
        overrides = {k: v for k, v in overrides.items() if v is not None}
        nam = results["nam_cc60"]
        check = denoise_check(base, out, args.denoise, nam, args.denoise_seeds, args.denoise_data, args.model,
                              **overrides)  # fmt: skip
        results["denoise"] = [check]
        atomic_write_json(out / "results.json", results)
    print_tables(results)


if __name__ == "__main__":
    main()
