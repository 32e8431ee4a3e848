"""SpatialLoRAPipeline on tiny SD 1.x and SDXL pipelines saved to disk: same images as a plain diffusers pipeline
with the LoRA fused by hand, TORE, LoRA controls, save / load round trips (ours and plain diffusers), refusal of
LoRAs that do not fit, and the Hub upload (mocked: no network here)."""

import inspect
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline, StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from diffusers_spatial.pipelines import (
    LoRAMismatchError,
    SpatialLoRAPipeline,
    SpatialLoRAStableDiffusionPipeline,
    SpatialLoRAStableDiffusionXLPipeline,
)
from diffusers_spatial.tore import Tore
from diffusers_spatial.utils import make_tiny_lora, make_tiny_sd, make_tiny_sdxl

TORE = Tore(success_rates={"left_of": 0.31, "right_of": 0.62}, tau=0.1)
WRITTEN, BEST = "a cat to the left of a dog", "a dog to the right of a cat"
CALL = {"num_inference_steps": 2, "height": 32, "width": 32, "output_type": "np"}


@pytest.fixture(scope="module")
def sd_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("sd")
    pipe = make_tiny_sd(root / "base")
    make_tiny_lora(pipe, root / "lora", rank=4, seed=1, text_encoder=True)
    return root


@pytest.fixture(scope="module")
def sdxl_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("sdxl")
    pipe = make_tiny_sdxl(root / "base")
    make_tiny_lora(pipe, root / "lora", rank=4, seed=2, text_encoder=True)
    return root


def _plain(cls, base, lora=None, scale=1.0):
    pipe = cls.from_pretrained(base)
    pipe.set_progress_bar_config(disable=True)
    if lora is not None:
        pipe.load_lora_weights(lora)
        pipe.fuse_lora(lora_scale=scale)
    return pipe


def _spatial(*args, **kwargs):
    pipe = SpatialLoRAPipeline.from_pretrained(*args, **kwargs)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _images(pipe, prompt=WRITTEN, **kwargs):
    return pipe(prompt, generator=torch.Generator().manual_seed(0), **CALL, **kwargs).images


def _close(a, b, atol=1e-5):
    np.testing.assert_allclose(a, b, atol=atol, rtol=0)


@pytest.mark.parametrize(
    ("files", "plain_cls", "family"),
    [
        ("sd_files", StableDiffusionPipeline, SpatialLoRAStableDiffusionPipeline),
        ("sdxl_files", StableDiffusionXLPipeline, SpatialLoRAStableDiffusionXLPipeline),
    ],
)
def test_same_images_as_hand_fused_plain_pipeline(files, plain_cls, family, request):
    root = request.getfixturevalue(files)
    pipe = _spatial(root / "base", spatial_lora=root / "lora")
    assert type(pipe) is family and isinstance(pipe, SpatialLoRAPipeline) and isinstance(pipe, plain_cls)
    assert pipe.spatial_lora_fused and pipe.spatial_lora_scale == 1.0
    # Zero cost for real: fused, the module tree is type for type the base model's (no peft layer left).
    bare = _plain(plain_cls, root / "base")
    for name in ("unet", "text_encoder"):
        assert [type(m) for m in getattr(pipe, name).modules()] == [type(m) for m in getattr(bare, name).modules()]
    # The call shows the base pipeline's parameters and use_tore.
    parameters = inspect.signature(pipe.__call__).parameters
    assert {"prompt", "guidance_scale", "callback_on_step_end", "use_tore"} <= set(parameters)
    assert set(inspect.signature(plain_cls.__call__).parameters) - {"self"} <= set(parameters)
    reference = _plain(plain_cls, root / "base", root / "lora")
    out = pipe(WRITTEN, generator=torch.Generator().manual_seed(0), **CALL)
    _close(out.images, _images(reference), atol=1e-6)
    assert out.prompts_used == [WRITTEN] and out.tore_decisions is None and out["prompts_used"] == [WRITTEN]
    images, _, used, decisions = pipe(WRITTEN, generator=torch.Generator().manual_seed(0), return_dict=False, **CALL)
    _close(images, out.images, atol=1e-6)
    assert used == [WRITTEN] and decisions is None
    base_images = _images(_plain(plain_cls, root / "base"))
    assert np.abs(out.images - base_images).max() > 1e-3  # the LoRA does change the images

    # TORE on: the model is asked for the swap; same images as the plain pipeline asked for it.
    pipe.set_tore(TORE)
    out = pipe([WRITTEN, "a red car"], generator=torch.Generator().manual_seed(0), **CALL)
    assert out.prompts_used == [BEST, "a red car"] and out.tore_decisions[0].rewritten
    _close(out.images, _images(reference, [BEST, "a red car"]), atol=1e-6)
    # Per call, TORE can be skipped.
    assert pipe(WRITTEN, use_tore=False, **CALL).prompts_used == [WRITTEN]
    pipe.set_tore(None)
    assert pipe.tore is None and pipe(WRITTEN, **CALL).tore_decisions is None


def test_sd2_base(tmp_path):
    # SD 2.x: v-prediction, linear projections in the transformer blocks; same family class as SD 1.x.
    base = make_tiny_sd(tmp_path / "base", seed=5, sd2=True)
    make_tiny_lora(base, tmp_path / "lora", rank=2, seed=5)
    pipe = _spatial(tmp_path / "base", spatial_lora=tmp_path / "lora", tore=TORE)
    assert type(pipe) is SpatialLoRAStableDiffusionPipeline
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    reference = _plain(StableDiffusionPipeline, tmp_path / "base", tmp_path / "lora")
    _close(_images(pipe), _images(reference, BEST), atol=1e-6)


def test_lora_sources_file_folder_state_dict_and_kohya(sd_files):
    reference = _images(_plain(StableDiffusionPipeline, sd_files / "base", sd_files / "lora"))
    file = sd_files / "lora" / "pytorch_lora_weights.safetensors"
    _close(_images(_spatial(sd_files / "base", spatial_lora=file)), reference, atol=1e-6)
    _close(_images(_spatial(sd_files / "base", spatial_lora=load_file(file))), reference, atol=1e-6)

    # The same LoRA in kohya's naming (as other trainers write it), alpha = rank: diffusers converts it.
    kohya = {}
    for key, value in load_file(file).items():
        component, _, rest = key.partition(".")
        module, _, kind = rest.rpartition(".lora")
        kind = kind.replace("_linear_layer", "").replace(".down.", "_down.").replace(".up.", "_up.")
        prefix = "lora_unet_" if component == "unet" else "lora_te_text_model_"
        name = prefix + module.replace(".", "_")
        kohya[f"{name}.lora{kind}"] = value
        kohya[f"{name}.alpha"] = torch.tensor(float(value.shape[0] if "down" in kind else value.shape[1]))
    save_file(kohya, sd_files / "kohya.safetensors")
    pipe = _spatial(sd_files / "base", spatial_lora=sd_files / "kohya.safetensors")
    _close(_images(pipe), reference)


@pytest.mark.slow
def test_lora_controls(sd_files):
    base, lora = sd_files / "base", sd_files / "lora"
    pipe = _spatial(base, spatial_lora=lora, lora_scale=0.5)
    fused_half = _images(pipe)
    _close(fused_half, _images(_plain(StableDiffusionPipeline, base, lora, scale=0.5)), atol=1e-6)
    full = _images(_plain(StableDiffusionPipeline, base, lora))
    plain_base = _images(_plain(StableDiffusionPipeline, base))

    pipe.set_spatial_lora_scale(1.0)
    pipe.set_spatial_lora_scale(1.0)  # re-setting never compounds the scale
    _close(_images(pipe), full)
    pipe.unfuse_spatial_lora()
    assert not pipe.spatial_lora_fused
    _close(_images(pipe), full)
    pipe.set_spatial_lora_scale(0.5)
    _close(_images(pipe), fused_half)
    pipe.fuse_spatial_lora()
    assert pipe.spatial_lora_fused
    _close(_images(pipe), fused_half)
    pipe.disable_spatial_lora()
    _close(_images(pipe), plain_base)
    pipe.enable_spatial_lora()
    assert pipe.spatial_lora_fused
    _close(_images(pipe), fused_half)
    pipe.unload_spatial_lora()
    assert not pipe.has_spatial_lora and pipe.spatial_lora_scale is None
    _close(_images(pipe), plain_base)
    with pytest.raises(ValueError, match="no spatial LoRA"):
        pipe.set_spatial_lora_scale(0.3)
    with pytest.raises(ValueError, match="lora_scale must be a finite number, got nan"):
        _spatial(base, spatial_lora=lora, lora_scale=float("nan"))

    # Not fused on request: same images, LoRA kept as separate layers.
    unfused = _spatial(base, spatial_lora=lora, fuse=False)
    assert not unfused.spatial_lora_fused
    _close(_images(unfused), full)


@pytest.mark.slow
def test_save_and_load_round_trip_sd(sd_files, tmp_path):
    pipe = _spatial(sd_files / "base", spatial_lora=sd_files / "lora", lora_scale=0.75, tore=TORE)
    expected = pipe(WRITTEN, generator=torch.Generator().manual_seed(0), **CALL)
    pipe.save_pretrained(tmp_path)
    assert sorted(os.listdir(tmp_path)) == [
        "README.md",
        "model_index.json",
        "pytorch_lora_weights.safetensors",
        "scheduler",
        "spatial_lora_config.json",
        "text_encoder",
        "tokenizer",
        "tore_config.json",
        "unet",
        "vae",
    ]
    assert json.loads((tmp_path / "model_index.json").read_text())["_class_name"] == "StableDiffusionPipeline"
    with safe_open(tmp_path / "unet" / "diffusion_pytorch_model.safetensors", "pt") as f:
        assert not [k for k in f.keys() if "lora" in k or "base_layer" in k]  # noqa: SIM118 (bare base weights)
    assert (tmp_path / "text_encoder" / "model.safetensors").exists()
    # The live pipeline is unchanged by saving.
    _close(
        _images(pipe, use_tore=False),
        _images(_plain(StableDiffusionPipeline, sd_files / "base", sd_files / "lora", 0.75)),
    )

    # Ours restores LoRA, scale and TORE.
    loaded = _spatial(tmp_path)
    assert loaded.spatial_lora_scale == 0.75 and loaded.spatial_lora_fused and loaded.tore == TORE
    out = loaded(WRITTEN, generator=torch.Generator().manual_seed(0), **CALL)
    assert out.prompts_used == [BEST]
    _close(out.images, expected.images)
    # Overrides on loading.
    assert _spatial(tmp_path, tore=False).tore is None
    no_lora = _spatial(tmp_path, spatial_lora=False, tore=False)
    assert not no_lora.has_spatial_lora
    _close(_images(no_lora), _images(_plain(StableDiffusionPipeline, sd_files / "base")))

    # Plain diffusers opens the folder and loads the LoRA from it.
    plain = DiffusionPipeline.from_pretrained(tmp_path)
    assert type(plain) is StableDiffusionPipeline
    plain.set_progress_bar_config(disable=True)
    plain.load_lora_weights(tmp_path)
    plain.fuse_lora(lora_scale=0.75)
    _close(_images(plain, BEST), expected.images)

    card = (tmp_path / "README.md").read_text()
    assert "diffusers-spatial" in card and "library_name: diffusers" in card and "load_lora_weights" in card

    # Saving again into the same folder without TORE or LoRA leaves no stale files behind.
    loaded.set_tore(None)
    loaded.unload_spatial_lora()
    loaded.save_pretrained(tmp_path)
    assert (
        not (tmp_path / "tore_config.json").exists() and not (tmp_path / "pytorch_lora_weights.safetensors").exists()
    )
    reloaded = _spatial(tmp_path)
    assert reloaded.tore is None and not reloaded.has_spatial_lora


@pytest.mark.slow
def test_save_and_load_round_trip_sdxl(sdxl_files, tmp_path):
    pipe = _spatial(sdxl_files / "base", spatial_lora=sdxl_files / "lora", tore=TORE, tore_mode="layout")
    expected = _images(pipe)
    pipe.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "model_index.json").read_text())["_class_name"] == "StableDiffusionXLPipeline"
    loaded = _spatial(tmp_path)
    assert type(loaded) is SpatialLoRAStableDiffusionXLPipeline and loaded._tore_hook.mode == "layout"
    _close(_images(loaded), expected)
    plain = StableDiffusionXLPipeline.from_pretrained(tmp_path)
    plain.load_lora_weights(tmp_path)
    plain.fuse_lora()
    plain.set_progress_bar_config(disable=True)
    _close(_images(plain), _images(loaded, use_tore=False))


def test_refuses_sdxl_lora_on_sd_base_before_loading(sd_files, sdxl_files):
    with pytest.raises(LoRAMismatchError) as err:
        _spatial(sd_files / "base", spatial_lora=sdxl_files / "lora")
    message = str(err.value)
    assert str(sdxl_files / "lora") in message and f"{str(sd_files / 'base')!r} (StableDiffusionPipeline" in message
    assert "cross_attention_dim=32" in message and "input width 64, the base layer has 32" in message

    pipe = _spatial(sd_files / "base")
    before = _images(pipe)
    with pytest.raises(LoRAMismatchError):
        pipe.load_spatial_lora(sdxl_files / "lora")
    assert not pipe.has_spatial_lora and not pipe.get_list_adapters()  # nothing was loaded
    _close(_images(pipe), before, atol=0)

    sdxl_lora = load_file(sdxl_files / "lora" / "pytorch_lora_weights.safetensors")
    state = {k.replace("text_encoder.", "text_encoder_2.", 1): v for k, v in sdxl_lora.items()}
    with pytest.raises(LoRAMismatchError, match="no LoRA-loadable component 'text_encoder_2'"):
        pipe.load_spatial_lora(state)


def test_refuses_other_layouts(sd_files, tmp_path):
    # A LoRA trained on a wider UNet of the same family.
    wide = make_tiny_sd()
    wide.unet = UNet2DConditionModel.from_config({**wide.unet.config, "block_out_channels": (32, 64)})
    make_tiny_lora(wide, tmp_path / "wide", rank=4)
    with pytest.raises(LoRAMismatchError, match="the base layer has 32") as err:
        _spatial(sd_files / "base", spatial_lora=tmp_path / "wide")
    assert "block_out_channels=[16, 32]" in str(err.value)

    # The two halves of a layer disagree on the rank.
    state = load_file(sd_files / "lora" / "pytorch_lora_weights.safetensors")
    key = next(k for k in state if k.startswith("unet.") and k.endswith("lora.up.weight"))
    state[key] = torch.zeros(state[key].shape[0], 8)
    with pytest.raises(LoRAMismatchError, match="rank layout differs: lora_A has rank 4, lora_B 8"):
        _spatial(sd_files / "base", spatial_lora=state)

    # A diverged training run: NaN weights are refused instead of drawing black images.
    state = load_file(sd_files / "lora" / "pytorch_lora_weights.safetensors")
    state[key] = torch.full_like(state[key], float("nan"))
    with pytest.raises(ValueError, match="NaN or infinite values in 1 tensor"):
        _spatial(sd_files / "base", spatial_lora=state)

    # Half a layer, and no layers at all.
    state = load_file(sd_files / "lora" / "pytorch_lora_weights.safetensors")
    del state[key]
    with pytest.raises(LoRAMismatchError, match="without its other half"):
        _spatial(sd_files / "base", spatial_lora=state)


def test_refuses_bad_sources_and_bases(sd_files, sdxl_files, tmp_path):
    (tmp_path / "pickle").mkdir()
    torch.save({"x": torch.zeros(1)}, tmp_path / "pickle" / "lora.bin")
    with pytest.raises(ValueError, match="only safetensors"):
        _spatial(sd_files / "base", spatial_lora=tmp_path / "pickle" / "lora.bin")
    (tmp_path / "two").mkdir()
    for name in ("a.safetensors", "b.safetensors"):
        save_file({"x": torch.zeros(1)}, tmp_path / "two" / name)
    with pytest.raises(ValueError, match="pass weight_name"):
        _spatial(sd_files / "base", spatial_lora=tmp_path / "two")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "model_index.json").write_text(json.dumps({"_class_name": "KandinskyPipeline"}))
    with pytest.raises(
        ValueError, match=r"supports SD 1.x/2.x .*Z-Image \(ZImagePipeline\) bases; .* is a 'KandinskyPipeline'"
    ):
        SpatialLoRAPipeline.from_pretrained(tmp_path / "other")
    with pytest.raises(ValueError, match="SpatialLoRAStableDiffusionXLPipeline cannot load it"):
        SpatialLoRAStableDiffusionXLPipeline.from_pretrained(sd_files / "base")
    # A typo in a local path is a missing path, not a Hub error about repo ids.
    for missing in (tmp_path / "nope", "./nope", "outputs/run/lora", "lora.safetensors"):
        with pytest.raises(FileNotFoundError, match="does not exist"):
            _spatial(sd_files / "base", spatial_lora=missing)
    with pytest.raises(FileNotFoundError, match=r"pretrained_model_name_or_path .*nope' does not exist"):
        SpatialLoRAPipeline.from_pretrained(tmp_path / "nope")
    # diffusers' signature: the model first (by name too), everything else by keyword.
    assert SpatialLoRAPipeline.from_pretrained(pretrained_model_name_or_path=sd_files / "base").tore is None
    with pytest.raises(TypeError, match="positional argument"):
        SpatialLoRAPipeline.from_pretrained(sd_files / "base", sd_files / "lora")


def test_push_to_hub_uploads_the_saved_folder_with_a_card(sd_files, monkeypatch):
    import huggingface_hub

    uploaded = {}

    class Repo:
        repo_id = "me/esplora-tiny"

    def fake_upload_folder(repo_id, folder_path, **kwargs):
        uploaded["repo_id"] = repo_id
        uploaded["files"] = sorted(os.listdir(folder_path))
        uploaded["card"] = Path(folder_path, "README.md").read_text()
        return "commit"

    monkeypatch.setattr(huggingface_hub, "create_repo", lambda repo_id, **kwargs: Repo())
    monkeypatch.setattr(huggingface_hub, "upload_folder", fake_upload_folder)
    pipe = _spatial(sd_files / "base", spatial_lora=sd_files / "lora", tore=TORE)
    assert pipe.push_to_hub("me/esplora-tiny") == "commit"
    assert uploaded["repo_id"] == "me/esplora-tiny"
    assert {"pytorch_lora_weights.safetensors", "tore_config.json", "README.md", "unet"} <= set(uploaded["files"])
    assert 'from_pretrained("me/esplora-tiny")' in uploaded["card"] and "## TORE" in uploaded["card"]


def test_refuses_a_base_with_only_pickled_weights(tmp_path):
    base = tmp_path / "pickled-base"
    make_tiny_sd().save_pretrained(base, safe_serialization=False)  # UNet and VAE as pickled .bin files
    assert list((base / "unet").glob("*.bin")) and not list((base / "unet").glob("*.safetensors"))
    with pytest.raises((OSError, EnvironmentError, ValueError)):
        SpatialLoRAPipeline.from_pretrained(base)
