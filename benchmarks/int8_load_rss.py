"""Peak RSS of loading an Encoder in fp32 and in int8 (quantised while loading, and the older way:
a full fp32 load, then quantize_model), each in a fresh process.

    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python benchmarks/int8_load_rss.py

Sources: the packaged smollm2-135m (its safetensors copy of the GGUF file, made once in the cache)
and an Encoder folder saved from it in a temporary folder. Each row: the process's peak RSS
(VmHWM) after importing decoder2vec, after from_pretrained, and after encoding one text (the fp32
load maps the checkpoint lazily: its weights become resident only as the first forward reads them),
and the RSS held at the end. Memory only, so a busy machine does not change the figures much.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import peak_rss_mib

WAYS = {
    "fp32": "fp32",
    "int8 (full fp32 load, then quantize_model)": "int8-after",
    "int8 (quantised while loading)": "int8-streamed",
}


def current_rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))


def worker(way: str, source: str) -> None:
    from decoder2vec import Encoder
    from decoder2vec.model.quantization import quantize_model

    imported = peak_rss_mib()
    if way == "int8-after":
        encoder = quantize_model(Encoder.from_pretrained(source), "int8")
    else:
        encoder = Encoder.from_pretrained(source, quantize="int8" if way == "int8-streamed" else None)
    loaded = peak_rss_mib()
    encoder.encode(["The quick brown fox jumps over the lazy dog."])
    print(json.dumps({"imported": imported, "loaded": loaded, "encoded": peak_rss_mib(),
                      "held": current_rss_mib(), "weights": encoder.backend.weights}))


def run(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def save_folder(target: str) -> None:
    from decoder2vec import Encoder

    Encoder.from_pretrained("smollm2-135m").save_pretrained(target)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = str(Path(tmp) / "smollm2-encoder")
        subprocess.run([sys.executable, __file__, "--save", folder], check=True, capture_output=True)
        sources = {"packaged smollm2-135m": "smollm2-135m", "Encoder folder (saved smollm2-135m)": folder}
        print("| source | load | peak RSS after import (MiB) | after from_pretrained | after 1st encode | held at the end |")
        print("| --- | --- | --- | --- | --- | --- |")
        for label, source in sources.items():
            for name, way in WAYS.items():
                row = run("--worker", way, source)
                assert row["weights"] == ("float32" if way == "fp32" else "int8"), row
                print(f"| {label} | {name} | {row['imported']:.0f} | {row['loaded']:.0f} | "
                      f"{row['encoded']:.0f} | {row['held']:.0f} |", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2], sys.argv[3])
    elif sys.argv[1:2] == ["--save"]:
        save_folder(sys.argv[2])
    else:
        main()
