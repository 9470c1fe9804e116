"""`python -m bench [name ...]`: run the benchmarks (all by default) and print the summary table.

Exit status 0 when every benchmark ran, missed targets included (they are printed as MISSED);
1 only when a benchmark itself crashed, because then the numbers are missing, not bad.
"""

from __future__ import annotations

import importlib
import os
import platform
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import BENCHMARKS  # noqa: E402
from bench.common import Result, print_table  # noqa: E402

HEADER = ["benchmark", "measured", "floor", "ratio", "target", "met?"]


def main(argv: list[str]) -> int:
    names = argv or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    os.chdir(ROOT)
    print(f"omnichannel hub benchmarks: Python {platform.python_version()} on {platform.machine()}, "
          f"{os.cpu_count()} CPUs; ratios are against floors measured in this run")
    started = time.perf_counter()
    results: list[Result] = []
    crashed = []
    for name in names:
        t0 = time.perf_counter()
        print(f"\n== {name}", flush=True)
        try:
            rows = importlib.import_module(f"bench.{name}").run()
        except Exception:
            traceback.print_exc()
            crashed.append(name)
            rows = [Result(f"{name}: benchmark crashed", "error", None, None, "runs", False)]
        for row in rows:
            print(f"  {row.benchmark}: {row.cells()[1]} (floor {row.cells()[2]}, {row.cells()[3]}, "
                  f"target {row.target}) {row.cells()[5]}")
            if row.note:
                print(f"      {row.note}")
        print(f"   ({time.perf_counter() - t0:.1f} s)", flush=True)
        results.extend(rows)

    print(f"\n== summary ({time.perf_counter() - started:.0f} s)")
    print_table([r.cells() for r in results], HEADER)
    missed = [r for r in results if r.met is False]
    if missed:
        print(f"\nMISSED {len(missed)} of {sum(r.met is not None for r in results)} targets:")
        for r in missed:
            print(f"  MISSED  {r.benchmark}: {r.cells()[1]} (target {r.target})")
    else:
        print("\nall targets met")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
