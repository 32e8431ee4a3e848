"""Runs the `>>>` examples in every library module's docstrings, so documented examples cannot rot."""

import doctest
import importlib
import pkgutil

import pytest

import diffusers_spatial

MODULES = sorted(
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
