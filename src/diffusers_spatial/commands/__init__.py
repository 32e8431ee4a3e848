"""Sub-commands of the `diffusers-spatial` console script: one module each, discovered by `cli.py`.

A command module defines ``register(subparsers: argparse._SubParsersAction) -> None`` which adds its parser
and sets ``func`` (taking the parsed ``argparse.Namespace``, returning an exit code or None). Keep heavy
imports (torch, diffusers, onnxruntime) inside ``func`` so ``diffusers-spatial --help`` stays fast.
"""
