"""Wall time of every experiment's ``mlplab run NAME --quick`` (issue #11: all together within 10 min).

Each experiment runs in its own process, one after the other, into a fresh folder (nothing is
reused), and prints its conclusions; the table goes to stdout as Markdown.

    cd bench && python bench_experiments.py --data-dir ../../shared/data/fashion-mnist [--full] [NAME ...]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_name

from mlplab import experiments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="experiments (default: all)")
    parser.add_argument("--data-dir", default=None, help="Fashion-MNIST folder")
    parser.add_argument("--full", action="store_true", help="the full runs instead of --quick")
    args = parser.parse_args()
    names = args.names or experiments.names()
    mlplab = Path(sys.executable).with_name("mlplab")
    rows, total = [], 0.0
    for name in names:
        out = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
        command = [str(mlplab), "run", name, "--out", str(out), *([] if args.full else ["--quick"])]
        if args.data_dir:
            command += ["--data-dir", args.data_dir]
        t0 = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
        seconds = time.perf_counter() - t0
        total += seconds
        lines = [line for line in done.stdout.splitlines() if line.startswith("- ")]
        print(f"## {name}: {seconds:.1f} s, exit {done.returncode}", *lines, sep="\n", flush=True)
        if done.returncode != 0:
            print(done.stderr[-2000:], flush=True)
        rows.append((name, seconds, done.returncode))
        shutil.rmtree(out, ignore_errors=True)
    print(f"\n{cpu_name()}, {os.cpu_count()} cores; {'full' if args.full else '--quick'}\n")
    print("| experiment | wall s | exit |\n|---|---|---|")
    for name, seconds, rc in rows:
        print(f"| {name} | {seconds:.1f} | {rc} |")
    print(f"| **all** | **{total:.1f}** | |")


if __name__ == "__main__":
    main()
