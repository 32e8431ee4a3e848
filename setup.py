"""diffusers-spatial: spatially precise text-to-image generation for Hugging Face diffusers (ESPLoRA + TORE)."""

import os
import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

# The `evaluate` module's source of truth is metrics/spatial_consistency (an evaluate module / HF Space layout);
# wheels carry a copy inside the package. `import diffusers_spatial` seeds evaluate's module cache from it, so that
# `evaluate.load("spatial_consistency")` then resolves offline from any directory (see diffusers_spatial/metric).
METRIC_MODULE_SOURCE = "metrics/spatial_consistency"
METRIC_MODULE_TARGET = "diffusers_spatial/metric/evaluate_module"


class BuildPy(build_py):
    def run(self):
        super().run()
        if self.editable_mode:  # the module is read from the checkout
            return
        target = os.path.join(self.build_lib, METRIC_MODULE_TARGET)
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(METRIC_MODULE_SOURCE, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


# Ranges admit the versions in constraints.txt, which is what CI and the README install.
# transformers stays < 5.24: 5.24 needs peft >= 0.22 for text-encoder LoRA (not released).
INSTALL_REQUIRES = [
    "numpy>=1.26",
    "pillow>=10",
    "tqdm>=4.66",
    "matplotlib>=3.8",
    "onnxruntime>=1.17",
    "torch>=2.4",
    "diffusers>=0.35,<0.43",
    "transformers>=4.51,<5.24",
    "peft>=0.17,<0.22",
    "accelerate>=1.0",
    "datasets>=3.0",
    "evaluate>=0.4.3",
    "huggingface_hub>=0.34",
    "safetensors>=0.4",
    "scikit-image>=0.24",  # the offline real photos of the sample dataset, the demo and the quickstart
]

EXTRAS = {
    "test": ["pytest>=8", "pytest-xdist>=3.5", "hypothesis>=6.100", "ruff>=0.6"],
    "space": ["gradio>=4"],
}

setup(
    name="diffusers-spatial",
    version="0.1.0.dev0",
    description="Spatially precise text-to-image generation for diffusers: ESPLoRA, TORE and geometric spatial metrics.",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    package_dir={"": "src"},
    packages=find_packages("src"),
    include_package_data=True,
    package_data={"diffusers_spatial": ["py.typed", "assets/*", "assets/world-base/*", "assets/world-base/*/*"]},
    cmdclass={"build_py": BuildPy},
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["diffusers-spatial=diffusers_spatial.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: Apache Software License",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
