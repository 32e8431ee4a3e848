"""Bad command lines end as one line on stderr and exit status 2 (as argparse's own errors), never a traceback."""

import pytest
from PIL import Image

from diffusers_spatial.cli import main


@pytest.fixture
def inputs(tmp_path):
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (32, 32)).save(tmp_path / "imgs" / "a.png")
    (tmp_path / "prompts.txt").write_text("a cat above a dog\n")
    (tmp_path / "latin1.txt").write_bytes("a café above a dog\n".encode("latin-1"))
    (tmp_path / "afile").write_text("")
    return tmp_path


def run_cli(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["evaluate", "{t}/imgs", "--prompts", "{t}/prompts.txt", "--out", "{t}/afile"], "File exists"),
        (["evaluate", "{t}/imgs", "--prompts", "{t}/prompts.txt", "--out", "{t}/afile/sub"], "Not a directory"),
        (["evaluate", "{t}/imgs", "--prompts", "{t}/latin1.txt", "--out", "{t}/o"], "latin1.txt' is not UTF-8 text"),
        (
            ["evaluate", "{t}/imgs", "--prompts", "{t}/prompts.txt", "--out", "{t}/o", "--detector-option", "foo=1"],
            "unknown option(s) ['foo'] for the embedded detector",
        ),
        (
            ["evaluate", "{t}/imgs", "--prompts", "{t}/prompts.txt", "--out", "{t}/o"]
            + ["--detector-option", "score_threshold=abc"],
            "score_threshold must be in [0, 1] or None, got 'abc'",
        ),
        (["dataset", "curate", "--input", "{t}/imgs", "--out", "{t}/afile"], "File exists"),
        (["dataset", "build-sample", "--out", "{t}/afile/x"], "Not a directory"),
        (["generate", "--model", "m", "--prompts", "{t}/latin1.txt", "--out", "{t}/g"], "is not UTF-8 text"),
    ],
)
def test_bad_command_lines_are_one_line_and_exit_2(inputs, capsys, argv, message):
    code, err = run_cli(capsys, *[a.format(t=inputs) for a in argv])
    assert code == 2
    assert message in err and "Traceback" not in err
    assert len(err.splitlines()) == 1, err


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["dataset", "curate", "--input", "{t}/nowhere", "--out", "{t}/o"], "dataset curate"),
        (["dataset", "push", "--out", "{t}", "--repo-id", "me/x"], "dataset push"),
        (["evaluate", "{t}/imgs", "--prompts", "{t}/latin1.txt", "--out", "{t}/o"], "evaluate"),
        (["demo", "--out", "{t}/afile"], "demo"),
    ],
)
def test_errors_name_the_full_sub_command(inputs, capsys, argv, command):
    code, err = run_cli(capsys, *[a.format(t=inputs) for a in argv])
    assert code == 2
    assert err.startswith(f"diffusers-spatial {command}: error: "), err
