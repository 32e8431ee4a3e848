"""TORE on plain diffusers pipelines: the hook (attach / detach, lists, positional prompts, prompt_embeds) and the
sampling-time `ToreLayoutCallback`, on tiny SD 1.x and SDXL pipelines loaded from saved folders."""

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
from diffusers.callbacks import PipelineCallback

from diffusers_spatial.tore import Tore, ToreLayoutCallback, attach, detach, get_hook
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


def test_attach_rewrites_and_detach_restores(sd):
    plain_written, plain_best = _images(sd, WRITTEN), _images(sd, BEST)
    assert np.abs(plain_written - plain_best).max() > 1e-3  # the two variants do give different images
    TORE.attach(sd)
    try:
        assert isinstance(sd, StableDiffusionPipeline) and type(sd).__name__ == "StableDiffusionPipeline"
        out = sd(WRITTEN, generator=torch.Generator().manual_seed(0), **CALL)
        np.testing.assert_array_equal(out.images, plain_best)
        assert out.prompts_used == [BEST]
        assert out.tore_decisions[0].rewritten and list(out.keys()) == ["images"]
        assert get_hook(sd).last_prompts_used == [BEST]
    finally:
        TORE.detach(sd)
    assert type(sd) is StableDiffusionPipeline and get_hook(sd) is None
    np.testing.assert_array_equal(_images(sd, WRITTEN), plain_written)
    TORE.detach(sd)  # detaching twice is a no-op


def test_attach_is_idempotent_and_replaces_the_rule(sd):
    keep_all = Tore(success_rates={"left_of": 0.9, "right_of": 0.1})
    attach(sd, TORE)
    attach(sd, TORE)
    attach(sd, keep_all)
    try:
        assert type(sd).__mro__[1] is StableDiffusionPipeline  # one wrapper class, not a stack
        assert get_hook(sd).tore is keep_all
        assert sd(WRITTEN, num_inference_steps=1, height=32, width=32).prompts_used == [WRITTEN]
    finally:
        detach(sd)


def test_lists_positional_prompts_and_other_instances(sd, tmp_path):
    other = make_tiny_sd()
    other.set_progress_bar_config(disable=True)
    attach(sd, TORE)
    try:
        prompts = [WRITTEN, "a red car", "a cat below a dog", "a cat left of a dog above a tree"]
        out = sd(prompts, 32, 32, 1, output_type="np")  # prompt, height, width, steps given positionally
        assert out.prompts_used == [BEST, "a red car", "a cat below a dog", prompts[3]]
        assert [d.source for d in out.tore_decisions] == ["relation", "none", "relation", "none"]
        assert out.images.shape == (4, 32, 32, 3)
        # Another instance of the same class is untouched.
        assert not hasattr(other(WRITTEN, num_inference_steps=1, height=32, width=32), "prompts_used")
        # return_dict=False: a tuple, the prompts are on the hook.
        images, _ = sd(WRITTEN, num_inference_steps=1, height=32, width=32, return_dict=False)
        assert get_hook(sd).last_prompts_used == [BEST]
        # prompt_embeds instead of a prompt: nothing to rewrite, nothing breaks.
        embeds, _ = sd.encode_prompt(WRITTEN, "cpu", 1, False)
        out = sd(prompt_embeds=embeds, num_inference_steps=1, height=32, width=32, guidance_scale=1.0)
        assert out.prompts_used is None
        with pytest.raises(TypeError, match="`prompt` must be a str or a list of str"):
            sd(42, num_inference_steps=1)
        # A pipeline saved while TORE is attached is a plain pipeline folder.
        sd.save_pretrained(tmp_path)
        assert '"_class_name": "StableDiffusionPipeline"' in (tmp_path / "model_index.json").read_text()
    finally:
        detach(sd)


def test_attach_refuses_bad_input(sd):
    with pytest.raises(TypeError, match="expected a Tore"):
        attach(sd, {"left_of": 0.3})
    with pytest.raises(ValueError, match="mode must be 'rewrite' or 'layout'"):
        attach(sd, TORE, mode="sometimes")
    with pytest.raises(ValueError, match=r"cutoff_step_ratio must be in \(0, 1\]"):
        attach(sd, TORE, mode="layout", cutoff_step_ratio=0.0)
    assert get_hook(sd) is None and type(sd) is StableDiffusionPipeline


@pytest.mark.parametrize("family", ["sd", "sdxl"])
def test_layout_callback_switches_to_the_written_prompt(family, request):
    pipe = request.getfixturevalue(family)
    written, best = _images(pipe, WRITTEN), _images(pipe, BEST)
    TORE.attach(pipe, mode="layout", cutoff_step_ratio=0.5)
    try:
        out = pipe(WRITTEN, generator=torch.Generator().manual_seed(0), **CALL)
    finally:
        TORE.detach(pipe)
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
    TORE.attach(pipe, mode="layout", cutoff_step_ratio=1.0)
    try:
        np.testing.assert_allclose(_images(pipe, WRITTEN), best, atol=1e-6)
    finally:
        TORE.detach(pipe)


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
    TORE.attach(sd, mode="layout", cutoff_step_ratio=0.5)
    try:
        out = sd(prompts, num_images_per_prompt=2, callback_on_step_end=Recorder(), **CALL)
        assert out.images.shape[0] == 4 and seen == [0, 1]
        out = sd(prompts, callback_on_step_end=plain_function, callback_on_step_end_tensor_inputs=["latents"], **CALL)
        assert [s[:2] for s in seen[2:]] == [("fn", 0), ("fn", 1)] and "latents" in seen[2][2]
        assert out.prompts_used == [BEST, "a red car"]
        # Nothing rewritten: no callback is added at all.
        out = sd("a red car", **CALL)
        assert out.prompts_used == ["a red car"]
    finally:
        TORE.detach(sd)

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
        attach(NotSD(), TORE, mode="layout")
    pipe = attach(NotSD(), TORE)  # the rewrite itself works on any callable pipeline
    assert pipe(WRITTEN) == BEST
