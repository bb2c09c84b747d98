"""The NAFlow model: invertible layers, conditional couplings, clean-image encoder, per-class Gaussians.

layers / coupling / encoder / latent: the parts, each reporting its linear form; model: `NAFlow`;
inputs: the one set of input checks; nas: the one sampling path (seeds, posterior -> mix -> decode,
tiles), run on an engine: the model's layers (`model.LayerEngine`) or their folded form (fold: the
folding; fast: `FastNAFlow`, its kernels); noise_level, seeds: pure helpers.
"""

from .coupling import AffineInjector, ConditionalAffineCoupling, FlowStep
from .encoder import ConditionEncoder
from .latent import ClassGaussians
from .layers import FLOW_LAYERS, ActNorm, InvConv1x1, Squeeze, squeeze2x2, unsqueeze2x2
from .model import SIDD_CLASSES, NAFlow, NAFlowConfig, SampleParams

__all__ = [
    "FLOW_LAYERS",
    "SIDD_CLASSES",
    "ActNorm",
    "AffineInjector",
    "ClassGaussians",
    "ConditionEncoder",
    "ConditionalAffineCoupling",
    "FlowStep",
    "InvConv1x1",
    "NAFlow",
    "NAFlowConfig",
    "SampleParams",
    "Squeeze",
    "squeeze2x2",
    "unsqueeze2x2",
]
