# Copyright 2026 The diffusers-spatial authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Spatial consistency: does each generated image put the prompt's objects where the prompt says?

This file is the `evaluate` module (and the Hugging Face Space's module). It holds no scoring logic: every
figure comes from the `diffusers_spatial` library (`diffusers_spatial.metric`), so the module, the
`diffusers-spatial evaluate` command and library calls give identical numbers. It must not use relative imports:
it is copied on its own into evaluate's module cache.
"""

import datasets
import evaluate

from diffusers_spatial.metric import (
    PROTOCOLS,
    EvaluationConfig,
    evaluate_detections,
    evaluate_images,
    headline_scores,
    normalize_predictions,
)

_DESCRIPTION = """
Spatial consistency scores text-to-image outputs on prompts that state one spatial relation between two objects
("a dog to the left of a bench", "a cup above a book", "a car in front of a tree"). An object detector (and, for
in front of / behind, a monocular depth model) locates the two objects in each image; geometry then decides
whether the stated relation holds.

One call gives, side by side, the figures of every published protocol reproduced exactly from its public code:
VISOR (OA, VISOR_uncond, VISOR_cond, VISOR_1..4), T2I-CompBench 2D and 3D spatial, GenEval position, plus the
`esplora` protocol (dominant-axis geometry with an explicit "undetermined" verdict instead of silent zeros).
It also reports per-relation and per-order accuracy, counterfactual consistency (the same fact written in both
object orders), object accuracy, the number of undetermined images with their reasons, and the model's spatial
bias table (the input of TORE prompt rewriting).

Images are detected by the embedded COCO-80 detector by default: it ships inside the `diffusers-spatial`
package and runs offline on a CPU. Any Hugging Face detector (OWL-ViT for VISOR, ...) and depth model can be
named instead. Precomputed detections can be given instead of images.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: one entry per image, either
        - the image: a file path, a `PIL.Image.Image` or an `H x W x 3` uint8 numpy array; or
        - precomputed detections: `{"detections": [{"label": str, "score": float, "box": [x1, y1, x2, y2]}, ...],
          "image_size": [width, height]}` (pixels, origin top-left; `image_size` may be omitted).
    references (`list` of `str`): the prompt of each image, e.g. "a photo of a dog to the left of a bench".
        Images of the same prompt are grouped by identical text (or by `prompt_ids`).
    protocols (`str` or `list` of `str`, optional): protocols to report, from "esplora", "visor",
        "t2i_compbench_2d", "t2i_compbench_3d", "geneval". Default: the configuration name, or all of them.
    primary_protocol (`str`, optional): whose bias table is the report's top-level `bias_table`. Default "esplora".
    detector (`str`, optional): "embedded" (default; offline COCO-80), or a Hugging Face model id / local folder
        of an object detector (e.g. "google/owlvit-base-patch32" as VISOR uses).
    depth_model (`str`, optional): a Hugging Face depth-estimation model id / folder (e.g. "Intel/dpt-hybrid-midas"
        as T2I-CompBench 3D uses). Default None: in front of / behind are undetermined.
    depth (`list` of `H x W` arrays, optional): precomputed depth maps (larger = nearer), with detections.
    batch_size (`int`, optional): images per detector call. Default 8.
    images_per_prompt (`int`, optional): group every `images_per_prompt` consecutive images as one prompt, and
        check that the count divides.
    prompt_ids (`list` of `str`, optional): the prompt each image belongs to (default: the prompt text).
    protocol_options (`dict`, optional): per-protocol scoring options, e.g. `{"visor": {"score_threshold": 0.1}}`.
    detector_options (`dict`, optional): options of the detector, e.g. `{"score_threshold": 0.3}`.
    progress (`bool`, optional): show a progress bar. Default False (as evaluate's other metrics).

Returns:
    Flat headline scores, one float per protocol figure (NaN where a protocol could not compute it), named
    `<protocol>_<figure>`: `visor_oa`, `visor_cond`, `visor_uncond`, `visor_1` .. `visor_4`, `t2i_compbench_2d_score`,
    `t2i_compbench_3d_score`, `geneval_accuracy`, `geneval_prompt_accuracy`, `esplora_accuracy`,
    `esplora_determined_accuracy`, `esplora_coverage`, `esplora_hedging_rate` (those of the protocols asked for),
    and under `report` the full report (the same as the `report.json` of `diffusers-spatial evaluate`):
    summary (`dict`): each protocol's headline figures, side by side;
    protocols (`dict`): per protocol, its benchmark figures, per-relation and per-order accuracy, counterfactual
        consistency, object accuracy, undetermined count and reasons, the confusion of expected vs detected
        relation, and its bias table;
    bias_table (`dict`): the primary protocol's bias table (what `Tore.from_report` reads);
    counts (`dict`): images, prompts, scored and undetermined images.

Examples:

    >>> import diffusers_spatial  # makes the bare name resolve offline
    >>> import evaluate
    >>> metric = evaluate.load("spatial_consistency")
    >>> detections = [
    ...     {"detections": [{"label": "dog", "score": 0.9, "box": [10, 40, 60, 90]},
    ...                     {"label": "bench", "score": 0.8, "box": [120, 30, 200, 100]}], "image_size": [256, 128]},
    ... ]
    >>> results = metric.compute(predictions=detections, references=["a dog to the left of a bench"], protocols="visor")
    >>> results["visor_uncond"], results["report"]["counts"]["images"]
    (100.0, 1)
"""

_CITATION = """\
@misc{diffusers_spatial,
  title = {diffusers-spatial: spatially precise text-to-image generation for diffusers},
  year = {2026},
  howpublished = {\\url{https://github.com/diffusers-spatial/diffusers-spatial}}
}
@article{gokhale2022benchmarking,
  title = {Benchmarking Spatial Relationships in Text-to-Image Generation},
  author = {Gokhale, Tejas and Palangi, Hamid and Nushi, Besmira and Vineet, Vibhav and Horvitz, Eric and
            Kamar, Ece and Baral, Chitta and Yang, Yezhou},
  journal = {arXiv preprint arXiv:2212.10015},
  year = {2022}
}
@inproceedings{huang2023t2icompbench,
  title = {T2I-CompBench: A Comprehensive Benchmark for Open-world Compositional Text-to-image Generation},
  author = {Huang, Kaiyi and Sun, Kaiyue and Xie, Enze and Li, Zhenguo and Liu, Xihui},
  booktitle = {Advances in Neural Information Processing Systems},
  year = {2023}
}
@inproceedings{ghosh2023geneval,
  title = {GenEval: An Object-Focused Framework for Evaluating Text-to-Image Alignment},
  author = {Ghosh, Dhruba and Hajishirzi, Hannaneh and Schmidt, Ludwig},
  booktitle = {Advances in Neural Information Processing Systems},
  year = {2023}
}
"""

_DETECTIONS = datasets.List(
    {
        "label": datasets.Value("string"),
        "score": datasets.Value("float64"),
        "box": datasets.List(datasets.Value("float64"), length=4),
    }
)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SpatialConsistency(evaluate.Metric):
    """Spatial consistency of generated images with their spatial prompts (VISOR, T2I-CompBench, GenEval, esplora)."""

    def _info(self):
        if self.config_name not in ("default", *PROTOCOLS):
            raise ValueError(
                f"unknown configuration {self.config_name!r} of spatial_consistency: use 'default' (every protocol) "
                f"or one protocol of {list(PROTOCOLS)}"
            )
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            # The first format that encodes the first prediction wins: an image (path, PIL or array; kept
            # undecoded so an unreadable file becomes an undetermined item instead of an exception), else
            # precomputed detections.
            features=[
                datasets.Features(
                    {"predictions": datasets.Image(decode=False), "references": datasets.Value("string")}
                ),
                datasets.Features(
                    {
                        "predictions": {
                            "detections": _DETECTIONS,
                            "image_size": datasets.List(datasets.Value("int64"), length=2),
                        },
                        "references": datasets.Value("string"),
                    }
                ),
            ],
            homepage="https://github.com/diffusers-spatial/diffusers-spatial",
            codebase_urls=["https://github.com/diffusers-spatial/diffusers-spatial"],
            reference_urls=[
                "https://github.com/microsoft/VISOR",
                "https://github.com/Karine-Huang/T2I-CompBench",
                "https://github.com/djghosh13/geneval",
            ],
        )

    def compute(self, *, predictions=None, references=None, **kwargs):
        """Compute the spatial consistency scores (arguments below)."""
        # Checked before evaluate encodes them: a missing optional key becomes an undetermined item with its reason,
        # a None or a non-image array a ValueError naming its index (evaluate would raise KeyError / IndexError).
        if predictions is not None:
            predictions = normalize_predictions(predictions)
        return super().compute(predictions=predictions, references=references, **kwargs)

    def _compute(
        self,
        predictions,
        references,
        protocols=None,
        primary_protocol=None,
        detector="embedded",
        depth_model=None,
        depth=None,
        batch_size=8,
        images_per_prompt=None,
        prompt_ids=None,
        protocol_options=None,
        detector_options=None,
        progress=False,
    ):
        if protocols is None and self.config_name != "default":
            protocols = [self.config_name]
        config = EvaluationConfig.from_kwargs(
            protocols=protocols,
            primary_protocol=primary_protocol,
            detector=detector,
            depth_model=depth_model,
            batch_size=batch_size,
            images_per_prompt=images_per_prompt,
            protocol_options=protocol_options,
            detector_options=detector_options,
        )
        common = {"config": config, "prompt_ids": prompt_ids, "progress": progress}
        if len(predictions) and isinstance(predictions[0], dict) and "detections" in predictions[0]:
            report = evaluate_detections(
                [p["detections"] for p in predictions],
                references,
                image_sizes=[p.get("image_size") for p in predictions],
                depth=depth,
                **common,
            )
            return {**headline_scores(report), "report": report}
        if depth is not None:
            raise ValueError("depth maps can only accompany precomputed detections; with images pass depth_model")
        # Undecoded images: {"path": ..., "bytes": ...}; bytes when the image was given in memory.
        images = [p["bytes"] if p.get("bytes") is not None else p["path"] for p in predictions]
        report = evaluate_images(images, references, **common)
        return {**headline_scores(report), "report": report}
