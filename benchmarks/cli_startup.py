"""Wall time of the commands people wait on: listing and planning must not load a framework.

    uv run python benchmarks/cli_startup.py [--repeat N] [--demo]

--demo also times one full `convhub demo` (every example through every route, with parity).
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = [
    ["--help"],
    ["formats"],
    ["plugins"],
    ["route", "keras→tflite", "--all"],
]


# A Tab press: the shell runs convhub in argcomplete's protocol (answers go to fd 8: here, stdout).
TAB = ([], {"_ARGCOMPLETE": "1", "COMP_LINE": "convhub convert --to t", "COMP_POINT": "22",
            "_ARGCOMPLETE_STDOUT_FILENAME": "/dev/null"}, "Tab: convhub convert --to t")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--demo", action="store_true", help="also time one `convhub demo`")
    args = parser.parse_args()
    exe = shutil.which("convhub") or str(Path(sys.executable).parent / "convhub")
    for argv, env, label in [*((a, None, "convhub " + " ".join(a)) for a in COMMANDS), TAB]:
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            subprocess.run([exe, *argv], check=True, capture_output=True, env=env and {**os.environ, **env})
            times.append(time.perf_counter() - start)
        print(f"{label:<36} median {statistics.median(times) * 1000:7.0f} ms"
              f"   min {min(times) * 1000:7.0f} ms   ({args.repeat} runs)")
    if args.demo:
        start = time.perf_counter()
        subprocess.run([exe, "demo"], check=True, capture_output=True)
        print(f"convhub demo                         {time.perf_counter() - start:7.1f} s    (1 run)")


if __name__ == "__main__":
    main()
