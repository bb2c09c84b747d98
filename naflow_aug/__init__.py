"""naflow-aug: realistic camera noise from a frozen NAFlow, as transforms, datasets and benchmarks."""

__version__ = "0.1.0"

from .checkpoints import available_models, load, save_checkpoint  # noqa: E402
from .flow import NAFlow, NAFlowConfig, SampleParams  # noqa: E402

__all__ = ["NAFlow", "NAFlowConfig", "SampleParams", "available_models", "load", "save_checkpoint"]
