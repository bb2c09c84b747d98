"""The noise-source registry's contract: every registered kind has test spellings (a new kind without one
fails here), parses to its NoiseSpec, builds from the string and the spec alike, and keeps the randomness
contract: same seed same noise, replay exact (through JSON too), a batch equals its items one at a time."""

from __future__ import annotations

import json

import pytest
import torch

from naflow_aug.noise import (
    NOISE_KINDS,
    Baselines,
    ConfigBaseline,
    ModelSource,
    NoiseParams,
    NoiseProfile,
    make_noise_source,
    noise_help,
    parse_noise_spec,
)
from naflow_aug.noise.registry import noise_kinds_help
from naflow_aug.noise_inputs import noise_input_files

CLASSES = ("A_00100", "B_00800", "C_03200")  # the tiny model of conftest.py

# the spellings each registered kind is tested with; {name} stands for a file the fixture writes
CASES: dict[str, list[str]] = {
    "random": ["random"],
    "config": ["config:B_00800"],
    "weights": ["weights:0.2,0.3,0.5", "weights:A_00100=1,C_03200=3", "weights:{weights}"],
    "nas": ["nas", "nas:reference", "nas:model"],
    "profile": ["profile:{profile}"],
    "profile-ref": ["profile-ref:{profile}"],
    "gaussian": ["gaussian:10"],
    "gaussian-per-config": ["gaussian-per-config", "gaussian-per-config:{baselines}"],
    "poisson-gaussian": ["poisson-gaussian", "poisson-gaussian:{baselines}"],
    "real": ["real"],
    "albumentations-gauss": ["albumentations-gauss"],
    "albumentations-iso": ["albumentations-iso"],
}
SPELLINGS = [(kind, spelling) for kind, spellings in CASES.items() for spelling in spellings]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("noise-inputs")
    baselines = Baselines(configs={
        "A_00100": ConfigBaseline(0.01, (0.001, 0.001, 0.001), (1e-5, 1e-5, 1e-5)),
        "C_03200": ConfigBaseline(0.08, (0.02, 0.03, 0.04), (1e-3, 1e-3, 1e-3)),
    })  # fmt: skip
    weights = folder / "weights.json"
    weights.write_text(json.dumps({"A_00100": 1, "B_00800": 2}))
    profile = NoiseProfile(classes=CLASSES, weights=(0.5, 0.25, 0.25)).save(folder / "profile.json")
    return {
        "baselines": str(baselines.save(folder / "baselines.json")),
        "weights": str(weights),
        "profile": str(profile),
        "_baselines": baselines,
    }


def test_every_registered_kind_has_a_case() -> None:
    assert set(NOISE_KINDS) == set(CASES), (
        f"kinds without test spellings: {sorted(set(NOISE_KINDS) - set(CASES))}; "
        f"cases of unregistered kinds: {sorted(set(CASES) - set(NOISE_KINDS))}"
    )


@pytest.mark.parametrize("name", list(NOISE_KINDS))
def test_argument_rule_and_help(name) -> None:
    kind = NOISE_KINDS[name]
    assert kind.form in noise_help() and kind.help in " ".join(noise_kinds_help(width=10_000).split())
    if kind.arg == "none":
        with pytest.raises(ValueError, match="takes no argument"):
            parse_noise_spec(f"{name}:x")
        assert parse_noise_spec(name).arg is None
    elif kind.arg == "required":
        for bare in (name, f"{name}:", f"{name}: "):
            with pytest.raises(ValueError, match="needs an argument"):
                parse_noise_spec(bare)
    else:
        assert kind.arg == "optional" and parse_noise_spec(name).arg is None


def _clean(b: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, 24, 32, generator=g) * 0.6 + 0.2


@pytest.mark.parametrize(("name", "spelling"), SPELLINGS)
def test_kind_keeps_the_contract(name, spelling, files, tiny_model) -> None:
    spelling = spelling.format(**files)
    spec = parse_noise_spec(spelling)
    assert spec.kind == name and spec.info is NOISE_KINDS[name] and str(spec) == spelling
    assert parse_noise_spec(spec) is spec
    source = make_noise_source(spec, tiny_model, baselines=files["_baselines"])
    assert source.spec == spelling and type(source) is type(make_noise_source(spelling, tiny_model,
                                                                                baselines=files["_baselines"]))
    assert isinstance(source, ModelSource) == spec.needs_model
    assert source.needs_reference == spec.needs_reference
    role = spec.info.input_file
    recorded = noise_input_files(spec, "sidd-mini")
    assert ("model" in recorded) == spec.needs_model
    assert (role in recorded) == (role is not None and spec.arg is not None and spec.arg in files.values())

    clean = _clean()
    reference = None
    if spec.needs_reference:
        reference = tiny_model.sample(clean, config=list(CLASSES), generator=torch.Generator().manual_seed(2))
    noisy, params = source(clean, reference=reference, generator=torch.Generator().manual_seed(7))
    assert noisy.shape == clean.shape and noisy.dtype == clean.dtype
    assert float(noisy.min()) >= 0 and float(noisy.max()) <= 1
    assert (noisy - clean).abs().mean() > 1e-3  # noise was added
    again, params2 = source(clean, reference=reference, generator=torch.Generator().manual_seed(7))
    assert torch.equal(noisy, again) and torch.equal(params.seeds, params2.seeds)
    assert params.source == spelling
    assert torch.equal(source.replay(clean, params, reference=reference), noisy)
    restored = NoiseParams.from_dict(json.loads(json.dumps(params.to_dict())))
    assert torch.equal(source.replay(clean, restored, reference=reference), noisy)
    for b in range(clean.shape[0]):  # a batch equals its items one at a time
        one_ref = None if reference is None else reference[b : b + 1]
        one = source.replay(clean[b : b + 1], params.select(b), reference=one_ref)
        assert torch.allclose(one, noisy[b : b + 1], atol=1e-6)
    if not source.replay_needs_reference:  # different items get different noise (`real` returns its input)
        same = clean[:1].expand(3, -1, -1, -1).contiguous()
        ref = None if reference is None else reference[:1].expand(3, -1, -1, -1).contiguous()
        out, _ = source(same, reference=ref, generator=torch.Generator().manual_seed(3))
        assert not torch.allclose(out[0], out[1]) and not torch.allclose(out[1], out[2])
