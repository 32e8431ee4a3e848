"""Make `evaluate.load("spatial_consistency")` resolve offline, from any working directory.

`evaluate.load` resolves a bare name as ./name/name.py, then the Hub's `evaluate-metric/name`, then the module
cache entry `evaluate_modules/metrics/evaluate-metric--name/<hash>/name.py` under HF_MODULES_CACHE (taking the
newest hash by modification time). This module writes that cache entry from the copy of the metric shipped with
the package, exactly as `evaluate.loading._create_importable_file` lays it out, so the third step finds it.

It runs when `diffusers_spatial` is imported (never at interpreter start), with the standard library only: importing
`evaluate` (and with it `datasets`) there would cost seconds and freeze their environment-variable configuration
before user code runs. evaluate then announces, on every load, that it uses "the latest cached version ... since it
couldn't be found ... on the Hugging Face Hub": for this module that is the intended path, not a failure, so that
one line is filtered out of evaluate's log (nothing else). Set `DIFFUSERS_SPATIAL_NO_METRIC_HOOK=1` to switch the
registration off.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

METRIC_NAME = "spatial_consistency"
# evaluate's namespace for canonical metrics: a bare name falls back to this cache entry when the Hub fails.
CACHE_ENTRY_NAME = f"evaluate-metric--{METRIC_NAME}"
DISABLE_ENV = "DIFFUSERS_SPATIAL_NO_METRIC_HOOK"

_PACKAGE_DIR = Path(__file__).resolve().parent
# Where the module lives: inside the wheel (setup.py maps metrics/spatial_consistency there), else in the source
# checkout an editable install runs from.
_CANDIDATE_DIRS = (
    _PACKAGE_DIR / "evaluate_module",
    _PACKAGE_DIR.parents[2] / "metrics" / METRIC_NAME,
)


def module_path() -> str:
    """Return the folder holding the `spatial_consistency` evaluate module, for `evaluate.load(path)`.

    Raises:
        FileNotFoundError: if neither the packaged copy nor the source checkout's `metrics/` folder has it.

    Examples:

    ```py
    >>> import evaluate
    >>> from diffusers_spatial.metric import module_path
    >>> metric = evaluate.load(module_path())  # doctest: +SKIP
    ```
    """
    for folder in _CANDIDATE_DIRS:
        if (folder / f"{METRIC_NAME}.py").is_file():
            return str(folder)
    raise FileNotFoundError(
        f"the {METRIC_NAME} evaluate module is missing: looked for {METRIC_NAME}.py in "
        f"{[str(d) for d in _CANDIDATE_DIRS]}; reinstall diffusers-spatial"
    )


def hf_modules_cache() -> Path:
    """HF_MODULES_CACHE as `evaluate.config` computes it (same variables, same defaults)."""
    xdg_cache_home = os.getenv("XDG_CACHE_HOME", "~/.cache")
    hf_cache_home = os.path.expanduser(os.getenv("HF_HOME", os.path.join(xdg_cache_home, "huggingface")))
    return Path(os.getenv("HF_MODULES_CACHE", os.path.join(hf_cache_home, "modules")))


def module_hash(path: str | os.PathLike) -> str:
    """The 64-hex-digit hash `evaluate.loading.files_to_hash` gives a single module file (comments ignored)."""
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    filtered = [line for line in (re.sub(r"#.*", "", line) for line in lines) if line]
    return hashlib.sha256("\n".join(filtered).encode("utf-8")).hexdigest()


def cache_entry_dir(modules_cache: str | os.PathLike | None = None) -> Path:
    """The folder `evaluate` searches for a cached bare-name `spatial_consistency` module."""
    root = Path(modules_cache) if modules_cache is not None else hf_modules_cache()
    return root / "evaluate_modules" / "metrics" / CACHE_ENTRY_NAME


def _touch_init(folder: Path) -> None:
    init = folder / "__init__.py"
    if not init.exists():
        init.touch()


def register_evaluate_module(modules_cache: str | os.PathLike | None = None, *, quiet: bool = False) -> Path | None:
    """Seed evaluate's module cache so that `evaluate.load("spatial_consistency")` finds this package's module.

    Idempotent and cheap when already done (one hash of a small file and a directory listing). The copy is
    written to a temporary folder and renamed into place, so concurrent processes never see half a module, and
    it is made the newest entry so evaluate prefers it over copies from other versions.

    Args:
        modules_cache: HF_MODULES_CACHE to seed; default: the one `evaluate` will use (environment variables).
        quiet: swallow every error and return None (`import diffusers_spatial` must never fail on a cache folder).

    Returns:
        The seeded `<hash>/spatial_consistency.py` file, or None if disabled (or failed with `quiet=True`).
    """
    if os.environ.get(DISABLE_ENV, "").strip().lower() not in ("", "0", "false", "no", "off"):
        return None
    try:
        target = _register(modules_cache)
        _install_log_filter()
        return target
    except Exception:
        if quiet:
            return None
        raise


class _CachedModuleNotice(logging.Filter):
    """Drops evaluate's "Using the latest cached version of the module" line for this metric only."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (
            message.startswith("Using the latest cached version of the module") and CACHE_ENTRY_NAME in message
        )


def _install_log_filter() -> None:
    logger = logging.getLogger("evaluate.loading")
    if not any(isinstance(f, _CachedModuleNotice) for f in logger.filters):
        logger.addFilter(_CachedModuleNotice())


def _register(modules_cache: str | os.PathLike | None) -> Path:
    source = Path(module_path()) / f"{METRIC_NAME}.py"
    digest = module_hash(source)
    root = Path(modules_cache) if modules_cache is not None else hf_modules_cache()
    entry = cache_entry_dir(root)
    target = entry / digest / f"{METRIC_NAME}.py"

    if not target.is_file():
        # The package markers evaluate's `init_dynamic_modules` / `_create_importable_file` create.
        entry.mkdir(parents=True, exist_ok=True)
        for folder in (root, root / "evaluate_modules", root / "evaluate_modules" / "metrics", entry):
            _touch_init(folder)
        staging = Path(tempfile.mkdtemp(prefix=f".{digest[:8]}-", dir=entry))
        try:
            shutil.copyfile(source, staging / target.name)
            (staging / "__init__.py").touch()
            meta = {"original file path": str(source), "local file path": str(target)}
            (staging / f"{METRIC_NAME}.json").write_text(json.dumps(meta), encoding="utf-8")
            try:
                os.rename(staging, entry / digest)
            except OSError:
                if not target.is_file():  # lost a race only if the winner left a complete module
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    # evaluate takes the newest <hash>/spatial_consistency.py: make sure that is this version's, strictly.
    others = [p.stat().st_mtime for p in entry.glob(f"*/{METRIC_NAME}.py") if len(p.parent.name) == 64 and p != target]
    if others and target.stat().st_mtime <= max(others):
        os.utime(target, (max(others) + 1, max(others) + 1))
    return target
