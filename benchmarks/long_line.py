"""One huge line: what `decoder2vec encode` costs on a single-line .txt of --megabytes MB
(issue 23.10: a 20 MB line took 65 s and 7.5 GB peak RSS before reading and tokenizing were
bounded by max_length).

    .venv/bin/python benchmarks/long_line.py                       # 20 MB, packaged SmolLM2, --max-length 128
    .venv/bin/python benchmarks/long_line.py --megabytes 2          # a quick look

The line is English words (the packaged tokenizer's ~4.5 characters per token). The command runs
in its own process; peak RSS is that process's high-water mark (ru_maxrss of the child), so it
includes Python, torch and the model; the baseline row is the same command on a one-line file.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = "the encoder reads only the first tokens of a text so a long line costs what max_length costs ".split()


def run(path: Path, out: Path, max_length: int, model: str | None) -> tuple[float, float]:
    """Seconds and peak RSS (MiB) of `decoder2vec encode` on `path`, in a fresh process."""
    command = [str(Path(sys.executable).parent / "decoder2vec"), "encode", "--input", str(path), "--output", str(out),
               "--max-length", str(max_length), "--device", "cpu", *(["--model", model] if model else [])]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB, the largest child so far
    if peak < before:
        raise RuntimeError("ru_maxrss went down")
    return seconds, peak / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=20)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--model", default=None, help="default: the packaged SmolLM2-135M-Instruct")
    args = parser.parse_args()
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    print(f"CPU: {cpu}, {os.cpu_count()} cores; load average at start {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        small, huge = tmp / "small.txt", tmp / "huge.txt"
        small.write_text("one short line\n")
        line = (" ".join(WORDS) + " ") * int(args.megabytes * 1e6 / (len(" ".join(WORDS)) + 1) + 1)
        huge.write_text(line[: int(args.megabytes * 1e6)] + "\n")
        # The baseline first: ru_maxrss of children is the largest so far, so the smaller run goes first.
        rows = [("one short line", *run(small, tmp / "a.npy", args.max_length, args.model)),
                (f"one {args.megabytes:g} MB line", *run(huge, tmp / "b.npy", args.max_length, args.model))]
    print(f"| input | seconds | peak RSS (MiB) |  (--max-length {args.max_length})")
    print("|---|---|---|")
    for name, seconds, peak in rows:
        print(f"| {name} | {seconds:.1f} | {peak:,.0f} |")
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
