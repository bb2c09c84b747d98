"""naflow-aug: realistic camera noise from a frozen NAFlow, as transforms, datasets and benchmarks."""

from ._version import __version__ as __version__
from .checkpoints import available_models, load, save_checkpoint  # noqa: E402
from .flow import NAFlow, NAFlowConfig, SampleParams  # noqa: E402
from .noise import NoiseParams, NoiseSource, make_noise_source  # noqa: E402

__all__ = [
    "NAFlow",
    "NAFlowConfig",
    "NoiseParams",
    "NoiseSource",
    "SampleParams",
    "available_models",
    "load",
    "make_noise_source",
    "save_checkpoint",
]


def __getattr__(name: str):
    # `naflow_aug.transforms.NAFlowNoise(...)` after a plain `import naflow_aug`, without importing
    # torchvision/albumentations for users who never touch the transforms
    if name in ("transforms", "profiles", "baselines"):
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
