"""`python -m soak` (`make soak`): the full soak, 100,000 webhooks by default. Exits 1 when a
webhook was lost or doubled, or the hub's memory grew more than 20 % after warm-up."""

from __future__ import annotations

import argparse
import sys

from soak import Plan, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m soak", description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--senders", type=int, default=5_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--storm-seconds", type=float, default=60.0)
    parser.add_argument("--outage-seconds", type=float, default=600.0, help="the destination's outage (10 min)")
    parser.add_argument("--drain-seconds", type=float, default=3600.0, help="the most the backlog may take to drain")
    parser.add_argument("--workdir", default=None, help="keep the data directory here (default: a temporary one)")
    parser.add_argument("--disk-quota-mb", type=int, default=2048,
                        help="put the data directory on a tmpfs this large and fill it for a while (needs root; 0: off)")
    parser.add_argument("--disk-full-seconds", type=float, default=30.0)
    parser.add_argument("--warmup-messages", type=int, default=10_000,
                        help="webhooks a hub process takes before its memory counts as warmed up")
    args = parser.parse_args(argv)
    plan = Plan(messages=args.messages, senders=args.senders, clients=args.clients, kills=args.kills,
                storm_seconds=args.storm_seconds, outage_seconds=args.outage_seconds, drain_seconds=args.drain_seconds,
                disk_quota_mb=args.disk_quota_mb, disk_full_seconds=args.disk_full_seconds,
                warmup_messages=args.warmup_messages)
    report = run(plan, args.workdir, progress=lambda line: print(line, flush=True))
    for line in report.lines():
        print(line)
    healthy = report.lost_nothing and report.rss_growth <= 1.2
    print("soak: " + ("nothing lost, nothing doubled" if healthy else "FAILED"))
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
