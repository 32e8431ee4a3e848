"""Reading the text and JSON files users hand us, with errors that name the file.

Python's own `UnicodeDecodeError` and `JSONDecodeError` say what byte or character is wrong, not in which file;
a CLI user who passed three files cannot tell which one. These readers raise `ValueError` naming the path.

Examples:

```py
>>> import os, tempfile
>>> from diffusers_spatial.utils.files import read_json
>>> path = os.path.join(tempfile.mkdtemp(), "settings.json")
>>> _ = open(path, "wb").write(b"\\xff\\xfe")
>>> read_json(path)  # doctest: +ELLIPSIS
Traceback (most recent call last):
  ...
ValueError: ... is not UTF-8 text (byte 0xff at position 0)

```
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["read_json", "read_lines", "read_text"]


def read_text(path: str | os.PathLike, *, encoding: str = "utf-8") -> str:
    """The file's text; ValueError naming `path` when it is not text in `encoding`."""
    data = Path(path).read_bytes()
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{os.fspath(path)!r} is not UTF-8 text (byte 0x{data[err.start]:02x} at position {err.start})"
        ) from None


def read_lines(path: str | os.PathLike) -> list[str]:
    """The file's non-blank lines, stripped, each once in first-seen order (a prompts file)."""
    return list(
        dict.fromkeys(line.strip() for line in read_text(path, encoding="utf-8-sig").splitlines() if line.strip())
    )


def read_json(path: str | os.PathLike) -> Any:
    """The file's JSON value; ValueError naming `path` when it is not UTF-8 or not JSON."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{os.fspath(path)!r} is not valid JSON ({err})") from None
