"""diffusers-spatial: make text-to-image models put things where the prompt says."""

from .metric._registration import register_evaluate_module as _register_evaluate_module

__version__ = "0.1.0.dev0"

# `evaluate.load("spatial_consistency")` then resolves offline from any folder (standard library only; cheap).
_register_evaluate_module(quiet=True)
