"""The denoising loss of one training step: DDPM-style for the SD and SDXL scripts, flow matching for SD3.x / FLUX.1.

It is the loss of diffusers' `train_text_to_image_lora.py` (noise offset, epsilon / v-prediction targets, Min-SNR
weighting through `diffusers.training_utils.compute_snr`) with one difference: every random number (the VAE
latent sample, the noise, the timesteps) comes from an explicit generator (see `randomness.step_generator`), so a
step is a pure function of its batch, its position in the run and the weights. That is what makes a resumed run
end with the same LoRA as an uninterrupted one, and a cached run follow the same loss curve as an uncached one.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from diffusers.training_utils import (
    compute_density_for_timestep_sampling,
    compute_loss_weighting_for_sd3,
    compute_snr,
)

__all__ = ["WEIGHTING_SCHEMES", "diffusion_loss", "flow_matching_loss", "sample_flow_sigmas", "sample_latents"]


def _randn(shape, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return torch.randn(shape, generator=generator, dtype=torch.float32).to(device=like.device, dtype=like.dtype)


def sample_latents(
    latent_params: torch.Tensor,
    generator: torch.Generator,
    scaling_factor: float,
    shift_factor: float | None = None,
) -> torch.Tensor:
    """Sample scaled latents from the VAE's posterior parameters (mean and log-variance, concatenated).

    `latent_params` is `vae.encode(pixels).latent_dist.parameters`, fresh or from the latent cache.
    """
    dist = DiagonalGaussianDistribution(latent_params)
    latents = dist.mean + dist.std * _randn(dist.mean.shape, generator, dist.mean)
    if shift_factor is not None:
        latents = latents - shift_factor
    return latents * scaling_factor


def diffusion_loss(
    unet: torch.nn.Module,
    latents: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    noise_scheduler,
    generator: torch.Generator,
    *,
    noise_offset: float = 0.0,
    snr_gamma: float | None = None,
    unet_kwargs: dict[str, Any] | None = None,
) -> torch.Tensor:
    """Noise `latents` at random timesteps, predict with `unet`, return the (optionally Min-SNR weighted) MSE.

    Args:
        unet: the denoiser (maybe wrapped by accelerate); called as `unet(noisy, t, encoder_hidden_states, ...)`.
        latents: scaled clean latents (B, C, h, w).
        encoder_hidden_states: text conditioning (B, L, D).
        noise_scheduler: a diffusers training scheduler (`DDPMScheduler`); its `prediction_type` sets the target.
        generator: CPU generator for the noise and the timesteps.
        noise_offset: scale of the per-channel offset noise (0 disables it).
        snr_gamma: Min-SNR-gamma weighting (https://arxiv.org/abs/2303.09556); None for the plain MSE.
        unet_kwargs: extra UNet inputs (SDXL's `added_cond_kwargs`).

    Returns:
        The scalar loss (float32).
    """
    batch_size, channels = latents.shape[:2]
    noise = _randn(latents.shape, generator, latents)
    if noise_offset:
        # https://www.crosslabs.org//blog/diffusion-with-offset-noise
        noise = noise + noise_offset * _randn((batch_size, channels, 1, 1), generator, latents)
    timesteps = torch.randint(
        0, noise_scheduler.config.num_train_timesteps, (batch_size,), generator=generator, dtype=torch.long
    ).to(latents.device)
    noisy_latents = noise_scheduler.add_noise(latents, noise, timesteps)

    prediction_type = noise_scheduler.config.prediction_type
    if prediction_type == "epsilon":
        target = noise
    elif prediction_type == "v_prediction":
        target = noise_scheduler.get_velocity(latents, noise, timesteps)
    else:
        raise ValueError(f"Unknown prediction type {prediction_type!r}: expected 'epsilon' or 'v_prediction'")

    model_pred = unet(noisy_latents, timesteps, encoder_hidden_states, **(unet_kwargs or {}), return_dict=False)[0]
    if snr_gamma is None:
        return F.mse_loss(model_pred.float(), target.float(), reduction="mean")
    # Min-SNR: weight each sample by min(SNR, gamma) / SNR (/ (SNR + 1) for v-prediction), Section 3.4 of the paper.
    snr = compute_snr(noise_scheduler, timesteps)
    weights = torch.clamp(snr, max=snr_gamma)
    weights = weights / (snr + 1) if prediction_type == "v_prediction" else weights / snr
    loss = F.mse_loss(model_pred.float(), target.float(), reduction="none")
    return (loss.mean(dim=list(range(1, loss.ndim))) * weights).mean()


# ----------------------------------------------------------------------------------------------------------------
# Flow matching (SD3.x, FLUX.1): the rectified-flow objective of diffusers' train_dreambooth_lora_sd3 / _flux.py
# ----------------------------------------------------------------------------------------------------------------

WEIGHTING_SCHEMES = ("sigma_sqrt", "logit_normal", "mode", "cosmap", "none")


def sample_flow_sigmas(
    noise_scheduler,
    batch_size: int,
    generator: torch.Generator,
    *,
    weighting_scheme: str = "none",
    logit_mean: float = 0.0,
    logit_std: float = 1.0,
    mode_scale: float = 1.29,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Training timesteps and their sigmas for a `FlowMatchEulerDiscreteScheduler`, drawn from `generator`.

    The density over timesteps is diffusers' `compute_density_for_timestep_sampling` (SD3 paper, section 3.1):
    logit-normal, mode-with-scale, or uniform for the other schemes; drawn from `generator` so that a resumed run
    replays the same timesteps.

    Returns:
        (timesteps, sigmas), each of shape (batch_size,), on the CPU.
    """
    u = compute_density_for_timestep_sampling(
        weighting_scheme, batch_size, logit_mean, logit_std, mode_scale, device="cpu", generator=generator
    )
    num_train_timesteps = noise_scheduler.config.num_train_timesteps
    indices = (u * num_train_timesteps).long().clamp(max=num_train_timesteps - 1)
    timesteps = noise_scheduler.timesteps[indices].float()
    sigmas = noise_scheduler.sigmas[indices].float()
    return timesteps, sigmas


def flow_matching_loss(
    model_pred: torch.Tensor,
    latents: torch.Tensor,
    noise: torch.Tensor,
    noisy_latents: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    weighting_scheme: str = "none",
    precondition_outputs: bool = False,
) -> torch.Tensor:
    """The weighted MSE of a rectified-flow prediction, as diffusers' SD3 / FLUX LoRA scripts compute it.

    The target is the velocity `noise - latents`; with `precondition_outputs` (the SD3 script's default), the
    prediction is turned into a clean-latent estimate `noisy - sigma * pred` and compared with `latents`.
    """
    sigmas = sigmas.to(model_pred.device, torch.float32).view(-1, *([1] * (model_pred.ndim - 1)))
    if precondition_outputs:
        model_pred, target = noisy_latents.float() - sigmas * model_pred.float(), latents.float()
    else:
        target = noise.float() - latents.float()
    weighting = compute_loss_weighting_for_sd3(weighting_scheme, sigmas)
    loss = (weighting * (model_pred.float() - target) ** 2).reshape(len(target), -1).mean(1)
    return loss.mean()
