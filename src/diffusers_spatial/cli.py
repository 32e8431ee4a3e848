"""The `diffusers-spatial` console script.

Each sub-command lives in its own module under :mod:`diffusers_spatial.commands` and exposes
``register(subparsers)``; the module's parser sets ``func`` to the callable that runs it. New commands
are discovered automatically, so adding one never touches this file.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys
from collections.abc import Sequence

from . import __version__, commands
from .commands._args import CommandError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diffusers-spatial",
        description="Spatially precise text-to-image generation: evaluate, generate, train data, benchmark.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(subparsers)
    _name_commands(parser)
    return parser


def _name_commands(parser: argparse.ArgumentParser) -> None:
    """Every leaf command's parser records its full name ("diffusers-spatial dataset curate") as `command_prog`,
    so that `main` names the command in its one-line errors."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                subparser.set_defaults(command_prog=subparser.prog)
                _name_commands(subparser)


class _NoTorchvisionFallbackNotice(logging.Filter):
    """transformers says, on every run without torchvision, that CLIP's image processor falls back to PIL. We never
    use torchvision (its PyPI wheels do not import beside the CPU torch): the notice is noise in every command."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision (not installed)" not in record.getMessage()


def main(argv: Sequence[str] | None = None) -> int:
    logging.getLogger("transformers.utils.import_utils").addFilter(_NoTorchvisionFallbackNotice())
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except CommandError as err:
        print(err, file=sys.stderr)
        raise
    except (ValueError, OSError) as err:  # bad input or a path that cannot be read or written: one line, exit 2
        if os.environ.get("DIFFUSERS_SPATIAL_TRACEBACK"):
            raise
        message = f"{args.command_prog}: error: {err}"
        print(message, file=sys.stderr)
        raise CommandError(message) from None
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
