"""Checkpoints: official Lightning import, own format round trip, bundled registry, bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import naflow_aug
from naflow_aug import NAFlow, NAFlowConfig
from naflow_aug.checkpoints import MODELS_DIR, REGISTRY, model_from_official
from naflow_aug.runs import sha256_file

TINY = NAFlowConfig(classes=("A_00100", "B_00200"), levels=1, transition_steps=1, conditional_steps=1,
                    hidden_channels=4, encoder_channels=8)  # fmt: skip


def _perturbed(config: NAFlowConfig = TINY) -> NAFlow:
    torch.manual_seed(0)
    model = NAFlow(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def test_official_lightning_checkpoint_loads_without_omegaconf(shared_dir: Path) -> None:
    path = shared_dir / "fixtures" / "official_naflow_lightning.ckpt"
    with pytest.raises(Exception, match="omegaconf"):  # plain weights_only refuses it
        torch.load(path, weights_only=True)
    model = naflow_aug.load(path)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert model.checkpoint_sha256 == sha256_file(path)
    parity = torch.load(shared_dir / "fixtures" / "official_naflow_parity.pt", weights_only=True)
    with torch.no_grad():
        z, logdet = model.encode(parity["noisy"], parity["clean"])
    exp = parity["expected"]
    assert float((z - exp["z"]).abs().max() / exp["z"].abs().max()) <= 1e-4
    assert float((logdet - exp["logdet"]).abs().max() / exp["logdet"].abs().max()) <= 1e-4
    reference = model_from_official(parity["checkpoint"])
    for (k, v), (k2, v2) in zip(model.state_dict().items(), reference.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2)


def test_save_load_same_outputs(tmp_path: Path) -> None:
    model = _perturbed().freeze()  # frozen like the loaded copy: both sample on the same (fast) path
    path = naflow_aug.save_checkpoint(model, tmp_path / "m.pt", extra={"step": 12})
    raw = torch.load(path, weights_only=True)  # plain data only
    assert raw["classes"] == ["A_00100", "B_00200"] and raw["extra"] == {"step": 12}
    loaded = naflow_aug.load(path)
    assert loaded.config == model.config and loaded.checkpoint_sha256 == sha256_file(path)
    clean = torch.rand(2, 3, 4, 6)
    noisy = (clean + 0.1 * torch.rand(2, 3, 4, 6)).clamp(0, 1)
    z, ld = model.encode(noisy, clean)
    z2, ld2 = loaded.encode(noisy, clean)
    assert torch.equal(z, z2) and torch.equal(ld, ld2)
    s1 = model.sample(clean, reference=noisy, seeds=[1, 2])
    s2 = loaded.sample(clean, reference=noisy, seeds=[1, 2])
    assert torch.equal(s1, s2)


def test_actnorm_initialized_state_round_trips(tmp_path: Path) -> None:
    model = NAFlow(TINY).train()
    clean = torch.rand(2, 3, 4, 4)
    model.encode(clean, clean)
    loaded = naflow_aug.load(naflow_aug.save_checkpoint(model, tmp_path / "m.pt"))
    assert all(bool(v) for k, v in loaded.state_dict().items() if k.endswith("initialized"))


def test_not_a_checkpoint(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        naflow_aug.load(text)
    tensor = tmp_path / "t.pt"
    torch.save(torch.zeros(3), tensor)
    with pytest.raises(ValueError, match="not a NAFlow checkpoint"):
        naflow_aug.load(tensor)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {"conv.weight": torch.zeros(1)}}, other)
    with pytest.raises(ValueError, match="not a NAFlow checkpoint"):
        naflow_aug.load(other)
    with pytest.raises(ValueError, match="neither a bundled model"):
        naflow_aug.load(tmp_path / "missing.pt")


def test_key_and_shape_mismatches_are_listed(tmp_path: Path) -> None:
    path = naflow_aug.save_checkpoint(_perturbed(), tmp_path / "m.pt")
    ckpt = torch.load(path, weights_only=True)
    del ckpt["state_dict"]["flow.1.actnorm.logs"]
    ckpt["state_dict"]["encoder.inp.weight"] = torch.zeros(8, 3, 3, 3)
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(
        ValueError, match=r"missing keys \['flow.1.actnorm.logs'\].*encoder.inp.weight: \(8, 3, 3, 3\)"
    ):
        naflow_aug.load(tmp_path / "bad.pt")
    ckpt = torch.load(path, weights_only=True)
    ckpt["config"]["levels"] = 2
    torch.save(ckpt, tmp_path / "bad2.pt")
    with pytest.raises(ValueError, match="does not fit the model"):
        naflow_aug.load(tmp_path / "bad2.pt")
    ckpt["config"]["colour"] = "red"
    torch.save(ckpt, tmp_path / "bad3.pt")
    with pytest.raises(ValueError, match="unknown key"):
        naflow_aug.load(tmp_path / "bad3.pt")


def test_bundled_registry_is_consistent() -> None:
    names = naflow_aug.available_models()
    assert isinstance(names, list) and all(isinstance(n, str) for n in names)
    entries = json.loads(REGISTRY.read_text())["models"]
    for name in names:
        entry = entries[name]
        assert (MODELS_DIR / entry["file"]).is_file()
        if entry.get("sha256"):
            assert sha256_file(MODELS_DIR / entry["file"]) == entry["sha256"]


def test_load_moves_to_device(tmp_path: Path, device: torch.device) -> None:
    path = naflow_aug.save_checkpoint(_perturbed(), tmp_path / "m.pt")
    model = naflow_aug.load(path, device=device)
    assert all(t.device.type == device.type for t in model.state_dict().values())
    clean = torch.rand(1, 3, 4, 4, device=device)
    assert model.sample(clean, config="B_00200", seeds=[3]).device.type == device.type


class _Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /dev/null",))


def test_code_in_a_checkpoint_is_not_run(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "payload": _Exploit()}, path)
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        naflow_aug.load(path)
