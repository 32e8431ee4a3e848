"""The pieces of a training step: dataset + caches, the loss, LoRA save / load in diffusers' format."""

from __future__ import annotations

import pytest
import torch
from diffusers import StableDiffusionPipeline
from test_training_helpers import make_spatial_imagefolder

from diffusers_spatial.training import (
    SpatialTrainDataset,
    TransformConfig,
    add_lora_adapters,
    build_latent_cache,
    build_text_embedding_cache,
    collate_training_batch,
    derive_seed,
    diffusion_loss,
    flip_caption,
    load_lora_into,
    load_training_dataset,
    sample_latents,
    save_lora,
    step_generator,
)
from diffusers_spatial.training.lora import lora_layers_to_save
from diffusers_spatial.utils import make_tiny_sd


@pytest.fixture(scope="module")
def pipe():
    return make_tiny_sd()


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    root = tmp_path_factory.mktemp("rows")
    folder = make_spatial_imagefolder(root / "data", n=6)
    return load_training_dataset(train_data_dir=folder, cache_dir=str(root / "cache"))


def encode_text(pipe, captions):
    ids = pipe.tokenizer(captions, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    return {"prompt_embeds": pipe.text_encoder(ids.input_ids)[0]}


def test_dataset_items_and_collate(rows):
    dataset = SpatialTrainDataset(rows, "image", "prompt", TransformConfig(resolution=16, random_flip=True), seed=0)
    dataset.set_epoch(2)
    items = [dataset[i] for i in range(len(dataset))]
    assert all(item["pixel_values"].shape == (3, 16, 16) for item in items)
    plans = [dataset.plan(i) for i in range(len(dataset))]
    assert any(p.flip for p in plans) and not all(p.flip for p in plans)
    for item, plan in zip(items, plans):  # a flipped sample's caption states the mirrored relation
        original = rows[item["index"]]["prompt"]
        assert item["caption"] == (flip_caption(original) if plan.flip else original)
    batch = collate_training_batch(items[:3])
    assert batch["pixel_values"].shape == (3, 3, 16, 16) and batch["index"].tolist() == [0, 1, 2]
    assert len(batch["captions"]) == 3 and len(batch["original_size"]) == 3
    assert set(dataset.all_captions()) >= {r["prompt"] for r in rows}


@torch.no_grad()
def test_caches_give_the_samples_of_the_uncached_path(rows, pipe):
    config = TransformConfig(resolution=16, center_crop=True, random_flip=True)
    uncached = SpatialTrainDataset(rows, "image", "prompt", config, seed=1)
    cached = SpatialTrainDataset(rows, "image", "prompt", config, seed=1)
    cached.latent_cache = build_latent_cache(cached, lambda x: pipe.vae.encode(x).latent_dist.parameters, batch_size=4)
    cached.text_cache = build_text_embedding_cache(cached.all_captions(), lambda c: encode_text(pipe, c))
    assert cached.latent_cache.params.shape[:2] == (6, 2)  # every row, plain and mirrored
    assert cached.latent_cache.nbytes > 0 and cached.text_cache.nbytes > 0
    for epoch in range(3):
        uncached.set_epoch(epoch)
        cached.set_epoch(epoch)
        for i in range(len(rows)):
            a, b = uncached[i], cached[i]
            assert a["caption"] == b["caption"] and a["crop_top_left"] == b["crop_top_left"]
            params = pipe.vae.encode(a["pixel_values"][None]).latent_dist.parameters[0]
            torch.testing.assert_close(b["latent_params"], params, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(b["prompt_embeds"], encode_text(pipe, [a["caption"]])["prompt_embeds"][0])
    with pytest.raises(KeyError, match="not in the text-embedding cache"):
        cached.text_cache.lookup("a caption never seen")


def test_step_randomness_is_a_pure_function_of_its_position(pipe):
    latents_params = torch.randn(2, 8, 4, 4)
    embeds = torch.randn(2, 77, 32)
    scheduler = pipe.scheduler

    def loss(seed, position, **kwargs):
        generator = step_generator(seed, 0, 0, position)
        latents = sample_latents(latents_params, generator, 0.18215)
        return diffusion_loss(pipe.unet, latents, embeds, scheduler, generator, **kwargs)

    with torch.no_grad():
        assert loss(0, 5) == loss(0, 5)
        assert loss(0, 5) != loss(0, 6) and loss(0, 5) != loss(1, 5)
        assert torch.isfinite(loss(0, 5, noise_offset=0.1, snr_gamma=5.0))
    assert derive_seed(1, 2, 3) != derive_seed(3, 2, 1)


def test_snr_weighting_for_v_prediction(pipe):
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler.from_config(pipe.scheduler.config, prediction_type="v_prediction")
    generator = step_generator(0, 0, 0, 0)
    with torch.no_grad():
        plain = diffusion_loss(pipe.unet, torch.randn(2, 4, 4, 4), torch.randn(2, 77, 32), scheduler, generator)
        assert torch.isfinite(plain)
    bad = DDPMScheduler.from_config(pipe.scheduler.config, prediction_type="sample")
    with pytest.raises(ValueError, match="Unknown prediction type 'sample'"):
        diffusion_loss(pipe.unet, torch.randn(1, 4, 4, 4), torch.randn(1, 77, 32), bad, generator)


def test_lora_saved_in_diffusers_format_loads_everywhere(tmp_path):
    trained = make_tiny_sd(seed=0)
    add_lora_adapters(trained.unet, rank=4)
    add_lora_adapters(trained.text_encoder, rank=4)
    with torch.no_grad():
        for name, param in list(trained.unet.named_parameters()) + list(trained.text_encoder.named_parameters()):
            if "lora_" in name:
                param.add_(torch.randn_like(param) * 0.1)  # as if trained
    path = save_lora(tmp_path, StableDiffusionPipeline, trained.unet, {"text_encoder": trained.text_encoder})
    assert path.endswith("pytorch_lora_weights.safetensors")

    # Plain diffusers reads it, with the text-encoder layers, and the output changes.
    plain = make_tiny_sd(seed=0)
    kwargs = {"num_inference_steps": 2, "height": 32, "width": 32, "output_type": "np"}
    before = plain("a cat above a dog", generator=torch.Generator().manual_seed(0), **kwargs).images
    plain.load_lora_weights(tmp_path)
    after = plain("a cat above a dog", generator=torch.Generator().manual_seed(0), **kwargs).images
    assert abs(after - before).max() > 1e-4
    assert plain.get_list_adapters().keys() >= {"unet", "text_encoder"}

    # Our checkpoint loader restores the exact weights into fresh adapters.
    fresh = make_tiny_sd(seed=0)
    add_lora_adapters(fresh.unet, rank=4)
    add_lora_adapters(fresh.text_encoder, rank=4)
    load_lora_into(tmp_path, StableDiffusionPipeline, fresh.unet, {"text_encoder": fresh.text_encoder})
    for model_a, model_b in ((trained.unet, fresh.unet), (trained.text_encoder, fresh.text_encoder)):
        a, b = lora_layers_to_save(model_a), lora_layers_to_save(model_b)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)
