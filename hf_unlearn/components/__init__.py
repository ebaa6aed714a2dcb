"""The parts methods are made of: config fields, gradient transforms and update procedures."""

from .arguments import (
    AdversaryArguments,
    ComponentArguments,
    ForgetLossArguments,
    MaskingArguments,
    NormalizationArguments,
    OptimizerArguments,
    RateArguments,
    RepresentationAnchorArguments,
    TransformArguments,
    WagleArguments,
)
from .procedures import MetaUnlearningLoop, OptimizerUpdate, UpdateProcedure
from .transforms import Adversary, DisruptionMask, Reference, RetainMomentum, WagleMask

__all__ = [
    "Adversary",
    "AdversaryArguments",
    "ComponentArguments",
    "DisruptionMask",
    "ForgetLossArguments",
    "MaskingArguments",
    "MetaUnlearningLoop",
    "NormalizationArguments",
    "OptimizerArguments",
    "OptimizerUpdate",
    "RateArguments",
    "Reference",
    "RepresentationAnchorArguments",
    "RetainMomentum",
    "TransformArguments",
    "UpdateProcedure",
    "WagleArguments",
    "WagleMask",
]
