"""diffusers-spatial: make text-to-image models put things where the prompt says."""

__version__ = "0.1.0.dev0"
