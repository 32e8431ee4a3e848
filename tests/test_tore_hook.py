"""TORE on plain diffusers pipelines, without touching them: `SpatialLoRAPipeline.from_pipe(pipe, tore=...)` (lists,
positional prompts, prompt_embeds), `ToreHook` on its own, and the sampling-time `ToreLayoutCallback`, on tiny SD 1.x
and SDXL pipelines loaded from saved folders."""

import pickle

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
from diffusers.callbacks import PipelineCallback

from diffusers_spatial.pipelines import SpatialLoRAPipeline
from diffusers_spatial.tore import Tore, ToreHook, ToreLayoutCallback
from diffusers_spatial.utils import make_tiny_sd, make_tiny_sdxl

TORE = Tore(success_rates={"left_of": 0.31, "right_of": 0.62, "above": 0.55, "below": 0.48}, tau=0.1)
CALL = {"num_inference_steps": 2, "height": 32, "width": 32, "output_type": "np"}
WRITTEN, BEST = "a cat to the left of a dog", "a dog to the right of a cat"


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-sd")
    make_tiny_sd(path)
    pipe = StableDiffusionPipeline.from_pretrained(path)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-sdxl")
    make_tiny_sdxl(path)
    pipe = StableDiffusionXLPipeline.from_pretrained(path)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _images(pipe, prompt, **kwargs):
    return pipe(prompt, generator=torch.Generator().manual_seed(0), **{**CALL, **kwargs}).images


def _with_tore(pipe, tore=TORE, **kwargs):
    spatial = SpatialLoRAPipeline.from_pipe(pipe)
    spatial.set_tore(tore, **kwargs)
    spatial.set_progress_bar_config(disable=True)
    return spatial


def test_from_pipe_rewrites_and_leaves_the_plain_pipeline_alone(sd):
    plain_written, plain_best = _images(sd, WRITTEN), _images(sd, BEST)
    assert np.abs(plain_written - plain_best).max() > 1e-3  # the two variants do give different images
    spatial = _with_tore(sd)
    out = spatial(WRITTEN, generator=torch.Generator().manual_seed(0), **CALL)
    np.testing.assert_array_equal(out.images, plain_best)
    assert out.prompts_used == [BEST] and out.tore_decisions[0].rewritten
    assert list(out.keys()) == ["images", "prompts_used", "tore_decisions"]  # no safety checker: no verdicts
    # The plain pipeline is untouched: same class, same images, picklable; it shares the weights.
    assert type(sd) is StableDiffusionPipeline and spatial.unet is sd.unet
    np.testing.assert_array_equal(_images(sd, WRITTEN), plain_written)
    assert type(pickle.loads(pickle.dumps(spatial.tore))) is Tore
    # A new rule replaces the old one; None turns TORE off.
    spatial.set_tore(Tore(success_rates={"left_of": 0.9, "right_of": 0.1}))
    assert spatial(WRITTEN, num_inference_steps=1, height=32, width=32).prompts_used == [WRITTEN]
    spatial.set_tore(None)
    assert spatial(WRITTEN, num_inference_steps=1, height=32, width=32).tore_decisions is None


def test_lists_positional_prompts_and_prompt_embeds(sd):
    spatial = _with_tore(sd)
    prompts = [WRITTEN, "a red car", "a cat below a dog", "a cat left of a dog above a tree"]
    out = spatial(prompts, 32, 32, 1, output_type="np")  # prompt, height, width, steps given positionally
    assert out.prompts_used == [BEST, "a red car", "a cat below a dog", prompts[3]]
    assert [d.source for d in out.tore_decisions] == ["relation", "none", "relation", "none"]
    assert out.images.shape == (4, 32, 32, 3)
    # return_dict=False: the four fields, in order.
    images, nsfw, used, decisions = spatial(WRITTEN, num_inference_steps=1, height=32, width=32, return_dict=False)
    assert len(images) == 1 and used == [BEST] and decisions[0].rewritten
    # prompt_embeds instead of a prompt: nothing to rewrite, nothing breaks.
    embeds, _ = spatial.encode_prompt(WRITTEN, "cpu", 1, False)
    out = spatial(prompt_embeds=embeds, num_inference_steps=1, height=32, width=32, guidance_scale=1.0)
    assert out.prompts_used is None
    with pytest.raises(TypeError, match="`prompt` must be a str or a list of str"):
        spatial(42, num_inference_steps=1)
    with pytest.raises(TypeError, match="use_tore must be True or False, got 'no'"):
        spatial(WRITTEN, num_inference_steps=1, use_tore="no")
    for steps in (0, -1, 2.5):  # diffusers itself divides by zero on 0
        with pytest.raises(ValueError, match=f"num_inference_steps must be an integer >= 1, got {steps}"):
            spatial(WRITTEN, num_inference_steps=steps)


def test_hook_on_its_own_and_bad_input(sd):
    hook = ToreHook(TORE)
    args, kwargs = hook.pre_call(sd, (WRITTEN, 32), {"width": 32})
    assert args == (BEST, 32) and kwargs == {"width": 32} and hook.last_prompts_used == [BEST]
    with pytest.raises(TypeError, match="expected a Tore"):
        ToreHook({"left_of": 0.3})
    with pytest.raises(ValueError, match="mode must be 'rewrite' or 'layout'"):
        ToreHook(TORE, mode="sometimes")
    with pytest.raises(ValueError, match=r"cutoff_step_ratio must be in \(0, 1\]"):
        ToreHook(TORE, mode="layout", cutoff_step_ratio=0.0)


@pytest.mark.parametrize("family", ["sd", "sdxl"])
def test_layout_callback_switches_to_the_written_prompt(family, request):
    pipe = request.getfixturevalue(family)
    written, best = _images(pipe, WRITTEN), _images(pipe, BEST)
    out = _with_tore(pipe, mode="layout", cutoff_step_ratio=0.5)(
        WRITTEN, generator=torch.Generator().manual_seed(0), **CALL
    )
    assert out.prompts_used == [BEST]
    # Early steps on the best variant, later ones on the written prompt: differs from both pure runs.
    assert np.abs(out.images - best).max() > 1e-4 and np.abs(out.images - written).max() > 1e-4

    # The same by hand, with the public callback: identical images.
    callback = ToreLayoutCallback.for_pipeline(pipe, cutoff_step_index=1)
    callback.set_written_prompts(WRITTEN)
    by_hand = _images(pipe, BEST, callback_on_step_end=callback)
    np.testing.assert_allclose(by_hand, out.images, atol=1e-6)
    assert callback.switched_at == 1
    assert callback.pooled is (family == "sdxl")

    # A ratio of 1.0 never switches back: exactly the plain rewrite.
    np.testing.assert_allclose(
        _images(_with_tore(pipe, mode="layout", cutoff_step_ratio=1.0), WRITTEN), best, atol=1e-6
    )


def test_layout_callback_batches_cfg_and_user_callbacks(sd):
    seen = []

    class Recorder(PipelineCallback):
        tensor_inputs = ["latents"]

        def callback_fn(self, pipeline, step_index, timestep, callback_kwargs):
            seen.append(step_index)
            return callback_kwargs

    def plain_function(pipeline, step_index, timestep, callback_kwargs):
        seen.append(("fn", step_index, tuple(sorted(callback_kwargs))))
        return callback_kwargs

    prompts = [WRITTEN, "a red car"]
    spatial = _with_tore(sd, mode="layout", cutoff_step_ratio=0.5)
    out = spatial(prompts, num_images_per_prompt=2, callback_on_step_end=Recorder(), **CALL)
    assert out.images.shape[0] == 4 and seen == [0, 1]
    out = spatial(prompts, callback_on_step_end=plain_function, callback_on_step_end_tensor_inputs=["latents"], **CALL)
    assert [s[:2] for s in seen[2:]] == [("fn", 0), ("fn", 1)] and "latents" in seen[2][2]
    assert out.prompts_used == [BEST, "a red car"]
    # Nothing rewritten: no callback is added at all.
    out = spatial("a red car", **CALL)
    assert out.prompts_used == ["a red car"]

    # Same rows by hand, without classifier-free guidance.
    callback = ToreLayoutCallback.for_pipeline(sd, cutoff_step_ratio=0.5)
    callback.set_written_prompts(prompts)
    sd([BEST, "a red car"], num_images_per_prompt=2, guidance_scale=1.0, callback_on_step_end=callback, **CALL)
    assert callback.switched_at == 1
    callback.set_written_prompts([WRITTEN], num_images_per_prompt=1)
    with pytest.raises(ValueError, match="another batch than set_written_prompts"):
        sd([BEST, "a red car"], callback_on_step_end=callback, **CALL)


def test_layout_mode_refuses_pipelines_without_prompt_embeds_callbacks():
    class NotSD:
        _callback_tensor_inputs = ["latents"]

        def encode_prompt(self, prompt):
            return prompt

        def __call__(self, prompt):
            return prompt

    with pytest.raises(ValueError, match="NotSD cannot take the sampling-time TORE callback"):
        ToreHook(TORE, mode="layout", cutoff_step_ratio=0.5).pre_call(NotSD(), (WRITTEN,), {})
    # The rewrite itself works on any callable pipeline.
    args, _ = ToreHook(TORE).pre_call(NotSD(), (WRITTEN,), {})
    assert NotSD()(*args) == BEST
