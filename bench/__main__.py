"""`python -m bench [--quick]`: every benchmark in turn, each reporting ratios against its own baseline."""

from __future__ import annotations

import subprocess
import sys

BENCHES = (
    "bench.bench_store",
    "bench.bench_gateway",
    "bench.bench_stream",
    "bench.bench_turns",
    "bench.bench_wyoming",
    "bench.bench_local",
    "bench.bench_tools",
    "bench.bench_llama",
    "bench.bench_console",
)


def main() -> int:
    failed = 0
    for name in BENCHES:
        print(f"\n=== {name} ===", flush=True)
        failed += subprocess.call([sys.executable, "-m", name, *sys.argv[1:]]) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
