"""Run code in a fresh interpreter that has built the AWS webhook function's cold path, for tests
that check what a cold start loads or builds (`tests/unit/test_ingest_imports.py`,
`test_ingest_model_builds.py`). The hub is configured with Meta (the provider served), Twilio, an
outbox destination and a routing rule, so the tests can tell what the others cost."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
channels:
  meta:
    app_secrets: ["env:TEST_META_SECRET"]
    verify_tokens: ["env:TEST_META_VERIFY"]
  twilio:
    auth_tokens: ["env:TEST_TWILIO_TOKEN"]
    public_url: https://hub.example.com/webhooks/twilio
destinations:
  - name: outbox
    type: outbox
    path: outbox.jsonl
routing:
  rules:
    - name: vip
      when: {tag: vip}
      then: {priority: high}
"""

#: What the webhook function builds before its first request: the hub, its configuration, the
#: Meta adapter, the endpoint and the counters.
COLD_PATH = """
import json, sys
import app
from chalicelib.bootstrap import get_hub
hub = get_hub()
hub.config
assert hub.adapter("meta") is not None
hub.webhook_endpoint
hub.counters
"""

QUEUE = "https://sqs.eu-west-1.amazonaws.com/123456789012/hub-test-inbound.fifo"


def run_after_cold_path(workdir: Path, code: str, *args: str) -> subprocess.CompletedProcess:
    """`COLD_PATH` then `code` (with `args` in `sys.argv[1:]`), on the AWS runtime's settings."""
    config = workdir / "hub.yaml"
    config.write_text(CONFIG)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "AWS_"))}
    env.update(
        PYTHONPATH=str(ROOT), HUB_RUNTIME="aws", HUB_STAGE="test", HUB_CONFIG=str(config),
        HUB_DATA_DIR=str(workdir / "data"), HUB_TABLE="hub-test", HUB_INBOUND_QUEUE_URL=QUEUE,
        HUB_BUCKET="hub-test-bucket", AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="eu-west-1", AWS_EC2_METADATA_DISABLED="true",
        TEST_META_SECRET="meta-app-secret", TEST_META_VERIFY="verify", TEST_TWILIO_TOKEN="0123456789abcdef" * 2,
    )
    return subprocess.run([sys.executable, "-c", COLD_PATH + code, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
