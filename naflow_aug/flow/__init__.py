"""The NAFlow model: invertible layers, conditional couplings, clean-image encoder, per-class Gaussians."""

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
