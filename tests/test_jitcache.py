"""numba's cache race (numba#10128, librosa#1998), reproduced on a small module, and its fix.

Several workers that compile the same ``@guvectorize(cache=True)`` functions at once can
leave one worker's wrapper beside another's kernel in the cache; every later process
that loads the pair dies with a segmentation fault. The fix preparation uses: check
(and repair) the cache in a child process, which compiles it once, then start the pool,
so the workers only read the cache.
"""

from __future__ import annotations

import faulthandler
import multiprocessing
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from whypop import jitcache
from whypop.workers import Crashed, imap_unordered

RACE_MODULE = '''
import numba
import numpy as np

SIGS = ["void(float32[:], bool_[:])", "void(float64[:], bool_[:])"]


@numba.guvectorize(SIGS, "(n)->(n)", nopython=True, cache=True)
def localmax(x, out):
    n = x.shape[0]
    for i in range(n):
        left = x[i - 1] if i > 0 else x[i]
        right = x[i + 1] if i < n - 1 else x[i]
        out[i] = x[i] > left and x[i] >= right


@numba.guvectorize(["void(float32[:], float32[:])", "void(float64[:], float64[:])"], "(n)->(n)",
                   nopython=True, cache=True)
def running_sum(x, out):
    acc = 0.0
    for i in range(x.shape[0]):
        acc += x[i]
        out[i] = acc


def check():
    x = np.array([0, 2, 1, 3, 1, 5, 0], np.float32)
    for dtype in (np.float32, np.float64):
        assert localmax(x.astype(dtype)).tolist() == [False, True, False, True, False, True, False]
        assert running_sum(x.astype(dtype)).tolist() == np.cumsum(x).tolist()
'''
MODULE = "whypop_race_probe"
WORKERS = 4
ROUNDS = 3


def _worker(index: int) -> bool:
    """What a preparation worker does: it has compiled other things, then uses the module."""
    import numba

    faulthandler.disable()  # a crash here is expected: no traceback dump from pytest's handler
    time.sleep(0.2 * index)  # workers reach the module at different moments
    for k in range(index):  # and with different numbers of functions compiled before it
        numba.njit(lambda x, k=k: x + k)(1.0)
    __import__(MODULE).check()
    return True


def _round_parent(fix: bool) -> None:
    import numba

    numba.config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]
    if fix:  # what pipelines.prepare does before its pool: compile once, alone; workers only read
        jitcache.ensure_usable(f"{MODULE}:check", prefixes=())
    results = [r for _, r in imap_unordered(_worker, [(i,) for i in range(WORKERS)], WORKERS)]
    sys.exit(sum(isinstance(r, Crashed) for r in results))


def _use() -> None:
    import numba

    faulthandler.disable()
    numba.config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]
    __import__(MODULE).check()


def _fork(target, *args) -> int:
    p = multiprocessing.get_context("fork").Process(target=target, args=args)
    p.start()
    p.join()
    return p.exitcode


@pytest.fixture
def race_env(tmp_path, monkeypatch):
    (tmp_path / f"{MODULE}.py").write_text(RACE_MODULE)
    cache = tmp_path / "numba-cache"
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(cache))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home-cache"))
    assert MODULE not in sys.modules
    return cache


def _rounds(cache: Path, fix: bool) -> list[int]:
    """The exit code of a fresh process using the cache after each round (0: usable)."""
    out = []
    for _ in range(ROUNDS):
        shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir()
        _fork(_round_parent, fix)
        out.append(_fork(_use))
    return out


@pytest.mark.slow
def test_workers_compiling_at_once_corrupt_the_cache_and_it_is_repaired(race_env):
    """Without the fix the race is real: a later process crashes on the cache. The check repairs it."""
    after = _rounds(race_env, fix=False)
    assert any(code != 0 for code in after), f"the race did not show in {ROUNDS} rounds: {after}"
    if after[-1] != 0:  # the last round left a damaged cache: repaired, said once
        note = jitcache.ensure_usable(f"{MODULE}:check", prefixes=())
        assert note and "damaged" in note and "SIGSEGV" in note
    assert jitcache.ensure_usable(f"{MODULE}:check", prefixes=()) is None
    assert _fork(_use) == 0


@pytest.mark.slow
def test_compiling_once_before_the_pool_avoids_the_race(race_env):
    after = _rounds(race_env, fix=True)
    assert after == [0] * ROUNDS
