from __future__ import annotations

import pytest
import torch

from naflow_aug.denoisers import (
    DnCNN,
    DnCNNConfig,
    checkpoint_name,
    latest_checkpoint,
    load_dncnn,
    save_dncnn,
)


def test_paper_dncnn_has_the_documented_parameters_and_keys():
    model = DnCNN.paper()
    assert sum(p.numel() for p in model.parameters()) == 670_531
    keys = set(model.state_dict())
    expected = {"model.0.weight", "model.0.bias", "model.56.weight", "model.56.bias"}
    for k in range(18):
        expected |= {f"model.{2 + 3 * k}.weight", f"model.{2 + 3 * k}.bias"}
        expected |= {
            f"model.{3 + 3 * k}.{name}"
            for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
        }
    assert keys == expected
    bn = model.model[3]
    assert bn.eps == 1e-4 and bn.momentum == 0.9


def test_small_dncnn_is_smaller_and_residual():
    model = DnCNN.small().eval()
    assert model.config == DnCNNConfig(depth=5, width=16)
    assert sum(p.numel() for p in model.parameters()) < 10_000
    # zero body output -> identity, proving the output is input - body(input)
    last = model.model[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    x = torch.rand(2, 3, 9, 11, generator=torch.Generator().manual_seed(0))
    assert torch.equal(model(x), x)


def test_bad_configs_and_inputs_raise():
    with pytest.raises(ValueError, match="depth"):
        DnCNNConfig(depth=1)
    with pytest.raises(ValueError, match="expects"):
        DnCNN.small()(torch.rand(1, 1, 8, 8))


@pytest.mark.parametrize("epoch", [7, None])
def test_kair_checkpoint_round_trip(tmp_path, epoch):
    g = torch.Generator().manual_seed(1)
    model = DnCNN(depth=4, width=8)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
        model.model[3].running_mean.copy_(torch.randn(8, generator=g))
        model.model[3].num_batches_tracked.fill_(930)
    name = checkpoint_name(epoch) if epoch is not None else "bare.pth"
    path = save_dncnn(model, tmp_path / name, epoch=epoch)
    raw = torch.load(path, weights_only=True)
    if epoch is None:
        assert "model.0.weight" in raw
    else:
        assert path.name == "checkpoint_G3_00000007.pth"
        assert raw["epoch"] == 7 and "model.8.weight" in raw["model_state_dict"]
    loaded = load_dncnn(path)
    assert loaded.config == DnCNNConfig(depth=4, width=8)
    assert not loaded.training
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    x = torch.rand(1, 3, 8, 8, generator=g)
    assert torch.allclose(loaded(x), model.eval()(x))


def test_latest_checkpoint_and_bad_files(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    model = DnCNN(depth=3, width=4)
    for e in (2, 10, 9):
        save_dncnn(model, tmp_path / checkpoint_name(e), epoch=e)
    path, epoch = latest_checkpoint(tmp_path)
    assert epoch == 10 and path.name == "checkpoint_G3_00000010.pth"
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read"):
        load_dncnn(tmp_path / "junk.pth")
    torch.save({"foo.weight": torch.zeros(2, 2, 3, 3)}, tmp_path / "foreign.pth")
    with pytest.raises(ValueError, match="KAIR"):
        load_dncnn(tmp_path / "foreign.pth")
    state = model.state_dict()
    state["model.0.extra"] = torch.zeros(1)
    torch.save(state, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match="does not match"):
        load_dncnn(tmp_path / "extra.pth")
