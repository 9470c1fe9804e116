"""The embedded hub's native memory: fewer glibc malloc arenas.

glibc gives threads their own malloc arenas (up to eight per core) so they do not contend for one
lock. The embedded hub runs about 25 threads (HTTP and queue workers), and memory freed in one
arena is reused only by the threads that allocate from it, so a burst that touches many threads at
once (an operator replaying thousands of dead letters while deliveries drain) leaves each arena
with free memory no other thread can use: the soak measured the hub's RSS 1.36x its warmed-up size
after such a burst, with the memory in use unchanged. Python allocates under its interpreter
lock, so the arenas buy the hub little concurrency; two arenas held the same soak to 1.14x.

Only the embedded runtime (`hubctl run`, `make run`) asks for this, before it starts a thread.
An operator's own `MALLOC_ARENA_MAX` stands, and without glibc (musl, macOS) nothing changes.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Mapping

logger = logging.getLogger(__name__)

#: glibc's `mallopt` parameter for the arena limit (malloc.h: `#define M_ARENA_MAX -8`).
M_ARENA_MAX = -8
#: Arenas for the whole process: the main one and one that the threads share.
EMBEDDED_ARENAS = 2


def limit_malloc_arenas(environ: Mapping[str, str], arenas: int = EMBEDDED_ARENAS) -> bool:
    """Cap the C allocator's arenas at `arenas` unless `environ` (the process's, from `Settings`)
    sets `MALLOC_ARENA_MAX`; True when glibc took the limit."""
    if environ.get("MALLOC_ARENA_MAX"):
        return False  # the operator chose; glibc read it at start-up
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False  # a C library without mallopt: nothing to tune
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    taken = mallopt(M_ARENA_MAX, arenas) == 1
    logger.debug("malloc arenas capped at %d: %s", arenas, taken)
    return taken
