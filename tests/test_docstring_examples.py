"""Runs the `>>>` examples in every library module's docstrings and in the evaluate module (its code and its metric
card), so documented examples cannot rot."""

import doctest
import importlib
import importlib.util
import pkgutil
from pathlib import Path

import pytest

import diffusers_spatial

MODULES = ["diffusers_spatial"] + sorted(
    info.name
    for info in pkgutil.walk_packages(diffusers_spatial.__path__, prefix="diffusers_spatial.")
    if not info.name.split(".")[-1].startswith("_")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples may save models or reports into the working directory
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"


def test_evaluate_module_examples(tmp_path, monkeypatch):
    from diffusers_spatial.metric import module_path

    monkeypatch.chdir(tmp_path)  # the bare name must resolve from any folder
    folder = Path(module_path())
    spec = importlib.util.spec_from_file_location("spatial_consistency", folder / "spatial_consistency.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    code = doctest.testmod(module, optionflags=flags, verbose=False)
    card = doctest.testfile(str(folder / "README.md"), module_relative=False, optionflags=flags, verbose=False)
    assert code.failed == 0 and code.attempted > 3, code
    assert card.failed == 0 and card.attempted > 5, card
