"""The hub's benchmarks: `python -m bench` (or `make bench`) runs them all and prints a summary.

Every benchmark reports a ratio against a floor measured in the same run, plus its target from
docs/PERFORMANCE goals (G1, G2, I1, I2, I4, I5, A1-A3, R1), from issue 12 (AWS calls per
outbound send and per status callback; the send route's CPU against the ingest route's) and from
issue 13 (AWS calls per destination callback at ingest and in the workers; the callback route's
CPU against the webhook route's), and from issue 14 (the embedded runtime under load: accepted
webhooks/s, contacts/s end to end, a backlog's drain rate flat in its size, CPU per contact), and
from issue 15 (a broadcast's time and memory per 1,000 customers notified, flat in the segment's
size, and exactly one message per eligible customer).
Benchmarks inform; they never fail the build for a missed target. See docs/benchmarks.md.
"""

#: Run order: CPU first (quietest machine state), then the subprocess and moto benchmarks.
#: identity_accuracy last: it is the longest (about 1.5 minutes) and builds its own stores.
BENCHMARKS = ("ingest_cpu", "send_cpu", "routing", "email_parsing", "startup", "pyc", "aws_calls", "outbound", "callbacks",
              "dedupe_ttl", "embedded_http", "load_local", "broadcast", "identity_accuracy")
