"""CPU capability detection (cpu.py), the fast switch, bf16 engines and int8 batch invariance on
any CPU: the checks that catch what only some CPUs show (no timings here)."""

import numpy as np
import pytest
import torch

from decoder2vec import Encoder, cpu
from decoder2vec.backends.base import same_length_batches
from decoder2vec.errors import Decoder2VecError
from decoder2vec.model.quantization import Int8Linear, quantize_model

from tiny import CORPUS, assert_batch_invariant, tiny_encoder

TEXTS = CORPUS[:6] + ["a", "two words", "The quick brown fox."]


# ---------------------------------------------------------------- int8: batch invariance
def test_int8_forwards_never_see_padding():
    """The cause of issue 27's int8 batch dependence: attention over padded keys differs from
    attention over the text alone in the last bit, and int8 rounding turns that bit into a whole
    step. Every CPU can check the cure: no int8 forward gets a padded row."""
    encoder = quantize_model(tiny_encoder("llama"), "int8")
    masks = []
    forward = encoder.backend.forward
    encoder.backend.forward = lambda ids, mask: (masks.append(mask.clone()), forward(ids, mask))[1]
    encoder.encode(TEXTS, batch_size=32)
    assert len(masks) > 1 and all(bool(mask.all()) for mask in masks)
    assert sum(len(mask) for mask in masks) == len(TEXTS)


def test_fp32_batches_stay_padded():
    encoder = tiny_encoder("llama")
    masks = []
    forward = encoder.backend.forward
    encoder.backend.forward = lambda ids, mask: (masks.append(mask.clone()), forward(ids, mask))[1]
    encoder.encode(TEXTS, batch_size=32)
    assert len(masks) == 1 and not bool(masks[0].all())


def test_same_length_batches_group_and_bound():
    ids = [[1] * 3, [1] * 5, [1] * 3, [1] * 3, [1] * 5]
    assert list(same_length_batches(ids, max_tokens=6)) == [[0, 2], [3], [1], [4]]


@pytest.mark.parametrize("rows", [1, 2, 3, 5, 7, 16, 33, 64])
def test_int8_linear_row_does_not_depend_on_the_row_count(rows):
    """Bit for bit, with outlier channels: a float matmul's kernel is chosen by the row count
    (MKL gave SmolLM2's 3 rows and 6 rows different last bits), the integer limbs are exact."""
    torch.manual_seed(0)
    layer = Int8Linear(torch.nn.Linear(96, 80), outliers=torch.tensor([4, 17, 60]))
    x = torch.randn(rows, 96)
    x[:, [4, 17, 60]] *= 50
    alone = torch.cat([layer(x[i:i + 1]) for i in range(rows)])
    assert torch.equal(layer(x), alone)


@pytest.mark.parametrize("padding", ["zeros", "huge"])
def test_int8_activation_scales_ignore_padding_rows(padding):
    """What padding could change in the int8 forward, and cannot: each row's activation scale comes
    from that row alone, so padded rows - zeros or a padded position's huge hidden state - leave the
    real rows' int8 values, scales and outputs bit for bit (a per-tensor scale over the batch, as
    torch's quantize_dynamic has, fails this)."""
    from decoder2vec.model.quantization import _quantize_rows

    torch.manual_seed(0)
    x = torch.randn(4, 96)
    pad = torch.zeros(3, 96) if padding == "zeros" else torch.full((3, 96), 1e4)
    q, scale = _quantize_rows(x)
    q_padded, scale_padded = _quantize_rows(torch.cat([x, pad]))
    assert torch.equal(q_padded[:4], q) and torch.equal(scale_padded[:4], scale)
    assert torch.equal(scale, x.abs().amax(1, keepdim=True) / 127)  # the row's own peak: known value
    layer = Int8Linear(torch.nn.Linear(96, 80), outliers=torch.tensor([4, 17]))
    assert torch.equal(layer(torch.cat([x, pad]))[:4], layer(x))


def test_int8_outlier_channels_keep_15_bits():
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 32)
    x = torch.randn(5, 64)
    x[:, 7] *= 300  # a "massive activation" channel
    exact = linear(x)
    error = (Int8Linear(linear, outliers=torch.tensor([7]))(x) - exact).abs().max()
    plain = (Int8Linear(linear)(x) - exact).abs().max()
    assert error < plain / 5  # the outlier at 15 bits, not rounded with its row's other channels


def test_int8_one_outlier_channel():
    """A single outlier channel: a (1, n) int8 operand (torch._int_mm misreads odd strides there)."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(32, 16)
    x = torch.randn(4, 32)
    x[:, 5] *= 100
    out = Int8Linear(linear, outliers=torch.tensor([5]))(x)
    assert (out - linear(x)).abs().max() < 0.05 * linear(x).abs().max()


def test_int8_packed_is_refused():
    encoder = quantize_model(tiny_encoder("llama"), "int8")
    with pytest.raises(Decoder2VecError, match="packed batches and int8 weights on the CPU"):
        encoder.backend.states([[1, 5, 6], [1, 5]], packed=True)


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma3_text"])
def test_int8_tiny_vectors_are_exactly_batch_invariant(family):
    encoder = quantize_model(tiny_encoder(family), "int8")
    assert_batch_invariant(encoder, TEXTS, bound=1e-6)


def test_int8_smollm2_is_batch_invariant():
    """The real model, where it showed (4e-2 on AVX-512 and AMX CPUs before the fix): short texts
    alone vs in a padded batch of 12."""
    encoder = Encoder.from_pretrained(quantize="int8")
    texts = ["Short text.", "Paris is the capital of France.", "Hello world",
             "A much longer text that has many more tokens than the others, so it pads every other row.",
             "Embeddings map texts to vectors.", "def f(x): return x + 1", "Kort tekst på dansk.",
             "Eine kurze Frage?", "3.14159", "The quick brown fox jumps over the lazy dog.", "ok", "Why?"]
    assert_batch_invariant(encoder, texts, bound=1e-6)


# ---------------------------------------------------------------- capability detection
CPUINFO = """processor\t: 0
model name\t: Test CPU 9000
flags\t\t: fpu sse2 avx avx2 fma {extra}
"""


@pytest.mark.parametrize("extra, kind, bf16, vnni", [
    ("", "avx2", False, False),
    ("avx512f avx512_vnni", "avx512", False, True),
    ("avx512f avx512_bf16 avx512_vnni", "avx512_bf16", True, True),
    ("avx512f avx512_bf16 amx_bf16 amx_int8 amx_tile", "amx", True, True),
])
def test_cpu_features_from_cpuinfo(extra, kind, bf16, vnni, tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(CPUINFO.format(extra=extra))
    features = cpu.read_features(info)
    assert (features.kind, features.bf16, features.vnni, features.name) == (kind, bf16, vnni, "Test CPU 9000")
    line = features.line()
    assert line.startswith("CPU Test CPU 9000") and "AVX2" in line and "torch kernels" in line
    have = line.split(": ")[1].split(";")[0].split()
    assert ("AMX-BF16" in have) == (kind == "amx") and ("AVX512-BF16" in have) == bf16


def test_this_cpu_line():
    line = cpu.cpu_features().line()
    assert line.startswith("CPU ") and torch.backends.cpu.get_cpu_capability() in line


def test_unmeasured_cpu_classes_get_an_exact_engine():
    """A class nobody measured runs an fp32 engine (speed a guess, accuracy not)."""
    for flags in ({"avx512f"}, set()):
        engine = cpu.fast_engine(cpu.CpuFeatures("x", 2, frozenset(flags), "DEFAULT", True))
        assert engine == cpu.fast_engine_for(cpu.UNMEASURED)
        assert "quantize" not in engine and "dtype" not in engine


# ---------------------------------------------------------------- oneDNN matmuls (bf16 where AMX)
def test_onednn_matmuls_close_and_restored():
    encoder = tiny_encoder("llama")
    exact = encoder.encode(TEXTS, normalize_embeddings=True)
    before = torch.backends.mkldnn.matmul.fp32_precision
    encoder.backend.matmul = "onednn"
    fast = encoder.encode(TEXTS, normalize_embeddings=True)
    assert torch.backends.mkldnn.matmul.fp32_precision == before  # other encoders keep exact matmuls
    assert (fast * exact).sum(1).min() > 0.999
    assert_batch_invariant(encoder, TEXTS, bound=1e-4)


def test_unknown_matmul_is_refused():
    from decoder2vec.backends.torch import TorchBackend

    with pytest.raises(Decoder2VecError, match="unknown matmul 'fast'"):
        TorchBackend(tiny_encoder("llama").model, 0, matmul="fast")


# ---------------------------------------------------------------- the fast switch
@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fast") / "tiny"
    tiny_encoder("llama").save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("kind", ["amx", "avx512_bf16", "avx2", "avx512"])
def test_fast_runs_the_table_engine_of_the_cpu_class(kind, tiny_folder, monkeypatch):
    flags = {"amx": {"avx512f", "avx512_bf16", "amx_bf16"}, "avx512_bf16": {"avx512f", "avx512_bf16"},
             "avx2": {"avx2"}, "avx512": {"avx512f"}}[kind]
    monkeypatch.setattr("decoder2vec.encoder.fast_engine",
                        lambda: cpu.fast_engine(cpu.CpuFeatures("x", 2, frozenset(flags), "AVX2", True)))
    engine = cpu.fast_engine_for(kind)
    encoder = Encoder.from_pretrained(tiny_folder, fast=True, device="cpu")
    assert encoder.backend.name == engine.get("backend", "torch")
    assert getattr(encoder.backend, "matmul", "default") == engine.get("matmul", "default")
    exact = Encoder.from_pretrained(tiny_folder).encode(TEXTS, normalize_embeddings=True)
    assert (encoder.encode(TEXTS, normalize_embeddings=True) * exact).sum(1).min() > 0.999


def test_fast_is_off_by_default_and_refuses_explicit_engines(tiny_folder):
    assert Encoder.from_pretrained(tiny_folder).backend.matmul == "default"
    with pytest.raises(Decoder2VecError, match="fast=True chooses the engine itself; drop quantize"):
        Encoder.from_pretrained(tiny_folder, fast=True, quantize="int8")
    with pytest.raises(Decoder2VecError, match="drop backend, dtype"):
        Encoder.from_pretrained(tiny_folder, fast=True, backend="onnx", dtype="bfloat16")


def test_fast_is_one_flag_for_encode_and_serve():
    from decoder2vec.cli import build_parser

    parser = build_parser()
    for verb in (["encode", "--input", "in.txt", "--output", "out.npy"], ["serve"]):
        assert parser.parse_args([*verb, "--fast"]).fast and not parser.parse_args(verb).fast


@pytest.mark.allow_skip(reason="the CPU bf16-autocast table applies to CPU training; a CUDA machine trains on the GPU")
def test_fast_training_uses_bf16_autocast_only_where_the_table_says(tmp_path, monkeypatch):
    from decoder2vec.training import engine
    from decoder2vec.training.config import StageConfig

    config = StageConfig(stage="simcse", model="m", fast=True)
    for measured, bf16 in (("bf16", True), ("fp32", False)):
        monkeypatch.setattr(cpu, "fast_training", lambda stage: measured if stage == "simcse" else "fp32")
        if torch.cuda.is_available():
            pytest.skip("CPU training only")
        assert engine._training_arguments(config, tmp_path).bf16 is bf16
    config.fast = False
    monkeypatch.setattr(cpu, "fast_training", lambda stage: "bf16")
    assert engine._training_arguments(config, tmp_path).bf16 is False


# ---------------------------------------------------------------- bf16 engines
def test_the_training_table_is_per_stage_and_fp32_where_not_measured():
    zen5 = cpu.CpuFeatures("AMD EPYC", 2, frozenset({"avx2", "avx512f", "avx512_bf16", "avx512_vnni"}), "AVX512", True)
    assert zen5.kind == "avx512_bf16" and cpu.FAST_TRAINING[zen5.kind] == {"distill": "bf16"}
    assert [cpu.fast_training(s, zen5) for s in ("mntp", "simcse", "supervised", "distill")] == ["fp32"] * 3 + ["bf16"]
    assert cpu.fast_training("distill", cpu.CpuFeatures("AMD EPYC", 2, frozenset({"avx2"}), "AVX2", True)) == "fp32"


def test_openvino_bf16_and_onnx_refusal(tiny_folder):
    exact = Encoder.from_pretrained(tiny_folder).encode(TEXTS, normalize_embeddings=True)
    ov = Encoder.from_pretrained(tiny_folder, backend="openvino", dtype="bfloat16")
    assert ov.backend.precision == "bf16" and ov.info()["dtype"] == "bfloat16"
    assert (ov.encode(TEXTS, normalize_embeddings=True) * exact).sum(1).min() > 0.99
    with pytest.raises(Decoder2VecError, match="ONNX Runtime has no bf16 matmul kernels"):
        Encoder.from_pretrained(tiny_folder, backend="onnx", dtype="bfloat16")


@pytest.mark.parametrize("engine", ["bf16", "onednn", "openvino-bf16"])
def test_rounded_activation_engines_run_one_length_at_a_time(engine, tiny_folder, monkeypatch):
    """bf16 rounds activations as int8 does (coarser than padding's last-bit noise): same cure."""
    if engine == "onednn":
        encoder = Encoder.from_pretrained(tiny_folder)
        encoder.backend.matmul = "onednn"
    else:
        encoder = Encoder.from_pretrained(tiny_folder, dtype="bfloat16",
                                          backend="openvino" if engine.startswith("openvino") else "torch")
    # oneDNN's matmuls round to bf16 only on AMX; elsewhere they stay fp32 and keep their batches.
    rounds = engine != "onednn" or cpu.cpu_features().amx
    assert encoder.backend.unpadded == rounds
    assert_batch_invariant(encoder, TEXTS, bound=1e-6 if rounds else 1e-4)
    if engine == "onednn":  # on an AMX CPU the same engine runs one length at a time
        monkeypatch.setattr("decoder2vec.backends.torch.cpu_features",
                            lambda: cpu.CpuFeatures("x", 2, frozenset({"amx_bf16"}), "AVX512", True))
        assert encoder.backend.unpadded


def _linears(model) -> dict:
    """name -> "fp32" (nn.Linear / GPT-2 Conv1D) or "bf16" (Bf16Linear), for every matmul layer."""
    from decoder2vec.model.bf16_linear import Bf16Linear

    return {name: "bf16" if isinstance(m, Bf16Linear) else "fp32" for name, m in model.named_modules()
            if isinstance(m, Bf16Linear) or type(m) is torch.nn.Linear or type(m).__name__ == "Conv1D"}


@pytest.mark.parametrize("family, first_layer", [("llama", "layers.0."), ("qwen2", "layers.0."),
                                                 ("gpt2", "h.0."), ("gemma3_text", "layers.0.")])
def test_bf16_linears_keep_everything_else_fp32(family, first_layer):
    """quantize="bf16": every Linear (GPT-2: Conv1D) but the first decoder layer's runs a bf16 matmul
    (layer 0 stays fp32: issue 27's German encoder drifts there), nothing else changes dtype (norms,
    embeddings, the residual stream stay fp32), and the vectors run one length at a time."""
    from decoder2vec.model.bf16_linear import Bf16Linear

    encoder = tiny_encoder(family)
    exact = encoder.encode(TEXTS, normalize_embeddings=True)
    floats = {name for name, p in encoder.model.named_parameters()}
    quantize_model(encoder, "bf16")
    layers = [m for m in encoder.model.modules() if isinstance(m, Bf16Linear)]
    assert layers and all(m.weight_bf16.dtype == torch.bfloat16 for m in layers)
    kinds = _linears(encoder.model)
    first = {name for name in kinds if name.startswith(first_layer)}
    assert len(first) >= 4 and {kinds[name] for name in first} == {"fp32"}  # attention + MLP
    assert {kind for name, kind in kinds.items() if name not in first} == {"bf16"}
    assert all(encoder.model.get_submodule(name).weight.dtype == torch.float32 for name in first)
    left = dict(encoder.model.named_parameters())
    assert left and set(left) < floats and all(p.dtype == torch.float32 for p in left.values())
    assert encoder.backend.weights == "bf16" and encoder.backend.unpadded
    vectors = assert_batch_invariant(encoder, TEXTS, bound=1e-6)
    assert (vectors * exact).sum(1).min() > 0.999


def test_bf16_first_layer_names_never_match_a_later_layer():
    """12 decoder layers: the first 2 (and last 1) named by their full prefix; "layers.1." must not
    keep "layers.10." or "layers.11." fp32 (to_bf16_linears' skip matches substrings)."""
    from transformers import AutoModel

    from decoder2vec.model.bf16_linear import decoder_layer_prefixes, to_bf16_linears
    from tiny import tiny_config

    config = tiny_config("llama")
    config.num_hidden_layers = 12
    model = AutoModel.from_config(config)
    assert decoder_layer_prefixes(model) == ("layers.0.",)
    assert decoder_layer_prefixes(model, first=2, last=1) == ("layers.0.", "layers.1.", "layers.11.")
    to_bf16_linears(model, skip=decoder_layer_prefixes(model, first=2))
    kinds = _linears(model)
    layer = {name: int(name.split(".")[1]) for name in kinds}
    assert {kinds[name] for name in kinds if layer[name] < 2} == {"fp32"}
    assert {kinds[name] for name in kinds if layer[name] >= 2} == {"bf16"}
    assert sum(layer[name] in (10, 11) for name in kinds) == 14  # 7 Linears a layer, all bf16
    engine = _linears(quantize_model(AutoModel.from_config(config), "bf16"))  # the engine: layer 0 only fp32
    assert {name.split(".")[1] for name, kind in engine.items() if kind == "fp32"} == {"0"}
    assert sum(kind == "bf16" for kind in engine.values()) == 11 * 7
    with pytest.raises(Decoder2VecError, match="first=13, last=0 decoder layers: the model has 12"):
        decoder_layer_prefixes(model, first=13)


def test_bf16_linear_is_a_bf16_matmul_with_fp32_bias():
    """Known values: the product of the bf16-rounded input and weight, rounded once to bf16 (the
    kernel's output), plus the fp32 bias."""
    from decoder2vec.model.bf16_linear import Bf16Linear

    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 16)
    x = torch.randn(5, 64)
    expected = (x.bfloat16().float() @ linear.weight.bfloat16().float().t()).bfloat16().float() + linear.bias
    out = Bf16Linear(linear)(x)
    assert out.dtype == torch.float32
    product = expected - linear.bias
    # at most one bf16 step (2**-7 relative) apart: the kernel may sum in another order before rounding
    assert ((out - expected).abs() <= product.abs() * 2**-7 + 1e-6).all()
    assert not torch.equal(out, linear(x))  # it really rounds


def test_bf16_linears_are_torch_only(tiny_folder):
    for backend in ("onnx", "openvino"):
        with pytest.raises(Decoder2VecError, match="quantize='bf16' .* is a torch-backend engine"):
            Encoder.from_pretrained(tiny_folder, backend=backend, quantize="bf16")


def test_openvino_int8_activations(tiny_folder):
    """quantize="int8-activations": OpenVINO's int8 weights plus per-token int8 activations, one
    length per forward, so batch-invariant like every rounding engine; torch and onnx refuse it."""
    exact = Encoder.from_pretrained(tiny_folder).encode(TEXTS, normalize_embeddings=True)
    encoder = Encoder.from_pretrained(tiny_folder, backend="openvino", quantize="int8-activations")
    assert encoder.backend.unpadded and encoder.backend.weights == "int8-activations"
    assert encoder.backend.compiled.get_property("DYNAMIC_QUANTIZATION_GROUP_SIZE") == 32
    vectors = assert_batch_invariant(encoder, TEXTS, bound=1e-6)
    assert (vectors * exact).sum(1).min() > 0.99
    for backend in ("torch", "onnx"):
        with pytest.raises(Decoder2VecError, match="quantize='int8-activations' runs on backend='openvino'"):
            Encoder.from_pretrained(tiny_folder, backend=backend, quantize="int8-activations")


def test_torch_bf16_pools_in_fp32(tiny_folder):
    encoder = Encoder.from_pretrained(tiny_folder, dtype="bfloat16")
    vectors = encoder.encode(TEXTS, normalize_embeddings=True)
    exact = Encoder.from_pretrained(tiny_folder).encode(TEXTS, normalize_embeddings=True)
    assert vectors.dtype == np.float32 and (vectors * exact).sum(1).min() > 0.99
