"""The one pair record, splits by scene instance, and the one source scanner."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from naflow_aug.data import PairRecord, SiddPair
from naflow_aug.data.images import write_png
from naflow_aug.data.pairs import UNLABELLED, Pair, SiddMeta, load_split, select_instances, split_pairs
from naflow_aug.data.prepare import prepare_cache
from naflow_aug.data.sources import scan_source
from tests.data.test_sidd_medium import make_sidd


def _pair(instance: str, cls: str = "S6_00100") -> Pair:
    return Pair(Path(f"{instance}_gt.png"), Path(f"{instance}_noisy.png"), cls, instance)


def test_one_record_for_every_source():
    assert SiddPair is Pair and PairRecord is Pair
    p = Pair(Path("c/a.png"))
    assert (p.noisy_path, p.cls, p.instance, p.sidd, p.name) == (None, UNLABELLED, "", None, "a")
    assert Pair(Path("c/a.png"), Path("n/b.jpg")).name == "b"
    meta = SiddMeta("0052_002_S6_01600_01000_5500_N", "002", "S6", 1600, 1000, 5500, "N", "011")
    assert Pair(Path("x"), Path("y"), "S6_01600", "0052", sidd=meta).name == f"{meta.folder}/011"


def test_split_pairs_by_instance_keeps_order_and_leaves_out_the_rest(tmp_path):
    pairs = [_pair(i) for i in ("0003", "0001", "0002", "0001", "0009")]
    train, val = split_pairs(pairs, (["0001", "0003"], {"0002"}))
    assert [p.instance for p in train] == ["0003", "0001", "0001"]
    assert [p.instance for p in val] == ["0002"]
    assert select_instances(pairs, ["0009", "0002"]) == [pairs[2], pairs[4]]
    f = tmp_path / "s.toml"
    f.write_text('train = ["0001"]\nval = ["0009"]\n')
    assert split_pairs(iter(pairs), f) == ([pairs[1], pairs[3]], [pairs[4]])
    mini_train, mini_val = load_split("sidd-mini")
    named = [_pair(mini_val[0]), _pair("9999"), _pair(mini_train[0])]
    assert split_pairs(named, "sidd-mini") == ([named[2]], [named[0]])
    with pytest.raises(ValueError, match="unknown split"):
        split_pairs(named, "no-such-split")


def _folders(root: Path) -> None:
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        clean = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
        write_png(root / "pairs" / "clean" / name, clean)
        write_png(root / "pairs" / "noisy" / name, 255 - clean)
        write_png(root / "photos" / "sub" / name, clean)
    (root / "pairs.csv").write_text("noisy,clean,class\npairs/noisy/a.png,pairs/clean/a.png,S6_00100\n")


def test_scan_source_lists_every_kind_and_its_cache(tmp_path):
    sidd = make_sidd(tmp_path / "sidd")
    _folders(tmp_path)
    got = scan_source(sidd)
    assert len(got) == 7 and all(p.sidd is not None and p.noisy_path is not None for p in got)
    assert (got[0].cls, got[0].instance, got[0].sidd.phone, got[0].height) == ("S6_00100", "0001", "S6", None)
    assert scan_source(sidd, "sidd", check_sizes=True)[0].height == 20
    paired = scan_source(tmp_path / "pairs")
    assert [(p.name, p.cls, p.instance, p.sidd) for p in paired] == [
        ("a", UNLABELLED, "a", None), ("b", UNLABELLED, "b", None)]  # fmt: skip
    listed = scan_source(tmp_path / "pairs.csv")
    assert [(p.cls, p.clean_path) for p in listed] == [("S6_00100", tmp_path / "pairs" / "clean" / "a.png")]
    clean = scan_source(tmp_path / "photos")
    assert [(p.clean_path.name, p.noisy_path, p.cls) for p in clean] == [
        ("a.png", None, UNLABELLED), ("b.png", None, UNLABELLED)]  # fmt: skip
    assert len(scan_source(tmp_path / "pairs", "clean")) == 4  # a paired folder read as clean images
    prepare_cache(sidd, tmp_path / "cache", progress=False)
    cached = scan_source(tmp_path / "cache")
    assert [(p.sidd, p.cls, p.instance) for p in cached] == [(p.sidd, p.cls, p.instance) for p in got]
    assert all(p.clean_path.suffix == ".npy" and p.height is not None for p in cached)


def test_scan_source_errors(tmp_path):
    _folders(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        scan_source(tmp_path / "empty")
    with pytest.raises(ValueError, match="neither a folder nor a CSV"):
        scan_source(tmp_path / "missing")
    with pytest.raises(ValueError, match="lists pairs; use source kind 'paired'"):
        scan_source(tmp_path / "pairs.csv", "clean")
    with pytest.raises(ValueError, match="source kind must be"):
        scan_source(tmp_path / "pairs", "raw")  # type: ignore[arg-type]
