"""SpatialLoRAPipeline on the transformer families (SD3.x, FLUX.1, Z-Image), built tiny from configs and saved to disk: the
same images as plain diffusers with the LoRA fused by hand, no LoRA layer left after fusing, TORE's rewrite, save /
load round trips (ours and plain diffusers'), and LoRAs of another family refused before anything is loaded."""

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline, FluxPipeline, StableDiffusion3Pipeline, ZImagePipeline
from safetensors.torch import load_file

from diffusers_spatial.pipelines import (
    FAMILIES,
    LoRAMismatchError,
    SpatialLoRAFluxPipeline,
    SpatialLoRAPipeline,
    SpatialLoRAStableDiffusion3Pipeline,
    SpatialLoRAZImagePipeline,
)
from diffusers_spatial.pipelines.families import family_named
from diffusers_spatial.pipelines.spatial_lora import _FAMILIES
from diffusers_spatial.tore import Tore
from diffusers_spatial.utils import make_tiny_lora, make_tiny_sd
from diffusers_spatial.utils.tiny_models import make_tiny_flux, make_tiny_sd3, make_tiny_zimage

TORE = Tore(success_rates={"left_of": 0.31, "right_of": 0.62}, tau=0.1)
WRITTEN, BEST = "a cat to the left of a dog", "a dog to the right of a cat"
FAMILY_CASES = {
    "sd3": (make_tiny_sd3, StableDiffusion3Pipeline, SpatialLoRAStableDiffusion3Pipeline, {}),
    "flux": (make_tiny_flux, FluxPipeline, SpatialLoRAFluxPipeline, {"max_sequence_length": 32}),
    "zimage": (make_tiny_zimage, ZImagePipeline, SpatialLoRAZImagePipeline, {"max_sequence_length": 32}),
}


@pytest.fixture(scope="module", params=sorted(FAMILY_CASES))
def family(request, tmp_path_factory):
    make, plain_cls, spatial_cls, call = FAMILY_CASES[request.param]
    root = tmp_path_factory.mktemp(request.param)
    make_tiny_lora(make(root / "base"), root / "lora", rank=4, seed=1)
    return root, plain_cls, spatial_cls, {"num_inference_steps": 2, "height": 32, "width": 32, **call}


def _images(pipe, call, prompt=WRITTEN, **kwargs):
    generator = torch.Generator().manual_seed(0)
    return pipe(prompt, generator=generator, output_type="np", **call, **kwargs).images


def _plain(cls, base, lora=None):
    pipe = cls.from_pretrained(base)
    pipe.set_progress_bar_config(disable=True)
    if lora is not None:
        pipe.load_lora_weights(lora)
        pipe.fuse_lora()
        pipe.unload_lora_weights()
    return pipe


def _spatial(*args, **kwargs):
    pipe = SpatialLoRAPipeline.from_pretrained(*args, **kwargs)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_every_family_has_one_spatial_pipeline():
    assert {f.pipeline_class for f in FAMILIES} == {name for name in _FAMILIES if not name.startswith("SpatialLoRA")}
    for name, cls in _FAMILIES.items():
        assert cls._family is family_named(cls._base_pipeline_class.__name__), name
    assert family_named("StableDiffusion3Pipeline").denoiser == "transformer" and family_named("Nope") is None


def test_fused_lora_matches_plain_diffusers_and_costs_nothing(family):
    root, plain_cls, spatial_cls, call = family
    pipe = _spatial(root / "base", spatial_lora=root / "lora")
    assert type(pipe) is spatial_cls and isinstance(pipe, plain_cls) and pipe.spatial_lora_fused
    bare = _plain(plain_cls, root / "base")
    assert [type(m) for m in pipe.transformer.modules()] == [type(m) for m in bare.transformer.modules()]
    images = _images(pipe, call)
    np.testing.assert_allclose(images, _images(_plain(plain_cls, root / "base", root / "lora"), call), atol=1e-6)
    assert np.abs(images - _images(bare, call)).max() > 1e-3  # the LoRA does change the images
    pipe.unload_spatial_lora()
    np.testing.assert_allclose(_images(pipe, call), _images(bare, call), atol=1e-5)


def test_tore_rewrites_and_layout_mode_is_refused_by_name(family):
    root, plain_cls, _, call = family
    pipe = _spatial(root / "base", spatial_lora=root / "lora", tore=TORE)
    out = pipe([WRITTEN, "a red car"], generator=torch.Generator().manual_seed(0), output_type="np", **call)
    assert out.prompts_used == [BEST, "a red car"] and out.tore_decisions[0].rewritten
    reference = _plain(plain_cls, root / "base", root / "lora")
    np.testing.assert_allclose(out.images, _images(reference, call, [BEST, "a red car"]), atol=1e-6)
    with pytest.raises(ValueError, match=rf"{plain_cls.__name__} \(.*\) does not: use mode='rewrite'"):
        pipe.set_tore(TORE, mode="layout")
    prompts = [WRITTEN]
    pipe(prompts, **call)
    assert prompts == [WRITTEN]  # the caller's list is left alone (Z-Image's encode_prompt rewrites its argument)


def test_save_and_load_round_trip(family, tmp_path):
    root, plain_cls, spatial_cls, call = family
    pipe = _spatial(root / "base", spatial_lora=root / "lora", lora_scale=0.5, tore=TORE)
    pipe.save_pretrained(tmp_path / "saved")
    again = _spatial(tmp_path / "saved")
    assert type(again) is spatial_cls and again.spatial_lora_scale == 0.5 and again.tore is not None
    np.testing.assert_allclose(_images(again, call), _images(pipe, call), atol=1e-6)
    # Plain diffusers opens it as the base model, and loads the LoRA beside it.
    plain = DiffusionPipeline.from_pretrained(tmp_path / "saved")
    plain.set_progress_bar_config(disable=True)
    assert type(plain) is plain_cls
    plain.load_lora_weights(tmp_path / "saved")
    plain.fuse_lora(lora_scale=0.5)
    np.testing.assert_allclose(_images(plain, call, BEST), _images(again, call), atol=1e-5)
    assert family_named(plain_cls.__name__).hub_tag in (tmp_path / "saved" / "README.md").read_text()


def test_lora_of_another_family_is_refused_before_loading(family, tmp_path):
    root, plain_cls, _, call = family
    sd = make_tiny_sd()
    make_tiny_lora(sd, tmp_path / "sd_lora", rank=4)
    pipe = _spatial(root / "base")
    before = _images(pipe, call)
    with pytest.raises(LoRAMismatchError, match=r"has no LoRA-loadable component 'unet'") as err:
        pipe.load_spatial_lora(tmp_path / "sd_lora")
    assert f"({plain_cls.__name__}, " in str(err.value) and "cross-attention width 32, i.e. " not in str(err.value)
    assert not pipe.has_spatial_lora and not pipe.get_list_adapters()
    np.testing.assert_allclose(_images(pipe, call), before, atol=0)
    other = "flux" if plain_cls is StableDiffusion3Pipeline else "sd3"  # same `transformer.` prefix, other layers
    make, *_ = FAMILY_CASES[other]
    make_tiny_lora(make(), tmp_path / "other_lora", rank=4)
    with pytest.raises(LoRAMismatchError, match="LoRA expects input width|no such Linear/Conv2d layer"):
        pipe.load_spatial_lora(load_file(tmp_path / "other_lora" / "pytorch_lora_weights.safetensors"))


def test_generate_command_runs_on_the_family(family, tmp_path):
    from diffusers_spatial.cli import main

    root, plain_cls, _, call = family
    (tmp_path / "prompts.txt").write_text("a cat to the left of a dog\na cup above a bowl\n")
    argv = ["generate", "--model", str(root / "base"), "--lora", str(root / "lora"), "--out", str(tmp_path / "out")]
    argv += [
        "--prompts",
        str(tmp_path / "prompts.txt"),
        "--steps",
        "1",
        "--height",
        "32",
        "--width",
        "32",
        "--images-per-prompt",
        "1",
    ]
    assert main([*argv, "--no-progress"]) == 0
    lines = (tmp_path / "out" / "generations.jsonl").read_text().splitlines()
    assert len(lines) == 2 and f"SpatialLoRA{plain_cls.__name__}" in lines[0] and "lora" in lines[0]
