"""Sampling-time TORE: the early, layout-forming steps see the variant TORE chose, the rest the prompt as written.

Diffusion models fix the coarse layout (where each object goes) in the first denoising steps and refine appearance
afterwards. `ToreLayoutCallback` is a diffusers `PipelineCallback`: the pipeline is called with TORE's chosen
variant, and after step `cutoff - 1` the callback swaps the text conditioning (`prompt_embeds`, and SDXL's pooled
`add_text_embeds`) for that of the prompt as written, so the remaining steps follow the user's own wording.
Its cost is one extra text-encoder pass per call (measured in `bench/bench_pipeline.py`).

Works with pipelines whose `encode_prompt` and step-end callback follow Stable Diffusion's (SD 1.x / 2.x) or
SDXL's layout; other pipelines are refused with a clear error.

Examples:

```py
>>> from diffusers_spatial.tore import Tore, ToreLayoutCallback
>>> from diffusers_spatial.utils import make_tiny_sd
>>> pipe = make_tiny_sd()
>>> tore = Tore(success_rates={"left_of": 0.31, "right_of": 0.62})
>>> callback = ToreLayoutCallback.for_pipeline(pipe, cutoff_step_ratio=0.5)
>>> written = "a cat to the left of a dog"
>>> callback.set_written_prompts(written)
>>> image = pipe(tore.rewrite(written), num_inference_steps=2, height=32, width=32,
...              callback_on_step_end=callback).images[0]

```
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback

__all__ = ["DEFAULT_CUTOFF_STEP_RATIO", "ToreLayoutCallback", "check_layout_support", "compose_step_end_callbacks"]

# Layout settles in roughly the first third of the steps of SD-family samplers; a default, not a tuned value.
DEFAULT_CUTOFF_STEP_RATIO = 0.3


def _encodes_two_prompts(pipeline) -> bool:
    return "prompt_2" in inspect.signature(pipeline.encode_prompt).parameters


def check_layout_support(pipeline) -> bool:
    """Raise a ValueError naming the pipeline if it cannot take `ToreLayoutCallback`; return whether it is SDXL-like."""
    name = type(pipeline).__name__
    inputs = getattr(pipeline, "_callback_tensor_inputs", None) or []
    if not hasattr(pipeline, "encode_prompt") or "prompt_embeds" not in inputs:
        raise ValueError(
            f"{name} cannot take the sampling-time TORE callback: it needs `encode_prompt` and 'prompt_embeds' among "
            f"the step-end callback tensors (it has {list(inputs)}); use the prompt rewrite (mode='rewrite') instead"
        )
    two = _encodes_two_prompts(pipeline)
    if two and "add_text_embeds" not in inputs:
        raise ValueError(f"{name} encodes two prompts but does not expose 'add_text_embeds' to step-end callbacks")
    return two


class ToreLayoutCallback(PipelineCallback):
    """Switch the text conditioning from TORE's chosen variant to the prompt as written after the first steps.

    The pipeline must be called with the chosen variants as `prompt` (the same batch layout as the written
    prompts); `set_written_prompts` gives the prompts as written. Steps `0 .. cutoff - 1` are conditioned on the
    chosen variants, steps `cutoff ..` on the written prompts, where `cutoff = cutoff_step_index`, or
    `max(1, int(num_timesteps * cutoff_step_ratio))`. A ratio of 1.0 never switches back (plain rewriting).

    Args:
        cutoff_step_ratio: fraction of the steps conditioned on the chosen variant, in (0, 1] (default 0.3 when
            neither this nor `cutoff_step_index` is given).
        cutoff_step_index: alternatively, the number of such steps (>= 1).
        pooled: also swap SDXL's pooled text embedding (`add_text_embeds`). `for_pipeline` sets it.
    """

    def __init__(self, cutoff_step_ratio: float | None = None, cutoff_step_index: int | None = None, pooled=False):
        if cutoff_step_ratio is None and cutoff_step_index is None:
            cutoff_step_ratio = DEFAULT_CUTOFF_STEP_RATIO
        if isinstance(cutoff_step_ratio, int) and not isinstance(cutoff_step_ratio, bool):
            cutoff_step_ratio = float(cutoff_step_ratio)
        super().__init__(cutoff_step_ratio=cutoff_step_ratio, cutoff_step_index=cutoff_step_index)
        if cutoff_step_ratio is not None and cutoff_step_ratio <= 0.0:
            raise ValueError(
                f"cutoff_step_ratio must be in (0, 1]; got {cutoff_step_ratio!r} (0 would never use TORE)"
            )
        if cutoff_step_index is not None and (not isinstance(cutoff_step_index, int) or cutoff_step_index < 1):
            raise ValueError(f"cutoff_step_index must be an integer >= 1, got {cutoff_step_index!r}")
        self.pooled = bool(pooled)
        self.written_prompts: list[str] | None = None
        self.written_prompts_2: list[str] | None = None
        self.num_images_per_prompt: int | None = None
        self.switched_at: int | None = None

    @classmethod
    def for_pipeline(cls, pipeline, cutoff_step_ratio: float | None = None, cutoff_step_index: int | None = None):
        """A callback configured for `pipeline` (SDXL-like pipelines also swap the pooled embedding)."""
        return cls(cutoff_step_ratio, cutoff_step_index, pooled=check_layout_support(pipeline))

    @property
    def tensor_inputs(self) -> list[str]:
        return ["prompt_embeds", "add_text_embeds"] if self.pooled else ["prompt_embeds"]

    def set_written_prompts(
        self,
        prompts: str | list[str] | None,
        prompts_2: str | list[str] | None = None,
        num_images_per_prompt: int | None = None,
    ):
        """The prompts as written, one per batch entry of the coming call.

        Args:
            prompts: the prompts as written.
            prompts_2: SDXL's second-encoder prompts as written, if the call gives `prompt_2`.
            num_images_per_prompt: the call's value; when given, a call with another batch layout is refused
                instead of being inferred from the embeddings' row count.
        """
        as_list = lambda p: None if p is None else ([p] if isinstance(p, str) else list(p))  # noqa: E731
        self.written_prompts, self.written_prompts_2 = as_list(prompts), as_list(prompts_2)
        self.num_images_per_prompt = num_images_per_prompt
        self.switched_at = None

    def cutoff(self, num_timesteps: int) -> int:
        if self.config.cutoff_step_index is not None:
            return self.config.cutoff_step_index
        return max(1, int(num_timesteps * self.config.cutoff_step_ratio))

    def callback_fn(self, pipeline, step_index, timestep, callback_kwargs) -> dict[str, Any]:
        if self.written_prompts is None or step_index != self.cutoff(pipeline.num_timesteps) - 1:
            return callback_kwargs
        if step_index + 1 >= pipeline.num_timesteps:  # no step left to condition
            return callback_kwargs
        embeds = callback_kwargs["prompt_embeds"]
        cfg = bool(getattr(pipeline, "do_classifier_free_guidance", False))
        rows = len(self.written_prompts) * (2 if cfg else 1)
        expected = rows * (self.num_images_per_prompt or 1)
        if embeds.shape[0] % rows or (self.num_images_per_prompt is not None and embeds.shape[0] != expected):
            raise ValueError(
                f"prompt_embeds has {embeds.shape[0]} rows, not a multiple of {rows} for {len(self.written_prompts)} "
                "written prompts: the pipeline was called with another batch than set_written_prompts"
            )
        per_prompt = embeds.shape[0] // rows
        scale = (getattr(pipeline, "cross_attention_kwargs", None) or {}).get("scale")
        common = {"device": embeds.device, "num_images_per_prompt": per_prompt, "do_classifier_free_guidance": False}
        common.update(lora_scale=scale, clip_skip=getattr(pipeline, "clip_skip", None))
        with torch.no_grad():
            if self.pooled:
                written, _, pooled, _ = pipeline.encode_prompt(
                    self.written_prompts, prompt_2=self.written_prompts_2, **common
                )
            else:
                written, _ = pipeline.encode_prompt(self.written_prompts, **common)
        half = embeds.shape[0] - written.shape[0]
        callback_kwargs["prompt_embeds"] = torch.cat([embeds[:half], written.to(embeds.dtype)])
        if self.pooled:
            text = callback_kwargs["add_text_embeds"]
            callback_kwargs["add_text_embeds"] = torch.cat([text[: text.shape[0] - pooled.shape[0]], pooled.to(text)])
        self.switched_at = step_index + 1
        return callback_kwargs


class _FunctionCallback(PipelineCallback):
    """A plain `callback_on_step_end(pipe, i, t, kwargs)` function with its tensor inputs, as a PipelineCallback."""

    def __init__(self, fn, tensor_inputs):
        super().__init__()
        self._fn, self._inputs = fn, list(tensor_inputs or ["latents"])

    @property
    def tensor_inputs(self) -> list[str]:
        return self._inputs

    def callback_fn(self, pipeline, step_index, timestep, callback_kwargs):
        return self._fn(pipeline, step_index, timestep, callback_kwargs)


def compose_step_end_callbacks(ours: PipelineCallback, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Return `kwargs` with `ours` added to any `callback_on_step_end` the caller already passed (theirs run first)."""
    theirs = kwargs.get("callback_on_step_end")
    if theirs is None:
        callbacks = [ours]
    elif isinstance(theirs, MultiPipelineCallbacks):
        callbacks = [*theirs.callbacks, ours]
    elif isinstance(theirs, PipelineCallback):
        callbacks = [theirs, ours]
    else:
        callbacks = [_FunctionCallback(theirs, kwargs.get("callback_on_step_end_tensor_inputs")), ours]
    kwargs = dict(kwargs)
    kwargs["callback_on_step_end"] = callbacks[0] if len(callbacks) == 1 else _UniqueInputs(callbacks)
    kwargs.pop("callback_on_step_end_tensor_inputs", None)  # the pipeline takes them from the callback
    return kwargs


class _UniqueInputs(MultiPipelineCallbacks):
    # The pipeline gathers each listed tensor once; duplicates would only repeat dict keys.
    @property
    def tensor_inputs(self) -> list[str]:
        return list(dict.fromkeys(super().tensor_inputs))
