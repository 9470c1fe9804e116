"""Root conftest: puts the project on sys.path and keeps tests away from the real data directory."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


import logging  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _hub_logs_reach_caplog():
    """The embedded runtime stops `chalicelib` logs from propagating (it has its own handler);
    tests that start one must not hide later tests' log records from `caplog`."""
    hub_logger = logging.getLogger("chalicelib")
    propagate = hub_logger.propagate
    hub_logger.propagate = True
    yield
    hub_logger.propagate = propagate
