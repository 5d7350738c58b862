"""Numba's on-disk cache, made safe for process pools.

librosa's compiled helpers (``peak_pick``, ``localmax``, ... built with
``@guvectorize(cache=True)``) and ours (``whypop._spectral``, the SGD loop of
``whypop.ace.cav``) are compiled on first use and cached on disk. Two processes
compiling the same gufunc at once can leave one process's wrapper (``guf-*.nbc``) beside
the other's kernel (``*.nbc``); every later load of that pair calls a null pointer and
dies with a segmentation fault (numba issue 10128, librosa issue 1998).

:func:`ensure_usable`, called by a stage before its pool starts, runs :func:`warm_up`
(every cached function the workers use, with their real argument types) in a child
process: on a fresh cache that compiles and saves everything once, alone, so the
workers only ever read the cache (concurrent reads are safe). If the child dies, the
cache entries of those functions are removed (said once, as a warning) and compiled
again; if that does not help, this process and its children use a private cache
folder. A good check is remembered (keyed by the cache files' sizes and times and the
library versions), so the check costs nothing until the cache changes, and a cache
changed by anyone else is checked again.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from whypop.errors import WhypopError

log = logging.getLogger(__name__)

WARM_UP = "whypop.jitcache:warm_up"  # the default check: what preparation and extraction run
_PREFIXES = ("librosa", "whypop")  # whose cached functions the repair clears
CHECK_TIMEOUT = 1800.0  # seconds: a cold cache compiles everything (about a minute on a busy laptop)


class CompiledCodeError(WhypopError):
    """The compiled functions crash even when compiled afresh (a broken numba or librosa install)."""


def warm_up() -> None:
    """Load or compile every cached function preparation and extraction run, with their real types."""
    import numpy as np

    # importing these compiles librosa's eagerly typed gufuncs (localmax, peak_pick, ...)
    import librosa.core.audio  # noqa: F401
    import librosa.core.pitch  # noqa: F401
    import librosa.onset  # noqa: F401
    import librosa.util.utils  # noqa: F401

    from whypop import audio
    from whypop.ace import cav
    from whypop.config import AudioConfig
    from whypop.features import MIN_SECONDS_TEMPO, compute_audio_features

    rng = np.random.default_rng(0)
    sr = 22050
    clicks = np.zeros(int(sr * (MIN_SECONDS_TEMPO + 1)), np.float32)
    clicks[:: sr // 2] = 1.0  # a beat: onsets, peaks and a tempo to find
    y = (clicks + 0.05 * rng.standard_normal(clicks.size)).astype(np.float32)
    audio.spectrogram_from_samples(y, sr, AudioConfig(sample_rate=sr, duration=MIN_SECONDS_TEMPO + 1))
    compute_audio_features(y, sr)
    K = np.eye(4) + 0.1
    cav.sgd_hinge_gram(K, [np.arange(4)], [np.array([1, 0, 1, 0])], alpha=0.01, max_iter=2)


def cache_files(prefixes: tuple[str, ...] = _PREFIXES) -> list[Path]:
    """The cache files (index and data, wrappers included) of every cached compiled
    function in the loaded modules under ``prefixes``."""
    out: list[Path] = []
    for folder, stem in _cache_stems(prefixes):
        for name in (stem, "guf-" + stem):
            out.extend(sorted(folder.glob(f"{name}.nbi")) + sorted(folder.glob(f"{name}.*.nbc")))
    return out


def _cache_stems(prefixes: tuple[str, ...]) -> list[tuple[Path, str]]:
    """(folder, file stem) of each cached function: 'utils._localmax-1035.py311'."""
    if "numba" not in sys.modules:
        return []
    from numba.core.dispatcher import Dispatcher
    from numba.np.ufunc.dufunc import DUFunc
    from numba.np.ufunc.gufunc import GUFunc

    seen: set[tuple[Path, str]] = set()
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith(prefixes):
            continue
        values = list(vars(module).values())
        if name == "whypop.ace.cav":  # the SGD loop is built on first use, kept in a list
            values += list(getattr(module, "_KERNEL", []))
        for value in values:  # type checks only: librosa's lazily loaded modules raise on getattr
            if isinstance(value, Dispatcher):
                cache = value._cache
            elif isinstance(value, (GUFunc, DUFunc)):
                cache = getattr(value._dispatcher, "cache", None)
            else:
                continue
            index = getattr(getattr(cache, "_cache_file", None), "_index_name", None)
            if index and getattr(cache, "_cache_path", None):
                seen.add((Path(cache._cache_path), index.removesuffix(".nbi")))
    return sorted(seen)


def clear(target: str = WARM_UP, prefixes: tuple[str, ...] = _PREFIXES) -> list[Path]:
    """Remove the cache files of the cached functions ``target``'s module defines or imports.

    Imports (never calls) them, so a damaged cache cannot crash this. Returns the files removed.
    """
    module = importlib.import_module(target.partition(":")[0])
    if module.__name__ == "whypop.jitcache":  # what warm_up imports, without running it
        for name in ("librosa.core.audio", "librosa.core.pitch", "librosa.onset",
                     "librosa.util.utils", "whypop._spectral", "whypop.ace.cav"):
            importlib.import_module(name)
        sys.modules["whypop.ace.cav"]._sgd_kernel()
    removed = []
    for path in cache_files(prefixes + (module.__name__,)):
        try:
            path.unlink()
            removed.append(path)
        except FileNotFoundError:
            pass
    return removed


def ensure_usable(target: str = WARM_UP, prefixes: tuple[str, ...] = _PREFIXES, timeout: float = CHECK_TIMEOUT) -> str | None:
    """Make sure ``target`` (``"module:function"``) runs with the cached compiled code.

    Checked in a child process (a damaged cache kills the child, not this process).
    Returns None when the cache was fine, else a one-line note of the repair (also
    logged once as a warning). Raises :class:`CompiledCodeError` when even a fresh,
    private cache crashes.
    """
    stamp = _stamp_path(target)
    if stamp is not None and _stamp_matches(stamp):
        return None
    log.info("checking numba's cache of compiled functions (a fresh cache is compiled now, once: minutes on a busy machine)")
    code = _run_child("check", target, prefixes, stamp, timeout)
    if code == 0:
        return None
    first = _describe(code)
    cleared = _run_child("clear", target, prefixes, None, timeout) == 0
    code = _run_child("check", target, prefixes, stamp, timeout)
    if code == 0:
        note = (f"numba's cache of compiled functions was damaged (a check process {first}); "
                f"{'removed their entries and ' if cleared else ''}compiled them again")
        log.warning(note)
        return note
    private = tempfile.mkdtemp(prefix="whypop-numba-cache-")
    os.environ["NUMBA_CACHE_DIR"] = private  # for this process's children
    numba_config = getattr(sys.modules.get("numba"), "config", None)
    if numba_config is not None:  # functions compiled from now on in this process
        numba_config.CACHE_DIR = private
    code = _run_child("check", target, prefixes, None, timeout)
    if code != 0:
        raise CompiledCodeError(
            f"the compiled functions of numba/librosa crash (a check process {_describe(code)}) even with a fresh "
            f"cache in {private}: reinstall numba and librosa (`pip install --force-reinstall -c constraints.txt numba librosa`)"
        )
    note = (f"numba's cache of compiled functions is damaged and could not be repaired (a check process {first}); "
            f"this run uses a private cache in {private}")
    log.warning(note)
    return note


def _describe(code: int) -> str:
    if code < 0:
        import signal

        try:
            return f"died with signal {-code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"died with signal {-code}"
    return f"exited with code {code}"


def _run_child(action: str, target: str, prefixes: tuple[str, ...], stamp: Path | None, timeout: float) -> int:
    package_root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    cmd = [sys.executable, "-m", "whypop.jitcache", action, target, ",".join(prefixes), str(stamp or "")]
    try:
        proc = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124
    if proc.returncode != 0:
        log.debug("%s of %s exited %s: %s", action, target, proc.returncode, proc.stderr.decode(errors="replace")[-2000:])
    return proc.returncode


# -- the record of a good check ----------------------------------------------------------


def _stamp_path(target: str) -> Path | None:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    key = json.dumps([sys.executable, os.environ.get("NUMBA_CACHE_DIR", ""), target])
    return Path(base) / "whypop" / f"numba-check-{hashlib.sha1(key.encode()).hexdigest()[:16]}.json"


def _file_state(paths: list[Path]) -> dict[str, list[int]]:
    out = {}
    for p in paths:
        try:
            st = p.stat()
        except OSError:
            continue
        out[str(p)] = [st.st_size, st.st_mtime_ns]
    return out


def _stamp_matches(stamp: Path) -> bool:
    try:
        saved = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return False
    files = saved.get("files") or {}
    return bool(files) and _file_state([Path(p) for p in files]) == files and saved.get("versions") == _versions()


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("numba", "librosa", "numpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = ""
    return out


def _write_stamp(stamp: Path, prefixes: tuple[str, ...]) -> None:
    files = _file_state(cache_files(prefixes))
    if not files:
        return
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        tmp = stamp.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"files": files, "versions": _versions()}))
        tmp.replace(stamp)
    except OSError:  # an unwritable home: check every time
        pass


def _main(argv: list[str]) -> int:
    action, target, prefixes, stamp = argv
    prefix_tuple = tuple(p for p in prefixes.split(",") if p)
    if action == "clear":
        clear(target, prefix_tuple)
        return 0
    module_name, _, func = target.partition(":")
    module = importlib.import_module(module_name)
    getattr(module, func or "warm_up")()
    if stamp:
        _write_stamp(Path(stamp), prefix_tuple + (module_name,))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
