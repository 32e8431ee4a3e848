"""The docs' commands run as written: docs/quickstart.md top to bottom, then docs/bench.md, in an empty folder.

Every ```bash and ```python block runs, in document order, offline (tiny models built from configs, real photos
for the dataset sample and the metric), except a block right after a `<!-- quickstart: not run here ... -->` comment
(the demo, which tests/test_demo.py runs, and commands that need a GPU and the Hub). The flags of those, and of the
"real:" commands in comments, are still parsed by the real command-line parsers, so a renamed flag fails here.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from diffusers_spatial.cli import build_parser
from diffusers_spatial.photos import PhotoUnavailableError, photo_path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
_BLOCK_RE = re.compile(r"(<!-- quickstart: not run[^>]*-->\s*\n)?```(\w*)\n(.*?)```", re.S)


def blocks(page: str) -> list[tuple[str, str, bool]]:
    """(language, code, runnable) of every fenced block of a docs page."""
    text = (DOCS / page).read_text(encoding="utf-8")
    return [(lang, code, not skip) for skip, lang, code in _BLOCK_RE.findall(text)]


def commands(code: str) -> list[list[str]]:
    """The commands of a bash block and of its `# real: ...` comments, continuation lines joined, comments dropped."""
    lines, found = code.splitlines(), []
    for k, line in enumerate(lines):
        text = line.split("# real:", 1)[1] if "# real:" in line else (None if line.lstrip().startswith("#") else line)
        if text is None or (k and lines[k - 1].rstrip().endswith("\\")):
            continue
        j = k
        while text.rstrip().endswith("\\") and j + 1 < len(lines):
            j += 1
            text = text.rstrip()[:-1] + " " + lines[j].lstrip("# ").strip()
        text = re.sub(r"\s\(docs/[^)]*\)\s*$", "", text.split("        #")[0])  # a trailing "(docs/x.md)" remark
        if text.strip():
            found.append(shlex.split(text, comments=True))
    return found


def check_flags(argv: list[str]) -> None:
    """Parse a documented command with the parser that will read it."""
    if argv[0] == "diffusers-spatial":
        build_parser().parse_args(argv[1:])
    elif argv[:2] == ["accelerate", "launch"]:
        rest = [a for a in argv[2:] if a != "-m"]
        if rest[0] == "diffusers_spatial.cli":
            build_parser().parse_args(rest[1:])
            return
        script = next(i for i, a in enumerate(rest) if a.endswith(".py"))
        spec = importlib.util.spec_from_file_location("documented_script", REPO / rest[script])
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.parse_args(rest[script + 1 :])


@pytest.mark.parametrize("page", ["quickstart.md", "bench.md"])
def test_documented_commands_have_valid_flags(page):
    checked = 0
    for lang, code, _ in blocks(page):
        if lang != "bash":
            continue
        for argv in commands(code):
            if argv[0] in ("diffusers-spatial", "accelerate"):
                check_flags(argv)
                checked += 1
    assert checked >= 3


def _environment(tmp_path: Path) -> dict:
    env = dict(os.environ)
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",  # diffusers-spatial, accelerate
        HF_HOME=str(tmp_path / "hf_home"),  # a fresh cache: evaluate.load must work from the installed package
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="2",
    )
    return env


def _run(lang: str, code: str, cwd: Path, env: dict) -> str:
    command = ["bash", "-e", "-o", "pipefail", "-c", code] if lang == "bash" else [sys.executable, "-c", code]
    process = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    output = f"{process.stdout[-3000:]}\n{process.stderr[-4000:]}"
    assert process.returncode == 0, f"{lang} block failed:\n{code}\n--- output ---\n{output}"
    return process.stdout


@pytest.mark.slow
def test_quickstart_and_bench_pages_run_as_written(tmp_path):
    try:
        photo_path("dog")
    except PhotoUnavailableError:
        pytest.skip("the darknet photos of the sample dataset are not installed (make system-deps)")
    (tmp_path / "examples").symlink_to(REPO / "examples")  # "a folder of a checkout": the training script is there
    env = _environment(tmp_path)
    printed = []
    for page in ("quickstart.md", "bench.md"):
        runnable = [(lang, code) for lang, code, run in blocks(page) if run and lang in ("bash", "python")]
        assert runnable, page
        printed += [_run(lang, code, tmp_path, env) for lang, code in runnable]
    output = "\n".join(printed)

    assert (tmp_path / "spatial-sample" / "README.md").is_file()
    assert (tmp_path / "tiny-esplora" / "pytorch_lora_weights.safetensors").is_file()
    assert (tmp_path / "cat_left_of_dog.png").is_file()
    assert (tmp_path / "runs" / "tiny" / "eval" / "report.md").is_file()
    assert (tmp_path / "runs" / "bench-tiny" / "report.md").is_file()
    # What the pages say the snippets print.
    assert "['a dog to the right of a cat']" in output
    assert "50.0 0.5" in output
    assert "seed ['baseline', 'tore', 'lora', 'lora_tore']" in output
    assert "+LoRA+TORE" in output
