"""`SpatialLoRAPipeline`: an SD 1.x / 2.x, SDXL, SD3.x, FLUX.1 or Z-Image pipeline with a spatial LoRA and TORE.

Design: one family class per base architecture (the families' records are in `families.py`), each a thin subclass
of the diffusers pipeline it extends (`SpatialLoRAStableDiffusionPipeline(StableDiffusionPipeline)`, ...,
`SpatialLoRAFluxPipeline(FluxPipeline)`), behind one entry point, `SpatialLoRAPipeline.from_pretrained`, which reads the base's
`model_index.json` and dispatches. Subclassing (rather than wrapping) keeps every diffusers feature working
unchanged: all `__call__` arguments, schedulers, offloading, `load_lora_weights`, callbacks, `to()`. Every family
class is also an instance of `SpatialLoRAPipeline`.

The LoRA is fused into the weights by default (`fuse_lora`), so an image costs what the base model costs. The LoRA
is checked against the base (every layer's name and shape) BEFORE anything is loaded, and refused with a message
naming both when it was made for another architecture or layout.

Saved folders are plain diffusers folders: `model_index.json` names the diffusers base class and holds the base
weights (without the LoRA), `pytorch_lora_weights.safetensors` holds the LoRA (so `load_lora_weights(folder)`
works), plus `tore_config.json`, `spatial_lora_config.json` (what `SpatialLoRAPipeline.from_pretrained` restores)
and a model card.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging as std_logging
import math
import os
import re
import tempfile
from collections.abc import Mapping
from typing import Any

import torch
from diffusers import (
    DiffusionPipeline,
    FluxPipeline,
    StableDiffusion3Pipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    ZImagePipeline,
)
from diffusers.configuration_utils import ConfigMixin
from diffusers.utils import convert_state_dict_to_peft, convert_unet_state_dict_to_peft, logging

from ..tore import Tore
from ..tore.core import TORE_CONFIG_NAME
from ..tore.hook import ToreHook
from ..utils.files import read_json
from . import families
from .families import family_named
from .pipeline_output import SpatialLoRAPipelineOutput

logger = logging.get_logger(__name__)

# The public names are listed once, in `diffusers_spatial.pipelines.__all__`.

LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
SPATIAL_LORA_CONFIG_NAME = "spatial_lora_config.json"
SPATIAL_ADAPTER_NAME = "spatial"
_HUB_KWARGS = ("cache_dir", "force_download", "proxies", "local_files_only", "token", "revision")

EXAMPLE_DOC_STRING = """
    Examples:
        ```py
        >>> import torch
        >>> from diffusers_spatial.pipelines import SpatialLoRAPipeline

        >>> pipe = SpatialLoRAPipeline.from_pretrained(  # doctest: +SKIP
        ...     "stable-diffusion-v1-5/stable-diffusion-v1-5",
        ...     spatial_lora="diffusers-spatial/esplora-sd15",  # a LoRA file, folder or Hub repo
        ...     tore="diffusers-spatial/esplora-sd15",  # a Tore, or a folder / repo with tore_config.json
        ...     torch_dtype=torch.float16,
        ... ).to("cuda")
        >>> out = pipe("a photo of a cat to the left of a dog", generator=torch.manual_seed(0))  # doctest: +SKIP
        >>> out.prompts_used  # what TORE asked the model for  # doctest: +SKIP
        ['a photo of a dog to the right of a cat']
        >>> out.images[0].save("cat_left_of_dog.png")  # doctest: +SKIP
        ```
"""


class LoRAMismatchError(ValueError):
    """A LoRA that does not fit the base pipeline (another architecture, or another layer / rank layout)."""


class SpatialLoRAConfig(ConfigMixin):
    """What a saved `SpatialLoRAPipeline` folder records besides the diffusers components (`spatial_lora_config.json`).

    A diffusers `ConfigMixin`, as `Tore` is: `save_config(folder)` / `from_config(SpatialLoRAConfig.load_config(
    folder))`, values read through `.config`; `update(...)` changes them (validated).

    Args:
        base_pipeline_class: the diffusers class of the base ("StableDiffusionPipeline", "StableDiffusionXLPipeline").
        base_model: where the base came from (Hub id or path), for the model card.
        lora_weight_name: the LoRA file in the folder, or None when the pipeline has no LoRA.
        lora_source: where the LoRA originally came from (informational).
        lora_scale: the LoRA scale.
        fuse: whether the LoRA is fused into the weights on loading.
        tore_mode: "rewrite" or "layout" (see `diffusers_spatial.tore.ToreHook`).
        tore_cutoff_step_ratio, tore_cutoff_step_index: the "layout" mode's switch point.

    Examples:

    ```py
    >>> config = SpatialLoRAConfig("StableDiffusionPipeline", lora_scale=0.8)
    >>> config.update(fuse=False)
    >>> config.config.lora_scale, config.config.fuse
    (0.8, False)

    ```
    """

    config_name = SPATIAL_LORA_CONFIG_NAME

    def __init__(
        self,
        base_pipeline_class: str,
        base_model: str | None = None,
        lora_weight_name: str | None = None,
        lora_source: str | None = None,
        lora_scale: float = 1.0,
        fuse: bool = True,
        tore_mode: str = "rewrite",
        tore_cutoff_step_ratio: float | None = None,
        tore_cutoff_step_index: int | None = None,
    ):
        super().__init__()
        self.update(**{k: v for k, v in locals().items() if k not in ("self", "__class__")})

    def update(self, **changes: Any) -> None:
        """Change settings, validated; unknown names are refused."""
        unknown = sorted(set(changes) - set(inspect.signature(type(self).__init__).parameters) - {"self"})
        if unknown:
            raise TypeError(f"SpatialLoRAConfig has no setting(s) {unknown}")
        if "lora_scale" in changes:
            changes["lora_scale"] = _check_scale(changes["lora_scale"])
        if "fuse" in changes:
            changes["fuse"] = bool(changes["fuse"])
        if changes.get("tore_mode", "rewrite") not in ("rewrite", "layout"):
            raise ValueError(f"tore_mode must be 'rewrite' or 'layout', got {changes['tore_mode']!r}")
        self.register_to_config(**changes)


def _check_local_path(path: Any, what: str) -> None:
    """Raise FileNotFoundError for a missing path that cannot be a Hub repo id (`name` or `user/name`)."""
    if not isinstance(path, (str, os.PathLike)):
        return
    text = os.fspath(path)
    if os.path.exists(text):
        return
    local = (
        isinstance(path, os.PathLike)
        or os.path.isabs(text)
        or text.startswith((".", "~"))
        or "\\" in text
        or text.count("/") > 1
        or text.endswith((".safetensors", ".json", ".bin", ".ckpt", ".pt"))
    )
    if local:
        raise FileNotFoundError(f"{what} {text!r} does not exist (a Hub repo id looks like 'user/name')")


@contextlib.contextmanager
def _quiet_diffusers_loaders():
    """Silence diffusers' LoRA loader warnings for the duration (used where our own checks have run)."""
    loggers = [std_logging.getLogger(name) for name in ("diffusers.loaders.peft", "diffusers.loaders.lora_base")]
    levels = [logger_.level for logger_ in loggers]
    for logger_ in loggers:
        logger_.setLevel(std_logging.ERROR)
    try:
        yield
    finally:
        for logger_, level in zip(loggers, levels):
            logger_.setLevel(level)


def _check_scale(scale: Any) -> float:
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise ValueError(f"lora_scale must be a finite number, got {scale!r}")
    return float(scale)


# ----------------------------------------------------------------------------------------------------------------
# Reading and checking a LoRA
# ----------------------------------------------------------------------------------------------------------------


def read_lora(
    source: str | os.PathLike | Mapping[str, torch.Tensor], weight_name: str | None = None, **hub_kwargs
) -> tuple[dict[str, torch.Tensor], dict[str, str] | None, str | None]:
    """Read a LoRA's raw tensors without loading it into anything.

    Args:
        source: a `.safetensors` file, a folder holding one (`weight_name`, else `pytorch_lora_weights.safetensors`,
            else its only `.safetensors` file), a Hub repo id (same rule), or an in-memory state dict.
        weight_name: the file name inside a folder / repo.
        hub_kwargs: `cache_dir`, `revision`, `token`, `local_files_only`, ... for Hub downloads.

    Returns:
        `(tensors, safetensors_metadata, local_file)`: `local_file` is None for an in-memory state dict.

    Raises:
        ValueError: for pickle formats (.bin / .pt / .ckpt: only safetensors are loaded), a folder without a
            single LoRA file, or a file that is not safetensors.
    """
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    if isinstance(source, Mapping):
        tensors = dict(source)
        bad = [k for k, v in tensors.items() if not isinstance(v, torch.Tensor)]
        if bad:
            raise TypeError(f"LoRA state dict values must be tensors; {bad[:3]} are not")
        return tensors, None, None
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"spatial_lora must be a path, a Hub repo id or a state dict, got {type(source).__name__}")
    _check_local_path(source, "spatial_lora")
    path = os.fspath(source)
    if os.path.isdir(path):
        if weight_name is None:
            candidates = sorted(f for f in os.listdir(path) if f.endswith(".safetensors"))
            if LORA_WEIGHT_NAME in candidates:
                weight_name = LORA_WEIGHT_NAME
            elif len(candidates) == 1:
                weight_name = candidates[0]
            else:
                raise ValueError(
                    f"LoRA folder {path!r} holds {len(candidates)} .safetensors files {candidates}; "
                    "pass weight_name= to choose one"
                )
        path = os.path.join(path, weight_name)
    elif not os.path.exists(path):
        path = _download_lora(path, weight_name, **hub_kwargs)
    if not path.endswith(".safetensors"):
        raise ValueError(f"LoRA file {path!r} is not a .safetensors file; only safetensors weights are loaded")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"LoRA file {path!r} does not exist")
    try:
        tensors = load_file(path, device="cpu")
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata()
    except SafetensorError as err:
        raise ValueError(f"LoRA file {path!r} is not a readable safetensors file: {err}") from err
    return tensors, metadata, path


def _download_lora(repo_id: str, weight_name: str | None, **hub_kwargs) -> str:
    from huggingface_hub import hf_hub_download, list_repo_files
    from huggingface_hub.utils import EntryNotFoundError

    kwargs = {k: v for k, v in hub_kwargs.items() if k in _HUB_KWARGS and k != "proxies"}
    try:
        return hf_hub_download(repo_id, weight_name or LORA_WEIGHT_NAME, **kwargs)
    except EntryNotFoundError:
        if weight_name is not None:
            raise
    files = list_repo_files(repo_id, revision=kwargs.get("revision"), token=kwargs.get("token"))
    files = [f for f in files if f.endswith(".safetensors") and "/" not in f]
    if len(files) != 1:
        raise ValueError(
            f"Hub repo {repo_id!r} holds {len(files)} top-level .safetensors files {files}; pass weight_name="
        )
    return hf_hub_download(repo_id, files[0], **kwargs)


_LORA_KEY = re.compile(r"^(?P<module>.+?)\.(?P<kind>lora_A|lora_B|lora_magnitude_vector)(?:\.[^.]+)*$")
_FAMILY_BY_CROSS_ATTENTION = {768: "SD 1.x", 1024: "SD 2.x", 2048: "SDXL"}


def _layer_dims(module: torch.nn.Module) -> tuple[int, int] | None:
    module = getattr(module, "base_layer", module)  # already wrapped by peft
    if isinstance(module, torch.nn.Linear):
        return module.in_features, module.out_features
    if isinstance(module, torch.nn.Conv2d):
        return module.in_channels, module.out_channels
    return None


def _find_module(model: torch.nn.Module, path: str) -> torch.nn.Module | None:
    # transformers 5 flattened CLIPTextModel (no `text_model.`); LoRAs of both eras name the same layers.
    candidates = [path, path.removeprefix("text_model."), f"text_model.{path}"]
    for candidate in dict.fromkeys(candidates):
        try:
            return model.get_submodule(candidate)
        except AttributeError:
            continue
    return None


_TRANSFORMER_SHAPE_KEYS = (
    "joint_attention_dim",
    "cap_feat_dim",
    "num_attention_heads",
    "n_heads",
    "attention_head_dim",
    "dim",
)


def _describe_base(pipe) -> str:
    cls = getattr(pipe, "_base_pipeline_class", type(pipe)).__name__
    family = family_named(cls)
    config = getattr(pipe, "_spatial_config", None)
    base_model = None if config is None else config.config.base_model
    where = f"{base_model!r} " if base_model else ""
    if getattr(pipe, "unet", None) is not None:
        unet = pipe.unet.config
        shape = (
            f"UNet cross_attention_dim={unet.cross_attention_dim}, block_out_channels={list(unet.block_out_channels)}"
        )
    else:
        config = pipe.transformer.config  # the families name their widths differently
        shape = f"{type(pipe.transformer).__name__} " + ", ".join(
            f"{key}={config[key]}" for key in _TRANSFORMER_SHAPE_KEYS if key in config
        )
    return f"{where}({cls}, {family.name if family else 'unknown family'}; {shape})"


def _describe_lora(state_dict: Mapping[str, torch.Tensor]) -> str:
    prefixes = sorted({k.split(".", 1)[0] for k in state_dict})
    width = None
    for key, value in state_dict.items():
        if ".attn2.to_k." in key and ("lora_A" in key or "lora.down" in key or "lora_linear_layer.down" in key):
            width = int(value.shape[1])
            break
    parts = [f"components {prefixes}"]
    if width is not None:
        family = _FAMILY_BY_CROSS_ATTENTION.get(width)
        parts.append(f"cross-attention width {width}" + (f", i.e. {family}" if family else ""))
    if "text_encoder_2" in prefixes:
        parts.append("two text encoders (SDXL-style)")
    if "transformer" in prefixes:
        parts.append("a transformer denoiser (SD3 / Flux-style)")
    return "; ".join(parts)


def check_lora_fits(pipe, state_dict: Mapping[str, torch.Tensor], lora_name: str = "LoRA") -> int:
    """Check every layer of a diffusers-format LoRA state dict against `pipe`'s modules, before loading it.

    Each key must name a LoRA-loadable component of `pipe` (`unet` or `transformer`, `text_encoder`, ...) and a Linear /
    Conv2d layer in it; `lora_A` must take that layer's input width, `lora_B` give its output width, and both halves
    of a layer must share one rank.

    Returns:
        The number of LoRA layers checked.

    Raises:
        LoRAMismatchError: naming the LoRA, the base, up to five offending layers and what the LoRA looks made for.
    """
    components = {
        name: getattr(pipe, name)
        for name in getattr(pipe, "_lora_loadable_modules", ("unet", "text_encoder"))
        if getattr(pipe, name, None) is not None
    }
    problems: list[str] = []
    by_component: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state_dict.items():
        prefix, _, rest = key.partition(".")
        if prefix not in components:
            problems.append(f"{key}: {type(pipe).__name__} has no LoRA-loadable component {prefix!r}")
            continue
        by_component.setdefault(prefix, {})[rest] = value

    layers = 0
    for name, sub in by_component.items():
        if any(".lora_A." in key or ".lora_B." in key for key in sub):  # peft's layout already (SD3 / FLUX scripts)
            peft_keys = sub
        elif name == "unet":
            peft_keys = convert_unet_state_dict_to_peft(sub)
        else:
            peft_keys = convert_state_dict_to_peft(sub)
        halves: dict[str, dict[str, torch.Tensor]] = {}
        for key, value in peft_keys.items():
            match = _LORA_KEY.match(key)
            if match is None:
                problems.append(f"{name}.{key}: not a LoRA weight name")
                continue
            halves.setdefault(match["module"], {})[match["kind"] + key[match.end("kind") :]] = value
        for module_path, weights in halves.items():
            layers += 1
            where = f"{name}.{module_path}"
            module = _find_module(components[name], module_path)
            dims = None if module is None else _layer_dims(module)
            if dims is None:
                problems.append(f"{where}: no such Linear/Conv2d layer in the base's {name}")
                continue
            in_dim, out_dim = dims
            down, up = weights.get("lora_A.weight"), weights.get("lora_B.weight")
            if down is None or up is None:
                problems.append(f"{where}: has {'lora_B' if down is None else 'lora_A'} without its other half")
                continue
            if down.ndim < 2 or up.ndim < 2:
                problems.append(
                    f"{where}: LoRA weights must be matrices, got shapes {list(down.shape)}, {list(up.shape)}"
                )
                continue
            if down.shape[1] != in_dim:
                problems.append(f"{where}: LoRA expects input width {down.shape[1]}, the base layer has {in_dim}")
            if up.shape[0] != out_dim:
                problems.append(f"{where}: LoRA gives output width {up.shape[0]}, the base layer has {out_dim}")
            if down.shape[0] != up.shape[1]:
                problems.append(f"{where}: rank layout differs: lora_A has rank {down.shape[0]}, lora_B {up.shape[1]}")
    if not problems and layers == 0:
        problems.append("it holds no LoRA layers")
    if problems:
        shown = "\n  ".join(problems[:5]) + (f"\n  ... and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise LoRAMismatchError(
            f"{lora_name} does not fit the base {_describe_base(pipe)}: {len(problems)} problem(s) in {layers} "
            f"LoRA layer(s):\n  {shown}\nThe LoRA looks made for: {_describe_lora(state_dict)}."
        )
    return layers


# ----------------------------------------------------------------------------------------------------------------
# The pipelines
# ----------------------------------------------------------------------------------------------------------------


def _read_json(base: str | os.PathLike, filename: str, hub_kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """A JSON file from a local folder or Hub repo, or None when the folder / repo has no such file."""
    path = os.path.join(os.fspath(base), filename)
    if os.path.isdir(os.fspath(base)):
        if not os.path.isfile(path):
            return None
    else:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.utils import EntryNotFoundError

        try:
            kwargs = {k: v for k, v in hub_kwargs.items() if k in _HUB_KWARGS and k != "proxies"}
            path = hf_hub_download(os.fspath(base), filename, **kwargs)
        except EntryNotFoundError:
            return None
    return read_json(path)


class SpatialLoRAPipeline:
    r"""A diffusers text-to-image pipeline with a spatial LoRA fused in and TORE prompt rewriting.

    `SpatialLoRAPipeline.from_pretrained(...)` (or `.from_pipe(pipe, ...)`) returns a
    `SpatialLoRAStableDiffusionPipeline` (SD 1.x / 2.x bases) or a `SpatialLoRAStableDiffusionXLPipeline` (SDXL
    bases): diffusers pipelines in every respect, plus the methods below. Calls return a
    `SpatialLoRAPipelineOutput` (`images`, `nsfw_content_detected`, `prompts_used`, `tore_decisions`).
    """

    _spatial_config: SpatialLoRAConfig | None = None
    _spatial_lora_tensors: dict[str, torch.Tensor] | None = None
    _spatial_lora_metadata: dict[str, str] | None = None
    # How the loaded LoRA is applied: "fused" (in the weights), "active" (separate layers) or "disabled".
    _spatial_lora_state: str | None = None
    _tore: Tore | None = None
    _tore_hook: ToreHook | None = None

    # -- loading -------------------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        spatial_lora: str | os.PathLike | Mapping[str, torch.Tensor] | bool | None = None,
        lora_scale: float | None = None,
        tore: Tore | str | os.PathLike | bool | None = None,
        fuse: bool | None = None,
        weight_name: str | None = None,
        tore_mode: str | None = None,
        **kwargs,
    ):
        r"""Load a base pipeline, its spatial LoRA and TORE.

        Args:
            pretrained_model_name_or_path: Hub id or local folder of an SD 1.x / 2.x, SDXL, SD3.x or FLUX.1 pipeline
                (or a folder saved by `SpatialLoRAPipeline.save_pretrained`, which restores its LoRA, scale and TORE).
            spatial_lora: a diffusers-format LoRA (a `.safetensors` file, a folder, a Hub repo, or a state dict;
                kohya-style LoRAs that diffusers' `load_lora_weights` reads are accepted). None: the saved
                folder's own LoRA, if any; False: none.
            lora_scale: LoRA strength (default: the saved value, else 1.0).
            tore: a `Tore`, or a folder / Hub repo / JSON file with `tore_config.json`. None: the saved folder's
                own, if any; False: no TORE.
            fuse: fuse the LoRA into the weights and drop its layers (default True: the model then has exactly
                the base model's modules and cost per image).
            weight_name: the LoRA file's name inside `spatial_lora` when it is a folder or repo.
            tore_mode: "rewrite" (default) or "layout" (sampling-time TORE, see `ToreLayoutCallback`).
            kwargs: passed to the diffusers `from_pretrained` (`torch_dtype`, `variant`, `revision`, `cache_dir`,
                `token`, `local_files_only`, ...).

        Raises:
            FileNotFoundError: for a local path (absolute, relative with `./`, or nested) that does not exist.
            ValueError: for a base of another family, naming its class.
            LoRAMismatchError: for a LoRA that does not fit the base, before anything is loaded into it.
        """
        base = pretrained_model_name_or_path
        _check_local_path(base, "pretrained_model_name_or_path")
        hub_kwargs = {k: v for k, v in kwargs.items() if k in _HUB_KWARGS}
        index = DiffusionPipeline.load_config(base, **hub_kwargs)
        saved = _read_json(base, SPATIAL_LORA_CONFIG_NAME, hub_kwargs)
        saved = SpatialLoRAConfig.from_config(saved) if saved is not None else None
        family = _family_for(index.get("_class_name"), saved, base)
        if cls is not SpatialLoRAPipeline and not issubclass(family, cls):
            raise ValueError(
                f"{base!s} is a {family._base_pipeline_class.__name__} base; {cls.__name__} cannot load it"
            )

        # Weights from safetensors only: a base that ships only pickled .bin files is refused, never unpickled.
        kwargs.setdefault("use_safetensors", True)
        pipe = super(SpatialLoRAPipeline, family).from_pretrained(base, **kwargs)
        config = saved or SpatialLoRAConfig(family._base_pipeline_class.__name__, base_model=os.fspath(base))
        pipe._spatial_config = config
        settings = config.config

        if spatial_lora is None and saved is not None and saved.config.lora_weight_name:
            spatial_lora, weight_name = base, weight_name or saved.config.lora_weight_name
        if tore is None and saved is not None:
            tore = _read_json(base, TORE_CONFIG_NAME, hub_kwargs) is not None and base
        pipe._add_spatial_parts(
            spatial_lora=spatial_lora,
            lora_scale=settings.lora_scale if lora_scale is None else lora_scale,
            fuse=settings.fuse if fuse is None else fuse,
            weight_name=weight_name,
            tore=tore,
            tore_mode=tore_mode or settings.tore_mode,
            hub_kwargs=hub_kwargs,
        )
        return pipe

    @classmethod
    def from_pipe(
        cls,
        pipeline: DiffusionPipeline,
        *,
        spatial_lora: str | os.PathLike | Mapping[str, torch.Tensor] | None = None,
        lora_scale: float = 1.0,
        tore: Tore | str | os.PathLike | None = None,
        fuse: bool = True,
        weight_name: str | None = None,
        tore_mode: str = "rewrite",
        **kwargs,
    ):
        r"""A spatial pipeline sharing the components of a supported `pipeline` (diffusers' `from_pipe`).

        No weights are copied: as with diffusers' `from_pipe`, a LoRA loaded here changes the shared modules, so
        `pipeline` then generates with it too (`unload_spatial_lora()` restores both).

        Args:
            pipeline: a `StableDiffusionPipeline`, `StableDiffusionXLPipeline`, `StableDiffusion3Pipeline` or
                `FluxPipeline` (or a spatial one).
            spatial_lora, lora_scale, tore, fuse, weight_name, tore_mode: as in `from_pretrained`.
            kwargs: passed to diffusers' `from_pipe` (components to replace, `torch_dtype`).

        Examples:

        ```py
        >>> from diffusers_spatial import SpatialLoRAPipeline, Tore
        >>> from diffusers_spatial.utils import make_tiny_sd
        >>> pipe = SpatialLoRAPipeline.from_pipe(make_tiny_sd(), tore=Tore(success_rates={"left_of": 0.3, "right_of": 0.6}))
        >>> pipe("a cat to the left of a dog", num_inference_steps=1, height=32, width=32).prompts_used
        ['a dog to the right of a cat']

        ```
        """
        name = getattr(pipeline, "_base_pipeline_class", type(pipeline)).__name__
        family = _family_for(name, None, f"<{type(pipeline).__name__} object>")
        if cls is not SpatialLoRAPipeline and not issubclass(family, cls):
            raise ValueError(f"a {name} cannot become a {cls.__name__}")
        pipe = DiffusionPipeline.from_pipe.__func__(family, pipeline, **kwargs)
        pipe._spatial_config = SpatialLoRAConfig(
            family._base_pipeline_class.__name__, base_model=getattr(pipeline.config, "_name_or_path", None)
        )
        pipe._add_spatial_parts(
            spatial_lora=spatial_lora,
            lora_scale=lora_scale,
            fuse=fuse,
            weight_name=weight_name,
            tore=tore,
            tore_mode=tore_mode,
            hub_kwargs={},
        )
        return pipe

    def _add_spatial_parts(self, *, spatial_lora, lora_scale, fuse, weight_name, tore, tore_mode, hub_kwargs):
        if spatial_lora is not None and spatial_lora is not False:
            self.load_spatial_lora(
                spatial_lora, lora_scale=lora_scale, fuse=fuse, weight_name=weight_name, **hub_kwargs
            )
        if tore:
            settings = self.spatial_config.config
            self.set_tore(
                tore,
                mode=tore_mode,
                cutoff_step_ratio=settings.tore_cutoff_step_ratio,
                cutoff_step_index=settings.tore_cutoff_step_index,
            )

    def load_spatial_lora(
        self,
        spatial_lora: str | os.PathLike | Mapping[str, torch.Tensor],
        lora_scale: float = 1.0,
        fuse: bool = True,
        weight_name: str | None = None,
        **hub_kwargs,
    ) -> None:
        """Check `spatial_lora` against this pipeline, then load it and fuse it (by default).

        Fused, the LoRA's layers are removed again once its weights are in the base layers: the model has the base
        model's modules, type for type. Unfused (`fuse=False`), it stays as peft layers (adapter "spatial") whose
        scale can change freely.

        Raises:
            LoRAMismatchError: when the LoRA does not fit (nothing has been loaded then).
            ValueError: if a spatial LoRA is already loaded (call `unload_spatial_lora` first).
        """
        if self.has_spatial_lora:
            raise ValueError("a spatial LoRA is already loaded; call unload_spatial_lora() first")
        lora_scale = _check_scale(lora_scale)
        tensors, metadata, local_file = read_lora(spatial_lora, weight_name, **hub_kwargs)
        name = f"LoRA {local_file or 'state dict'!r}"
        # SD / SDXL read kohya layouts against the UNet's config; the transformer families need no config.
        kwargs = {"unet_config": self.unet.config} if self._family.denoiser == "unet" else {}
        try:
            converted = type(self).lora_state_dict(dict(tensors), **kwargs)
            converted = converted[0] if isinstance(converted, tuple) else converted  # (state dict, alphas) or not
        except (ValueError, KeyError) as err:
            raise LoRAMismatchError(f"{name} cannot be read as a LoRA for {_describe_base(self)}: {err}") from err
        check_lora_fits(self, converted, name)
        broken = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if broken:
            raise ValueError(f"{name} holds NaN or infinite values in {len(broken)} tensor(s), e.g. {broken[:3]}")

        self._spatial_lora_tensors, self._spatial_lora_metadata = tensors, metadata
        self.spatial_config.update(
            lora_weight_name=LORA_WEIGHT_NAME,
            lora_scale=lora_scale,
            fuse=fuse,
            lora_source=os.fspath(spatial_lora) if isinstance(spatial_lora, (str, os.PathLike)) else "state dict",
        )
        self._install_spatial_lora("fused" if fuse else "active")

    # -- LoRA controls -------------------------------------------------------------------------------------------

    @property
    def spatial_config(self) -> SpatialLoRAConfig:
        """The pipeline's spatial settings (what `save_pretrained` writes to `spatial_lora_config.json`)."""
        if self._spatial_config is None:
            self._spatial_config = SpatialLoRAConfig(self._base_pipeline_class.__name__)
        return self._spatial_config

    @property
    def has_spatial_lora(self) -> bool:
        return self._spatial_lora_tensors is not None

    @property
    def spatial_lora_scale(self) -> float | None:
        return self.spatial_config.config.lora_scale if self.has_spatial_lora else None

    @property
    def spatial_lora_fused(self) -> bool:
        return self._spatial_lora_state == "fused"

    def _require_lora(self):
        if not self.has_spatial_lora:
            raise ValueError("this pipeline has no spatial LoRA; load one with load_spatial_lora(...)")

    def _other_adapters(self) -> set[str]:
        return {name for names in self.get_list_adapters().values() for name in names} - {SPATIAL_ADAPTER_NAME}

    def _load_spatial_adapter(self) -> None:
        # Through a file, so that diffusers reads the adapter metadata (alphas) exactly as from the user's file.
        # Its "no LoRA keys for the text encoder" warning is noise here: check_lora_fits has vetted every key.
        with tempfile.TemporaryDirectory() as tmp, _quiet_diffusers_loaders():
            self._write_lora(tmp)
            self.load_lora_weights(tmp, weight_name=LORA_WEIGHT_NAME, adapter_name=SPATIAL_ADAPTER_NAME)

    def _drop_spatial_layers(self) -> None:
        # Unwrapping every layer is only ours to do when no other adapter lives in the pipeline.
        if self._other_adapters():
            self.delete_adapters(SPATIAL_ADAPTER_NAME)
        else:
            self.unload_lora_weights()
        self._merged_adapters = self._merged_adapters - {SPATIAL_ADAPTER_NAME}

    def _install_spatial_lora(self, state: str) -> None:
        """From the bare base weights, apply the LoRA as `state` ("fused", "active" or "disabled")."""
        scale = self.spatial_config.config.lora_scale
        self._load_spatial_adapter()
        if state == "fused":
            # fuse_lora multiplies the adapter's own weight by lora_scale: reset it to 1 first.
            self.set_adapters([SPATIAL_ADAPTER_NAME], [1.0])
            self.fuse_lora(lora_scale=scale, adapter_names=[SPATIAL_ADAPTER_NAME])
            if not self._other_adapters():  # the weights hold the LoRA now: drop its layers, and their cost
                self._drop_spatial_layers()
        elif state == "active":
            self.set_adapters([SPATIAL_ADAPTER_NAME], [scale])
        else:
            self.disable_lora()
        self._spatial_lora_state = state

    def _remove_spatial_lora(self) -> None:
        """Back to the bare base weights, without the LoRA's layers."""
        if self._spatial_lora_state == "fused":
            if SPATIAL_ADAPTER_NAME in self._merged_adapters:  # fused beside other adapters: peft unfuses
                self.unfuse_lora()
            else:  # fused and unwrapped: fuse the same LoRA at the opposite scale (what peft's unfuse computes)
                self._load_spatial_adapter()
                self.set_adapters([SPATIAL_ADAPTER_NAME], [1.0])
                self.fuse_lora(lora_scale=-self.spatial_config.config.lora_scale, adapter_names=[SPATIAL_ADAPTER_NAME])
        self._drop_spatial_layers()
        self._spatial_lora_state = None

    def _set_spatial_lora_state(self, state: str) -> None:
        self._remove_spatial_lora()
        self._install_spatial_lora(state)

    def set_spatial_lora_scale(self, lora_scale: float) -> None:
        """Change the LoRA strength (re-fusing when fused)."""
        self._require_lora()
        lora_scale = _check_scale(lora_scale)
        state = self._spatial_lora_state
        self._remove_spatial_lora()
        self.spatial_config.update(lora_scale=lora_scale)
        self._install_spatial_lora(state)

    def fuse_spatial_lora(self) -> None:
        """Fuse the LoRA into the weights and drop its layers (no per-image cost)."""
        self._require_lora()
        self.spatial_config.update(fuse=True)
        self._set_spatial_lora_state("fused")

    def unfuse_spatial_lora(self) -> None:
        """Keep the LoRA as separate layers (scale changes are then free, each image costs a little more)."""
        self._require_lora()
        self.spatial_config.update(fuse=False)
        self._set_spatial_lora_state("active")

    def disable_spatial_lora(self) -> None:
        """Generate with the base weights only (the LoRA stays loaded)."""
        self._require_lora()
        self._set_spatial_lora_state("disabled")

    def enable_spatial_lora(self) -> None:
        """Undo `disable_spatial_lora` (re-fusing if the LoRA was fused)."""
        self._require_lora()
        self._set_spatial_lora_state("fused" if self.spatial_config.config.fuse else "active")

    def unload_spatial_lora(self) -> None:
        """Remove the LoRA and restore the base weights."""
        self._require_lora()
        self._remove_spatial_lora()
        self._spatial_lora_tensors = self._spatial_lora_metadata = None
        self.spatial_config.update(lora_weight_name=None, lora_source=None)

    # -- TORE ----------------------------------------------------------------------------------------------------

    @property
    def tore(self) -> Tore | None:
        return self._tore

    def set_tore(
        self,
        tore: Tore | str | os.PathLike | None,
        mode: str = "rewrite",
        cutoff_step_ratio: float | None = None,
        cutoff_step_index: int | None = None,
    ) -> None:
        """Use `tore` (a `Tore`, or a folder / repo / JSON file with its config) for every call; None turns TORE off."""
        if tore is None:
            self._tore, self._tore_hook = None, None
            return
        if mode == "layout" and not self._family.layout_callback:
            raise ValueError(
                f"TORE's layout mode needs a pipeline whose step-end callback exposes the text conditioning TORE "
                f"switches; {self._base_pipeline_class.__name__} ({self._family.name}) does not: use mode='rewrite'"
            )
        if not isinstance(tore, Tore):
            tore = Tore.from_pretrained(tore)
        self._tore_hook = ToreHook(tore, mode, cutoff_step_ratio, cutoff_step_index)
        self._tore = tore
        self.spatial_config.update(
            tore_mode=mode, tore_cutoff_step_ratio=cutoff_step_ratio, tore_cutoff_step_index=cutoff_step_index
        )

    # -- generation ----------------------------------------------------------------------------------------------

    def _generate(self, arguments: dict[str, Any], use_tore: bool):
        """The body of every family's `__call__`: `arguments` are the base `__call__`'s, by name."""
        if not isinstance(use_tore, bool):
            raise TypeError(f"use_tore must be True or False, got {use_tore!r}")
        steps = arguments.get("num_inference_steps")
        scheduled = arguments.get("timesteps") is not None or arguments.get("sigmas") is not None
        if (
            not scheduled
            and steps is not None
            and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1)
        ):
            raise ValueError(f"num_inference_steps must be an integer >= 1, got {steps!r}")  # diffusers: 1 / 0
        call = self._base_pipeline_class.__call__
        return_dict = arguments.pop("return_dict", True)
        # 1. TORE: choose, per prompt, the variant the model renders best (or keep the prompt as written).
        hook = self._tore_hook if use_tore else None
        if hook is not None:
            _, arguments = hook.pre_call(self, (), arguments, call=call)
            prompts_used, decisions = hook.last_prompts_used, hook.last_decisions
        else:
            prompt = arguments.get("prompt")
            prompts_used = None if prompt is None else ([prompt] if isinstance(prompt, str) else list(prompt))
            decisions = None
        # 2. The base pipeline, whose weights already hold the fused LoRA: nothing extra per denoising step. It gets
        # its own copy of a prompt list (Z-Image's `encode_prompt` writes its chat template into the list it is given).
        if isinstance(arguments.get("prompt"), list):
            arguments["prompt"] = list(arguments["prompt"])
        output = call(self, **arguments, return_dict=True)
        # 3. Say what was generated.
        output = SpatialLoRAPipelineOutput(
            images=output.images,
            nsfw_content_detected=getattr(output, "nsfw_content_detected", None),
            prompts_used=prompts_used,
            tore_decisions=decisions,
        )
        if not return_dict:
            return (output.images, output.nsfw_content_detected, output.prompts_used, output.tore_decisions)
        return output

    # -- saving --------------------------------------------------------------------------------------------------

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        safe_serialization: bool = True,
        variant: str | None = None,
        max_shard_size: int | str | None = None,
        push_to_hub: bool = False,
        **kwargs,
    ):
        """Save a folder that `SpatialLoRAPipeline.from_pretrained` restores and plain diffusers can use.

        Written: the diffusers components of the base WITHOUT the LoRA, `model_index.json` naming the diffusers
        base class (so `StableDiffusionPipeline.from_pretrained(folder)` and `DiffusionPipeline.from_pretrained(
        folder)` open it, as the base model), `pytorch_lora_weights.safetensors` (so `load_lora_weights(folder)`
        works), `tore_config.json`, `spatial_lora_config.json` and a model card (`README.md`). `variant`,
        `max_shard_size` and `push_to_hub` (with `repo_id=`, `commit_message=`, `private=`, `token=`,
        `create_pr=`) behave as in diffusers.
        """
        repo_id = kwargs.get("repo_id") if push_to_hub else None
        self._save_folder(save_directory, safe_serialization, variant, max_shard_size, repo_id)
        if push_to_hub:
            self._upload(save_directory, **kwargs)

    def _save_folder(self, save_directory, safe_serialization, variant, max_shard_size, repo_id) -> None:
        """Write the folder (the card naming `repo_id` when the folder is going to the Hub)."""
        if not safe_serialization:
            raise ValueError("SpatialLoRAPipeline saves safetensors only (safe_serialization=False is not supported)")
        os.makedirs(save_directory, exist_ok=True)
        # diffusers would write the LoRA into the base weights or as peft layers: save the bare base.
        state = self._spatial_lora_state
        if state is not None:
            self._remove_spatial_lora()
        try:
            DiffusionPipeline.save_pretrained(
                self, save_directory, safe_serialization=True, variant=variant, max_shard_size=max_shard_size
            )
        finally:
            if state is not None:
                self._install_spatial_lora(state)
        if self.has_spatial_lora:
            self._write_lora(save_directory)
        self._write_extras(save_directory, repo_id)

    def _write_lora(self, save_directory: str | os.PathLike) -> None:
        from safetensors.torch import save_file

        metadata = dict(self._spatial_lora_metadata or {"format": "pt"})
        tensors = {k: v.contiguous() for k, v in self._spatial_lora_tensors.items()}
        save_file(tensors, os.path.join(save_directory, LORA_WEIGHT_NAME), metadata=metadata)

    def _write_extras(self, save_directory: str | os.PathLike, repo_id: str | None = None) -> None:
        index_path = os.path.join(save_directory, "model_index.json")
        with open(index_path, encoding="utf-8") as f:
            index = json.load(f)
        index["_class_name"] = self._base_pipeline_class.__name__  # plain diffusers must be able to open it
        with open(index_path, "w", encoding="utf-8") as f:
            json.dump(index, f, indent=2, sort_keys=True)
            f.write("\n")
        self.spatial_config.update(
            base_pipeline_class=self._base_pipeline_class.__name__,
            lora_weight_name=LORA_WEIGHT_NAME if self.has_spatial_lora else None,
        )
        self.spatial_config.save_config(save_directory)
        tore_path = os.path.join(save_directory, TORE_CONFIG_NAME)
        if self._tore is not None:
            self._tore.save_pretrained(save_directory)
        elif os.path.exists(tore_path):
            os.remove(tore_path)  # a stale TORE from an earlier save would come back on loading
        if not self.has_spatial_lora and os.path.exists(os.path.join(save_directory, LORA_WEIGHT_NAME)):
            os.remove(os.path.join(save_directory, LORA_WEIGHT_NAME))
        self.model_card(repo_id).save(os.path.join(save_directory, "README.md"))

    def model_card(self, repo_id: str | None = None):
        """A Hub model card (`huggingface_hub.ModelCard`) describing the base, the LoRA and TORE."""
        from huggingface_hub import ModelCard, ModelCardData

        config = self.spatial_config.config
        base = config.base_model
        is_hub_id = bool(base) and not os.path.exists(base) and re.fullmatch(r"[\w.-]+/[\w.-]+", base) is not None
        data = ModelCardData(
            library_name="diffusers",
            pipeline_tag="text-to-image",
            base_model=base if is_hub_id else None,
            tags=["diffusers", "diffusers-spatial", "text-to-image", "lora", "spatial", "esplora", "tore"]
            + [self._family.hub_tag],
        )
        name = repo_id or "path/to/this/folder"
        lines = [
            f"# Spatial LoRA pipeline ({self._base_pipeline_class.__name__})",
            "",
            f"Base model: `{base}`. " if base else "",
            "A spatial LoRA (ESPLoRA) that makes the model place objects where the prompt says, fused into the "
            f"weights at scale {config.lora_scale:g} (no extra cost per image)"
            if self.has_spatial_lora
            else "No spatial LoRA.",
            "",
            "## Use with diffusers-spatial",
            "",
            "```py",
            "from diffusers_spatial.pipelines import SpatialLoRAPipeline",
            "",
            f'pipe = SpatialLoRAPipeline.from_pretrained("{name}")',
            'out = pipe("a photo of a cat to the left of a dog")',
            "print(out.prompts_used)  # the prompts TORE asked the model for",
            "```",
            "",
            "## Use with plain diffusers",
            "",
            "```py",
            "from diffusers import DiffusionPipeline",
            "",
            f'pipe = DiffusionPipeline.from_pretrained("{name}")',
        ]
        if self.has_spatial_lora:
            lines += [f'pipe.load_lora_weights("{name}")', f"pipe.fuse_lora(lora_scale={config.lora_scale:g})"]
        lines += ["```", ""]
        if self._tore is not None:
            rates = ", ".join(f"{r} {v:.2f}" for r, v in sorted(self._tore.success_rates.items()))
            lines += [
                "## TORE",
                "",
                f"Prompts are rewritten to the variant this model renders best (tau {self._tore.tau:g}, min_count "
                f"{self._tore.min_count}, mode {config.tore_mode!r}). Relation success rates: {rates}; "
                f"{len(self._tore.config.triplet_rates)} per-triplet rates. See `tore_config.json`.",
                "",
            ]
        content = f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(line for line in lines) + "\n"
        return ModelCard(content)

    def push_to_hub(
        self,
        repo_id: str,
        commit_message: str | None = None,
        private: bool | None = None,
        token: str | None = None,
        create_pr: bool = False,
        safe_serialization: bool = True,
        variant: str | None = None,
        max_shard_size: int | str | None = None,
    ) -> str:
        """Save the pipeline (with a model card naming `repo_id`) into a temporary folder and upload it to `repo_id`."""
        with tempfile.TemporaryDirectory() as tmp:
            self._save_folder(tmp, safe_serialization, variant, max_shard_size, repo_id)
            return self._upload(
                tmp, repo_id=repo_id, commit_message=commit_message, private=private, token=token, create_pr=create_pr
            )

    def _upload(self, folder, repo_id=None, commit_message=None, private=None, token=None, create_pr=False) -> str:
        from huggingface_hub import create_repo, upload_folder

        if repo_id is None:
            raise ValueError("push_to_hub needs repo_id='<user>/<name>'")
        repo_id = create_repo(repo_id, private=private, token=token, exist_ok=True).repo_id
        return upload_folder(
            repo_id=repo_id,
            folder_path=os.fspath(folder),
            commit_message=commit_message or "Upload SpatialLoRAPipeline",
            token=token,
            create_pr=create_pr,
        )


def _without_examples(doc: str) -> str:
    """A diffusers `__call__` docstring without its `Examples:` section (ours replaces it; theirs needs the Hub)."""
    start = doc.find("Examples:")
    if start < 0:
        return doc
    end = doc.find("Returns:", start)
    return doc[:start] + (doc[end:] if end >= 0 else "")


def _spatial_call(base: type):
    """The `__call__` of the spatial family of `base`: the base's parameters (visible to `inspect` and `help`),
    plus `use_tore`; the body is `SpatialLoRAPipeline._generate`."""
    signature = inspect.signature(base.__call__)
    parameters = list(signature.parameters.values())
    use_tore = inspect.Parameter("use_tore", inspect.Parameter.KEYWORD_ONLY, default=True, annotation="bool")
    if parameters[-1].kind is inspect.Parameter.VAR_KEYWORD:
        parameters.insert(len(parameters) - 1, use_tore)
    else:
        parameters.append(use_tore)
    call_signature = signature.replace(parameters=parameters, return_annotation="SpatialLoRAPipelineOutput | tuple")

    def __call__(self, *args, use_tore: bool = True, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        arguments = dict(bound.arguments)
        del arguments["self"]
        arguments.update(arguments.pop("kwargs", {}))  # the base's own **kwargs (deprecated callbacks)
        return self._generate(arguments, use_tore)

    __call__.__signature__ = call_signature
    __call__.__qualname__ = f"SpatialLoRA{base.__name__}.__call__"
    __call__.__doc__ = (
        f"Generate images as `{base.__name__}.__call__` does (every argument below is its own), with TORE.\n\n"
        "    use_tore (`bool`, defaults to `True`): rewrite the prompts with the pipeline's TORE rule (if it has one).\n\n"
        "    Returns: a `SpatialLoRAPipelineOutput` (`images`, `nsfw_content_detected`, `prompts_used`, "
        "`tore_decisions`), or that tuple with `return_dict=False`.\n"
        + EXAMPLE_DOC_STRING
        + f"\n    Arguments of `{base.__name__}.__call__`:\n"
        + _without_examples(base.__call__.__doc__ or "")
    )
    return __call__


class SpatialLoRAStableDiffusionPipeline(SpatialLoRAPipeline, StableDiffusionPipeline):
    """`SpatialLoRAPipeline` for Stable Diffusion 1.x / 2.x bases (a `StableDiffusionPipeline`)."""

    _base_pipeline_class, _family = StableDiffusionPipeline, families.SD
    __call__ = torch.no_grad()(_spatial_call(StableDiffusionPipeline))


class SpatialLoRAStableDiffusionXLPipeline(SpatialLoRAPipeline, StableDiffusionXLPipeline):
    """`SpatialLoRAPipeline` for Stable Diffusion XL bases (a `StableDiffusionXLPipeline`)."""

    _base_pipeline_class, _family = StableDiffusionXLPipeline, families.SDXL
    __call__ = torch.no_grad()(_spatial_call(StableDiffusionXLPipeline))


class SpatialLoRAStableDiffusion3Pipeline(SpatialLoRAPipeline, StableDiffusion3Pipeline):
    """`SpatialLoRAPipeline` for Stable Diffusion 3.x bases (a `StableDiffusion3Pipeline`, MMDiT)."""

    _base_pipeline_class, _family = StableDiffusion3Pipeline, families.SD3
    __call__ = torch.no_grad()(_spatial_call(StableDiffusion3Pipeline))


class SpatialLoRAFluxPipeline(SpatialLoRAPipeline, FluxPipeline):
    """`SpatialLoRAPipeline` for FLUX.1 bases (a `FluxPipeline`: [dev] or [schnell])."""

    _base_pipeline_class, _family = FluxPipeline, families.FLUX
    __call__ = torch.no_grad()(_spatial_call(FluxPipeline))


class SpatialLoRAZImagePipeline(SpatialLoRAPipeline, ZImagePipeline):
    """`SpatialLoRAPipeline` for Z-Image bases (a `ZImagePipeline`: Z-Image or Z-Image-Turbo)."""

    _base_pipeline_class, _family = ZImagePipeline, families.ZIMAGE
    __call__ = torch.no_grad()(_spatial_call(ZImagePipeline))


_SPATIAL_CLASSES = (
    SpatialLoRAStableDiffusionPipeline,
    SpatialLoRAStableDiffusionXLPipeline,
    SpatialLoRAStableDiffusion3Pipeline,
    SpatialLoRAFluxPipeline,
    SpatialLoRAZImagePipeline,
)
# A base names its diffusers class; a spatial pipeline object may also be asked for by its own class name.
_FAMILIES: dict[str, type] = {c._base_pipeline_class.__name__: c for c in _SPATIAL_CLASSES}
_FAMILIES.update({c.__name__: c for c in _SPATIAL_CLASSES})


def _family_for(class_name: str | None, saved: SpatialLoRAConfig | None, base) -> type:
    if saved is not None and saved.config.base_pipeline_class in _FAMILIES:
        class_name = saved.config.base_pipeline_class
    if class_name not in _FAMILIES:
        raise ValueError(
            f"SpatialLoRAPipeline supports {families.supported_bases()} bases; {os.fspath(base)!r} is a {class_name!r}"
        )
    return _FAMILIES[class_name]
