"""The embedded hub caps glibc's malloc arenas (chalicelib/local/memory.py): with the cap, threads
that allocate at once share two arenas; without it each gets its own. Counted in a fresh process
from glibc's own report (`malloc_info`)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from chalicelib.local.memory import limit_malloc_arenas

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the arena cap is glibc's")

_COUNT_ARENAS = r"""
import ctypes, os, sys, tempfile, threading
from chalicelib.local.memory import limit_malloc_arenas
if sys.argv[1] == "capped":
    assert limit_malloc_arenas({}), "glibc refused the cap"
barrier = threading.Barrier(8)
kept = []
def allocate():
    barrier.wait()
    kept.append([bytearray(4096) for _ in range(64)])  # beyond pymalloc: glibc's malloc
threads = [threading.Thread(target=allocate) for _ in range(8)]
for thread in threads: thread.start()
for thread in threads: thread.join()
libc = ctypes.CDLL(None)
libc.fdopen.restype = ctypes.c_void_p
libc.fdopen.argtypes = (ctypes.c_int, ctypes.c_char_p)
libc.malloc_info.argtypes = (ctypes.c_int, ctypes.c_void_p)
libc.fflush.argtypes = (ctypes.c_void_p,)
with tempfile.TemporaryFile() as report:
    stream = libc.fdopen(os.dup(report.fileno()), b"w")
    libc.malloc_info(0, stream)
    libc.fflush(stream)
    report.seek(0)
    print(report.read().decode().count("<heap nr="))
"""


def _arenas(mode: str) -> int:
    env = {key: value for key, value in os.environ.items() if key != "MALLOC_ARENA_MAX"}
    done = subprocess.run([sys.executable, "-c", _COUNT_ARENAS, mode], capture_output=True, text=True, env=env,
                          check=True)
    return int(done.stdout.strip())


def test_capped_threads_share_two_arenas_where_uncapped_ones_spread_over_more():
    assert _arenas("capped") <= 2
    assert _arenas("uncapped") > 2  # the count can see the difference


def test_an_operators_own_malloc_arena_max_stands():
    assert limit_malloc_arenas({"MALLOC_ARENA_MAX": "4"}) is False
