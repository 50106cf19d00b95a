"""What this CPU's matrix units can do, found once, and which engine `fast=True` runs on it.

A user asks for speed with one switch (`Encoder.from_pretrained(..., fast=True)`, `--fast`,
`fast: true` in a recipe); they never name an instruction set. This module reads the features
that decide which kernels are fast - AVX2, AVX-512, AVX-512-BF16, VNNI, AMX-BF16, AMX-INT8 - from
/proc/cpuinfo, with what torch, oneDNN, OpenVINO and ONNX Runtime report, and looks the CPU's
class up in FAST_ENGINES: the engine that was fastest *and* passed the accuracy gate (min cosine
>= 0.999 against the fp32 vectors on the 300-text benchmark set) when benchmarks/encode_speed.py
measured a CPU of that class. A class nobody has measured gets an exact fp32 engine: speed is
then a guess, accuracy never is.
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

# /proc/cpuinfo flag -> the name a reader knows.
FLAGS = {
    "avx2": "AVX2", "avx512f": "AVX-512", "avx512_bf16": "AVX512-BF16", "avx512_vnni": "AVX512-VNNI",
    "avx_vnni": "AVX-VNNI", "amx_bf16": "AMX-BF16", "amx_int8": "AMX-INT8",
}

# CPU class -> the engine `fast=True` runs (Encoder.from_pretrained keywords) and the measurement
# behind it. Only engines whose measured min cosine against the fp32 vectors was >= 0.999 are
# listed; docs/performance.md has the tables.
FAST_ENGINES = {
    # Intel Xeon with AMX (issue 27's measurement, 2 cores, load 3.6 -> 1.7): OpenVINO fp32 was the
    # fastest engine at cosine 1.000000 (906 tokens/s, torch 707); its bf16 engines were faster
    # but not yet measured against the gate there (bf16 weights: min cosine 0.9937).
    "amx": {"backend": "openvino", "measured": "issue 27, 2-core Xeon with AMX: OpenVINO fp32 2.98x llm2vec"},
    # AVX-512 with BF16 and VNNI, no AMX (AMD EPYC Zen 5), issue 27 (encode_speed.py, 300 texts, 3
    # rounds, load 3.0 -> 1.8): OpenVINO fp32 1,375 tokens/s = 3.00x llm2vec at cosine 1.000000, the
    # fastest engine that passes the gate. Faster but failing it (min cosine vs fp32): OpenVINO int8
    # activations 5.00x (0.888), OpenVINO bf16 4.37x (0.753), torch bf16 linears 3.38x (0.728),
    # torch int8 2.02x (0.718). (A 2-round run at load ~6: torch with oneDNN matmuls 1.96x, exact.)
    "avx512_bf16": {"backend": "openvino",
                    "measured": "issue 27, 2-core AMD EPYC Zen 5: OpenVINO fp32 3.00x llm2vec, cosine 1.000000"},
    # AVX2 only (AMD EPYC, session 4): ONNX Runtime fp32, 1.74x llm2vec at cosine 1.000000.
    "avx2": {"backend": "onnx", "measured": "session 4, 2-core AMD EPYC AVX2: ONNX fp32 1.74x llm2vec"},
}
UNMEASURED = "avx2"  # a class with no entry runs this one's engine (exact fp32 on any x86 CPU)

# CPU class -> how `fast: true` trains (benchmarks/train_speed.py --compare-bf16: bf16 autocast must
# be faster on every stage and its held-out losses within 2 % of fp32's). Classes not listed: fp32.
FAST_TRAINING = {
    # AMD EPYC Zen 5 (AVX512-BF16, no AMX), issue 27, 20 steps per stage, batch 8, load 4.1 -> 5.7:
    # bf16 autocast was 1.82x / 1.72x / 1.95x / 1.46x fp32 tokens/s (mntp / simcse / supervised /
    # distill), held-out losses +0.3 / +4.8 / -12.6 / +3.3 % against fp32's (5 steps had given
    # +4.6 / +4.7 / +22 / +1.0 %: at 20 steps the gap is mostly where training is, not precision).
    # mntp, simcse, supervised: fp32 (not judged beyond 20 steps). distill: bf16, judged on the end
    # result instead of the 2 % gate: the language recipes (issue 25, docs/results.md) were measured
    # trained in bf16 (2.30 s/step against fp32's 4.41 on Gemma-3-270M, quiet machine), and bf16's
    # steps per budget are what lifted them (Danish 61.99 -> 70.79).
    "avx512_bf16": {"distill": "bf16"},
}


@dataclass(frozen=True)
class CpuFeatures:
    name: str
    cores: int
    flags: frozenset  # the /proc/cpuinfo flags of FLAGS this CPU has
    torch_capability: str  # torch.backends.cpu.get_cpu_capability(): the ATen kernels' ISA
    onednn: bool  # torch built with oneDNN (mkldnn): bf16/int8 matmuls can use AMX / AVX512-BF16

    @property
    def bf16(self) -> bool:
        """Native bf16 dot products (AVX512-BF16 or AMX-BF16)."""
        return bool(self.flags & {"avx512_bf16", "amx_bf16"})

    @property
    def vnni(self) -> bool:
        """Native int8 dot products (VNNI or AMX-INT8)."""
        return bool(self.flags & {"avx512_vnni", "avx_vnni", "amx_int8"})

    @property
    def amx(self) -> bool:
        return bool(self.flags & {"amx_bf16", "amx_int8"})

    @property
    def kind(self) -> str:
        """The class FAST_ENGINES is keyed by."""
        if self.amx:
            return "amx"
        if "avx512_bf16" in self.flags:
            return "avx512_bf16"
        if "avx512f" in self.flags:
            return "avx512"
        return "avx2" if "avx2" in self.flags else "other"

    def line(self) -> str:
        """One line for logs, `decoder2vec info` and every benchmark table."""
        have = [label for flag, label in FLAGS.items() if flag in self.flags]
        missing = [label for flag, label in FLAGS.items() if flag not in self.flags and flag != "avx_vnni"]
        return (f"CPU {self.name}, {self.cores} cores: {' '.join(have) or 'none of ' + ', '.join(FLAGS.values())}"
                f"{'; no ' + ', '.join(missing) if missing else ''}; torch kernels {self.torch_capability}, "
                f"oneDNN {'yes' if self.onednn else 'no'}")


@functools.cache
def cpu_features() -> CpuFeatures:
    """This CPU's features (read once per process)."""
    return read_features(Path("/proc/cpuinfo"))


def read_features(cpuinfo: Path) -> CpuFeatures:
    """Features from a /proc/cpuinfo file (none where there is none: macOS, Windows)."""
    name, flags = "", set()
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not name:
                name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    return CpuFeatures(name=name or platform.processor() or platform.machine(), cores=os.cpu_count() or 1,
                       flags=frozenset(flags & set(FLAGS)), torch_capability=torch.backends.cpu.get_cpu_capability(),
                       onednn=torch.backends.mkldnn.is_available())


def engine_support() -> dict:
    """What the optional engines say about this CPU (imports them: ~1 s; info and benchmarks only)."""
    support = {}
    try:
        import openvino as ov
        support["openvino"] = list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except Exception as exc:  # noqa: BLE001 - not installed, or no CPU plugin: say which
        support["openvino"] = f"unavailable ({type(exc).__name__})"
    try:
        import onnxruntime as ort
        # ORT's CPU provider has no bf16 MatMul kernels (bf16 graphs run only on GPU providers);
        # its int8 kernels (MatMulInteger, QDQ) use VNNI where the CPU has it.
        support["onnxruntime"] = f"{ort.__version__}: fp32 and int8 kernels, no bf16 matmul on CPU"
    except ImportError:
        support["onnxruntime"] = "unavailable (not installed)"
    return support


def fast_engine(features: CpuFeatures | None = None) -> dict:
    """The engine `fast=True` stands for on this CPU: Encoder.from_pretrained keywords, plus
    "matmul" for the torch backend."""
    return fast_engine_for((features or cpu_features()).kind)


def fast_engine_for(kind: str) -> dict:
    entry = FAST_ENGINES.get(kind, FAST_ENGINES[UNMEASURED])
    return {key: value for key, value in entry.items() if key != "measured"}


def fast_training(stage: str, features: CpuFeatures | None = None) -> str:
    """"bf16" or "fp32": what `fast: true` trains `stage` in on this CPU (fp32 where not measured)."""
    return FAST_TRAINING.get((features or cpu_features()).kind, {}).get(stage, "fp32")


def trains_in_bf16(stage: str, fast: bool) -> bool:
    """Whether a stage run with `fast` trains under CPU bf16 autocast here: the engine's
    TrainingArguments, and the distill teacher's forward with it (never on a CUDA machine, which
    trains on the GPU in its own dtype)."""
    return fast and not torch.cuda.is_available() and fast_training(stage) == "bf16"


def describe() -> dict:
    """`decoder2vec info`'s CPU section."""
    features = cpu_features()
    entry = FAST_ENGINES.get(features.kind)
    bf16_stages = {stage: p for stage, p in FAST_TRAINING.get(features.kind, {}).items() if p == "bf16"}
    return {"cpu": features.line(), "cpu_class": features.kind, **engine_support(),
            "fast_engine": fast_engine(features), "fast_training": bf16_stages or "fp32",
            "fast_engine_measured": entry["measured"] if entry else f"not measured on this class: {UNMEASURED}'s"}
