"""The scoring protocols, selected by name: "visor", "t2i_compbench_2d", "t2i_compbench_3d", "geneval", "esplora"."""

from __future__ import annotations

from . import esplora, geneval, t2i_compbench, visor
from .base import Protocol
from .esplora import EsploraConfig
from .geneval import GenEvalConfig
from .t2i_compbench import T2ICompBench2DConfig, T2ICompBench3DConfig
from .visor import VisorConfig

__all__ = [
    "PROTOCOLS",
    "EsploraConfig",
    "GenEvalConfig",
    "Protocol",
    "T2ICompBench2DConfig",
    "T2ICompBench3DConfig",
    "VisorConfig",
    "get_protocol",
]

PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (visor.PROTOCOL, t2i_compbench.PROTOCOL_2D, t2i_compbench.PROTOCOL_3D, geneval.PROTOCOL, esplora.PROTOCOL)
}
"""Protocol name -> `Protocol`."""


def get_protocol(name: str) -> Protocol:
    """The protocol called `name`; raises ValueError listing the known names otherwise."""
    try:
        return PROTOCOLS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown protocol {name!r}; expected one of {list(PROTOCOLS)}") from None
