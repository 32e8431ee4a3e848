"""`ToreHook`: TORE around one pipeline call (the `ModelHook` shape, `pre_call`, at the pipeline level).

Why not a diffusers `ModelHook`: `ModelHook` / `HookRegistry` wrap the `forward` of an `nn.Module` (the denoiser, a
text encoder), and by the time any module runs the prompt is already token ids. TORE rewrites the *text*, so it
runs where the text is: before the pipeline's `__call__`. `SpatialLoRAPipeline.__call__` runs the hook; for any
other pipeline, rewrite the prompts with `Tore.rewrite` (and add `ToreLayoutCallback` for the sampling-time
variant), or make it a spatial pipeline with `SpatialLoRAPipeline.from_pipe(pipe, tore=tore)`: the pipeline object
itself is never modified.

Examples:

```py
>>> from diffusers_spatial.tore import Tore, ToreHook
>>> hook = ToreHook(Tore(success_rates={"left_of": 0.31, "right_of": 0.62}))
>>> _, kwargs = hook.pre_call(None, (), {"prompt": ["a cat to the left of a dog", "a red car"]})
>>> kwargs["prompt"], hook.last_prompts_used == kwargs["prompt"]
(['a dog to the right of a cat', 'a red car'], True)

```
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Literal

from diffusers.utils import logging

from .callback import ToreLayoutCallback, check_layout_support, compose_step_end_callbacks
from .core import Tore, ToreDecision

logger = logging.get_logger(__name__)

__all__ = ["PROMPT_ARGUMENTS", "ToreHook", "prompt_argument", "rewrite_call_arguments"]

# Text arguments of diffusers text-to-image pipelines that carry the prompt (SDXL / SD3 / Flux add encoders).
PROMPT_ARGUMENTS = ("prompt", "prompt_2", "prompt_3")

ToreMode = Literal["rewrite", "layout"]


@functools.lru_cache(maxsize=128)
def _positional_indices(call) -> dict[str, int]:
    # inspect.signature costs ~0.1 ms on a diffusers __call__: once per pipeline class, not once per image.
    params = list(inspect.signature(call).parameters.values())[1:]  # drop `self`
    return {p.name: i for i, p in enumerate(params) if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)}


def _positional_index(call, name: str) -> int | None:
    return None if call is None else _positional_indices(call).get(name)


def rewrite_call_arguments(
    tore: Tore, call, args: tuple, kwargs: dict[str, Any]
) -> tuple[tuple, dict[str, Any], dict[str, list[ToreDecision]]]:
    """Rewrite the prompt arguments (`prompt`, `prompt_2`, `prompt_3`) of a pipeline call with `tore`.

    Args:
        tore: the rule.
        call: the pipeline class's unbound `__call__` (to find positional prompt arguments).
        args, kwargs: the call's arguments (without `self`).

    Returns:
        `(args, kwargs, decisions)`: the arguments with each given prompt argument replaced by `tore`'s choice
        (a str stays a str, a list stays a list) and, per argument name, the decisions in batch order. Arguments
        that are absent or None (e.g. when `prompt_embeds` are given) are left alone.
    """
    args, kwargs = list(args), dict(kwargs)
    decisions: dict[str, list[ToreDecision]] = {}
    for name in PROMPT_ARGUMENTS:
        index = _positional_index(call, name)
        if index is not None and index < len(args):
            value, where = args[index], index
        elif name in kwargs:
            value, where = kwargs[name], name
        else:
            continue
        if value is None:
            continue
        if isinstance(value, str):
            decisions[name] = [tore.decide(value)]
            new_value = decisions[name][0].prompt
        elif isinstance(value, (list, tuple)):
            decisions[name] = [tore.decide(p) for p in value]
            new_value = [d.prompt for d in decisions[name]]
        else:
            raise TypeError(f"`{name}` must be a str or a list of str, got {type(value).__name__}: {value!r}")
        if isinstance(where, int):
            args[where] = new_value
        else:
            kwargs[where] = new_value
    return tuple(args), kwargs, decisions


class ToreHook:
    """Pipeline-level hook (the `ModelHook` shape: `pre_call` / `post_call`) that applies TORE to each call.

    Args:
        tore: the rule.
        mode: "rewrite" generates from TORE's choice for all steps; "layout" conditions the first steps on TORE's
            choice and the rest on the prompt as written (`ToreLayoutCallback`, SD 1.x/2.x and SDXL pipelines; SD3.x and FLUX.1 take the rewrite only).
        cutoff_step_ratio, cutoff_step_index: where "layout" switches back (see `ToreLayoutCallback`).

    Attributes:
        last_decisions: the decisions of the last call (for `prompt`, in batch order), or None.
        last_prompts_used: the prompts the last call generated from (in "layout" mode: the ones conditioning the
            first steps), or None when the call gave no `prompt` (e.g. `prompt_embeds`).
    """

    def __init__(
        self,
        tore: Tore,
        mode: ToreMode = "rewrite",
        cutoff_step_ratio: float | None = None,
        cutoff_step_index: int | None = None,
    ):
        if not isinstance(tore, Tore):
            raise TypeError(f"expected a Tore, got {type(tore).__name__}: {tore!r}")
        if mode not in ("rewrite", "layout"):
            raise ValueError(f"mode must be 'rewrite' or 'layout', got {mode!r}")
        self.tore, self.mode = tore, mode
        self.cutoff_step_ratio, self.cutoff_step_index = cutoff_step_ratio, cutoff_step_index
        if mode == "layout":  # validate the cutoff now, not at the first call
            ToreLayoutCallback(cutoff_step_ratio, cutoff_step_index)
        self.last_decisions: list[ToreDecision] | None = None
        self.last_prompts_used: list[str] | None = None

    def pre_call(self, pipe, args: tuple, kwargs: dict[str, Any], call=None) -> tuple[tuple, dict[str, Any]]:
        """Rewrite the call's prompt arguments (and, in "layout" mode, add the callback); `call` is the unbound
        `__call__` whose signature places the positional arguments (default: the pipeline class's)."""
        call = call or (type(pipe).__call__ if callable(pipe) else None)
        new_args, new_kwargs, decisions = rewrite_call_arguments(self.tore, call, args, kwargs)
        main = decisions.get("prompt")
        self.last_decisions = main
        self.last_prompts_used = None if main is None else [d.prompt for d in main]
        if main is None:
            logger.info("TORE: no `prompt` in this call (prompt_embeds?); nothing rewritten")
        if self.mode == "rewrite" or not any(d.rewritten for ds in decisions.values() for d in ds):
            return (new_args, new_kwargs) if decisions else (args, kwargs)
        callback = ToreLayoutCallback(
            self.cutoff_step_ratio, self.cutoff_step_index, pooled=check_layout_support(pipe)
        )
        written_2 = decisions.get("prompt_2")
        per_prompt = prompt_argument(call, args, kwargs, "num_images_per_prompt") or 1
        callback.set_written_prompts(
            [d.original for d in main], written_2 and [d.original for d in written_2], num_images_per_prompt=per_prompt
        )
        return new_args, compose_step_end_callbacks(callback, new_kwargs)


def prompt_argument(call, args: tuple, kwargs: dict[str, Any], name: str = "prompt"):
    """The value of the prompt argument `name` in a call's `(args, kwargs)`, or None when not given."""
    index = _positional_index(call, name)
    if index is not None and index < len(args):
        return args[index]
    return kwargs.get(name)
