import subprocess
import sys

from diffusers_spatial import __version__
from diffusers_spatial.cli import build_parser, main


def test_version_flag(capsys):
    parser = build_parser()
    try:
        parser.parse_args(["--version"])
    except SystemExit as err:
        assert err.code == 0
    assert __version__ in capsys.readouterr().out


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "usage: diffusers-spatial" in capsys.readouterr().out


def test_console_script_is_installed():
    out = subprocess.run(
        [sys.executable, "-m", "diffusers_spatial.cli", "--help"], capture_output=True, text=True, check=True
    )
    assert "diffusers-spatial" in out.stdout
