"""How readable are a world text encoder's token states? A cheap predictor of whether the UNet will follow it.

The UNet reads a caption through cross-attention over every token state. This probe trains, on frozen token
states, a one-layer cross-attention readout (one query per cell of an 8 x 8 grid, as the UNet's spatial queries) to
paint each cell's colour, and scores on held-out captions whether the subject's painted centroid lies on the
relation's side of the object's. The number of readout steps needed is the measure: an encoder whose states say
where each object goes is read within a hundred steps; CLIP's own check (held-out mirror accuracy) is 1.0 for all
encoders and predicts nothing.

    python bench/probe_text_encoder.py PIPELINE_DIR [PIPELINE_DIR ...] --seeds 0 1 2

Prints, per encoder and seed, the readout's relation accuracy after 50 / 100 / 200 steps (CPU, a few seconds each).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
import torch.nn.functional as F
from transformers import CLIPTextModel, CLIPTokenizer

from diffusers_spatial.world import CaptionRegime, WorldConfig, world_sample
from diffusers_spatial.world.layout_readout import LayoutReadout, grid_cells, layout_relation_holds

GRID = 8
CHECKPOINTS = (50, 100, 200)


def encode(path: str, world: WorldConfig, seed: int, n: int):
    """Token states, per-cell colour targets (from the scene) and (subject, object, relation) of n captions."""
    tokenizer = CLIPTokenizer.from_pretrained(path, subfolder="tokenizer")
    encoder = CLIPTextModel.from_pretrained(path, subfolder="text_encoder").eval()
    colours = [name for name, _ in world.colors]
    regime = CaptionRegime("probe", p_relation_caption=1.0, p_reading_order=0.5, p_mirror_error=0.0, balanced=True)
    ys, xs = (np.mgrid[0:GRID, 0:GRID] + 0.5) * world.resolution / GRID
    texts, maps, facts = [], [], []
    for index in range(n):
        caption = world_sample(world, regime, seed, index).caption
        cells = np.zeros((GRID, GRID), np.int64)
        for obj in (caption.first, caption.second):
            inside = (xs - obj.center[0]) ** 2 + (ys - obj.center[1]) ** 2 < (1.2 * obj.radius) ** 2
            cells[inside] = colours.index(obj.color) + 1
        texts.append(caption.text)
        maps.append(cells)
        facts.append(
            (colours.index(caption.first.color) + 1, colours.index(caption.second.color) + 1, caption.relation)
        )
    ids = tokenizer(texts, padding="max_length", truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        states = encoder(ids).last_hidden_state
    return states, torch.from_numpy(np.stack(maps)).view(n, -1), facts


def relation_accuracy(readout: LayoutReadout, states, facts) -> float:
    cells = grid_cells(GRID)
    with torch.no_grad():
        painted = readout(states).softmax(-1)
    return float(np.mean([layout_relation_holds(p, *fact, cells) for p, fact in zip(painted, facts)]))


def probe(path: str, seeds, world: WorldConfig) -> list[dict]:
    train, test = encode(path, world, 101, 4096), encode(path, world, 202, 1024)
    results = []
    for seed in seeds:
        torch.manual_seed(seed)
        readout = LayoutReadout(train[0].shape[-1], len(world.colors) + 1, GRID, dim=32)
        optimizer = torch.optim.Adam(readout.parameters(), 3e-3)
        curve = {}
        for step in range(1, max(CHECKPOINTS) + 1):
            batch = torch.randint(0, len(train[0]), (256,))
            logits = readout(train[0][batch])
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), train[1][batch].reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step in CHECKPOINTS:
                curve[step] = round(relation_accuracy(readout, test[0], test[2]), 3)
        results.append({"encoder": path, "seed": seed, "relation_accuracy_at_step": curve})
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pipelines", nargs="+", help="world pipeline folders (text_encoder/ and tokenizer/)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    torch.set_num_threads(1)
    for path in args.pipelines:
        for record in probe(path, args.seeds, WorldConfig()):
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
