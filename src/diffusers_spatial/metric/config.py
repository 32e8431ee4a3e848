"""`EvaluationConfig`: the settings of a spatial-consistency evaluation, validated before any work starts."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from ..geometry import PROTOCOLS

__all__ = ["DEFAULT_PRIMARY_PROTOCOL", "EvaluationConfig", "PROTOCOLS"]

DEFAULT_PRIMARY_PROTOCOL = "esplora"


def _protocol_list(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return list(PROTOCOLS)
    names = [p.strip() for p in value.split(",")] if isinstance(value, str) else list(value)
    if not names or not all(isinstance(p, str) and p for p in names):
        raise ValueError(f"protocols must be protocol names from {list(PROTOCOLS)}, got {value!r}")
    unknown = [p for p in names if p not in PROTOCOLS]
    if unknown:
        raise ValueError(f"unknown protocol(s) {unknown}: choose from {list(PROTOCOLS)}")
    return list(dict.fromkeys(names))


@dataclasses.dataclass
class EvaluationConfig:
    """What to measure and with which models. Every field is checked in `__post_init__`.

    Examples:

    ```py
    >>> EvaluationConfig(protocols="visor,geneval").protocols
    ['visor', 'geneval']
    >>> EvaluationConfig(protocols=["visr"])
    Traceback (most recent call last):
      ...
    ValueError: unknown protocol(s) ['visr']: choose from ['visor', 't2i_compbench_2d', 't2i_compbench_3d', 'geneval', 'esplora']

    ```
    """

    protocols: list[str] | str | None = dataclasses.field(
        default=None, metadata={"help": "Protocols to report (names or a comma-separated string); None = all."}
    )
    primary_protocol: str | None = dataclasses.field(
        default=None,
        metadata={
            "help": "Protocol whose bias table is the report's top-level `bias_table` (what TORE reads). Default: "
            "'esplora' when measured, else the first protocol."
        },
    )
    detector: Any = dataclasses.field(
        default="embedded",
        metadata={"help": "'embedded' (offline COCO-80), a detector preset, a Hub model id, a folder, or a Detector."},
    )
    depth_model: Any = dataclasses.field(
        default=None,
        metadata={"help": "A depth preset, Hub model id or folder, or a DepthEstimator; None: no depth model."},
    )
    batch_size: int = dataclasses.field(default=8, metadata={"help": "Images per detector / depth call."})
    images_per_prompt: int | None = dataclasses.field(
        default=None,
        metadata={"help": "Consecutive images per prompt (checked, and used to group images into prompts)."},
    )
    protocol_options: dict[str, dict[str, Any]] = dataclasses.field(
        default_factory=dict,
        metadata={"help": "Per-protocol keyword options of `geometry.score_image`, e.g. {'visor': {...}}."},
    )
    detector_options: dict[str, Any] = dataclasses.field(
        default_factory=dict, metadata={"help": "Keyword options of the detector, e.g. {'score_threshold': 0.3}."}
    )

    def __post_init__(self):
        self.protocols = _protocol_list(self.protocols)
        if self.primary_protocol is None:
            self.primary_protocol = (
                DEFAULT_PRIMARY_PROTOCOL if DEFAULT_PRIMARY_PROTOCOL in self.protocols else self.protocols[0]
            )
        if self.primary_protocol not in self.protocols:
            raise ValueError(
                f"primary_protocol {self.primary_protocol!r} is not among the protocols measured {self.protocols}"
            )
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if self.images_per_prompt is not None and (
            isinstance(self.images_per_prompt, bool)
            or not isinstance(self.images_per_prompt, int)
            or self.images_per_prompt < 1
        ):
            raise ValueError(f"images_per_prompt must be a positive integer or None, got {self.images_per_prompt!r}")
        if not isinstance(self.protocol_options, Mapping):
            raise ValueError(
                f"protocol_options must map protocol names to option dicts, got {self.protocol_options!r}"
            )
        for name, options in self.protocol_options.items():
            if name not in PROTOCOLS:
                raise ValueError(f"protocol_options names unknown protocol {name!r}: choose from {list(PROTOCOLS)}")
            if not isinstance(options, Mapping):
                raise ValueError(f"protocol_options[{name!r}] must be a dict of options, got {options!r}")
            PROTOCOLS[name].make_config(options)  # unknown or invalid options fail now, not after detection
        self.protocol_options = {k: dict(v) for k, v in self.protocol_options.items()}
        if not isinstance(self.detector_options, Mapping):
            raise ValueError(f"detector_options must be a dict, got {self.detector_options!r}")
        self.detector_options = dict(self.detector_options)

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> EvaluationConfig:
        """Build from keyword arguments, leaving out the ones given as None (their defaults apply)."""
        return cls(**{k: v for k, v in kwargs.items() if v is not None})

    def settings(self) -> dict[str, Any]:
        """The JSON-serialisable settings that change the figures (pinned in `run.json` of a resumable run)."""

        def name(model: Any) -> Any:
            return model if model is None or isinstance(model, str) else getattr(model, "name", type(model).__name__)

        return {
            "protocols": list(self.protocols),
            "detector": name(self.detector),
            "depth_model": name(self.depth_model),
            "protocol_options": self.protocol_options,
            "detector_options": self.detector_options,
        }
