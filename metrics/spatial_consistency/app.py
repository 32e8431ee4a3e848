"""Gradio widget of the spatial_consistency Space: upload images, give their prompts, read the report and plots.

Importing this file needs no gradio (the tests import it); `python app.py` (what a Space runs) builds the UI.
"""

import os
import tempfile

import evaluate

from diffusers_spatial.metric import PROTOCOLS, module_path, plot_report, render_markdown

# The module next to this file on a Space, else the copy installed with diffusers-spatial.
_HERE = os.path.dirname(os.path.abspath(__file__))
_MODULE = _HERE if os.path.isfile(os.path.join(_HERE, "spatial_consistency.py")) else module_path()


def predict(image_paths, prompts_text, protocols=None, detector="embedded"):
    """Score uploaded images; returns (report as Markdown, [plot file paths]).

    Args:
        image_paths: the uploaded image files.
        prompts_text: one prompt per line: one line per image, or a single line for every image.
        protocols: protocol names (default: all).
        detector: "embedded" or a Hugging Face detector id.
    """
    image_paths = [getattr(p, "name", p) for p in (image_paths or [])]
    prompts = [line.strip() for line in (prompts_text or "").splitlines() if line.strip()]
    if not image_paths:
        return "Upload at least one image.", []
    if len(prompts) == 1:
        prompts = prompts * len(image_paths)
    if len(prompts) != len(image_paths):
        return f"Give one prompt per image ({len(image_paths)} images, {len(prompts)} prompts) or one for all.", []
    metric = evaluate.load(_MODULE)
    try:
        report = metric.compute(
            predictions=image_paths,
            references=prompts,
            protocols=list(protocols) if protocols else None,
            detector=detector or "embedded",
        )["report"]
    except ValueError as e:
        return f"**Error:** {e}", []
    plots = plot_report(report, tempfile.mkdtemp(prefix="spatial_consistency_"))
    return render_markdown(report), [str(p) for p in plots.values()]


def build_demo():
    import gradio as gr

    with gr.Blocks(title="Spatial consistency") as demo:
        gr.Markdown(
            "# Spatial consistency\nDoes each image put the prompt's objects where the prompt says? Every published "
            "protocol (VISOR, T2I-CompBench, GenEval) side by side, plus esplora; the embedded detector runs on CPU."
        )
        with gr.Row():
            files = gr.File(file_count="multiple", file_types=["image"], label="Images")
            prompts = gr.Textbox(
                lines=6, label="Prompts (one per image, or one for all)", placeholder="a dog to the left of a bench"
            )
        with gr.Row():
            protocols = gr.CheckboxGroup(list(PROTOCOLS), value=list(PROTOCOLS), label="Protocols")
            detector = gr.Textbox(value="embedded", label="Detector ('embedded' or a Hugging Face model id)")
        button = gr.Button("Evaluate")
        report = gr.Markdown()
        plots = gr.Gallery(label="Plots")
        button.click(predict, inputs=[files, prompts, protocols, detector], outputs=[report, plots])
    return demo


if __name__ == "__main__":
    build_demo().launch()
