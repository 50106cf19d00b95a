"""benchmarks/reference_training.py's own logic (issue 26), without the reference venv: how a
gradient comparison is scored, which entries the verdict checks (Qwen2's causal reference has no
target; float32 gradients are reported only), the replayed dropout in float64, and the cast that
puts a LoRA model in float64, and the float64 RoPE angles that make a float64 model's states
independent of where its positions start (llm2vec left-pads, decoder2vec right-pads)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS / "reference"))
sys.path.insert(0, str(BENCHMARKS))

import reference_training  # noqa: E402
import reference_training_checks as checks  # noqa: E402
from float64_rope import float64_calls, float64_rope  # noqa: E402
from replay_dropout import ReplayDropout  # noqa: E402
from tiny import tiny_model  # noqa: E402

from decoder2vec.training.lora import add_lora  # noqa: E402


def test_compare_grads_scores_the_worst_tensor_against_the_reference():
    ours = {"a": torch.tensor([3.0, 4.0]), "b": torch.tensor([0.0, 2.0])}
    theirs = {"a": torch.tensor([3.0, 4.0]), "b": torch.tensor([0.0, 2.5])}
    got = checks.compare_grads(ours, theirs)
    assert got["rel_diff"] == 0.2  # |(0, -0.5)| / |(0, 2.5)|; tensor a agrees exactly
    assert got["ours"] == pytest.approx(math.sqrt(29)) and got["reference"] == pytest.approx(math.sqrt(31.25))
    assert checks.compare_grads(ours, {"a": theirs["a"]})["rel_diff"] == math.inf  # a gradient missing on one side


def comparison(rel: float) -> dict:
    return {"ours": 1.0, "reference": 1.0, "rel_diff": rel}


def architecture(*, target: bool, bidirectional: bool, rel: float = 1e-7, grads: float = 1e-7,
                 fp32_grads: float = 2e-4, dropout_equal: bool = True, rope_equal: bool = True) -> dict:
    stages = ("mntp", "simcse", "supervised")
    return {"target": target, "reference_bidirectional": bidirectional, **{k: comparison(rel) for k in stages},
            "gradients": {k: comparison(grads) for k in stages}, "float64_losses": {k: comparison(rel) for k in stages},
            "float32_gradients": {k: comparison(fp32_grads) for k in stages},
            "simcse_dropout_layers_equal": dropout_equal, "float64_rope_equal": rope_equal}


def report(**architectures) -> dict:
    return {"mntp": comparison(0.0), "simcse": comparison(0.5), "mntp_blocks_equal": True,
            "architectures": {"llama": architecture(target=True, bidirectional=True),
                              "qwen2": architecture(target=False, bidirectional=False, rel=0.3, grads=2.0,
                                                    dropout_equal=False),
                              **architectures}}


@pytest.mark.parametrize("change, passes", [
    ({}, True),  # SimCSE in eval mode (0.5), float32 gradients (2e-4) and everything of qwen2: reported only
    ({"llama": architecture(target=True, bidirectional=True, grads=2e-4)}, False),  # a float64 gradient over
    ({"llama": architecture(target=True, bidirectional=True, rel=2e-4)}, False),  # a loss over
    ({"llama": architecture(target=True, bidirectional=True, dropout_equal=False)}, False),
    ({"llama": architecture(target=True, bidirectional=True, rope_equal=False)}, False),  # float32 angles somewhere
    ({"qwen2": architecture(target=False, bidirectional=True)}, False),  # "no target" on a bidirectional reference
    ({"mistral": architecture(target=True, bidirectional=False)}, False),  # a target on a causal reference
])
def test_the_verdict_checks_the_targets_and_only_them(change, passes):
    assert reference_training.passed(report(**change), ["mntp", "simcse"], 1e-4) is passes


def test_the_verdict_checks_the_one_forward_fields():
    bad = report()
    bad["mntp"] = comparison(2e-4)
    assert reference_training.passed(bad, ["mntp", "simcse"], 1e-4) is False
    bad = report()
    bad["mntp_blocks_equal"] = False
    assert reference_training.passed(bad, ["mntp", "simcse"], 1e-4) is False


def test_qwen2_is_the_architecture_without_a_target_and_says_why():
    assert set(checks.NO_TARGET) == {"qwen2"}
    assert "causal mask" in checks.NO_TARGET["qwen2"]


def test_replayed_dropout_is_the_same_for_both_batchings_and_stays_float64():
    texts, heads, length, dim, p = 3, 2, 5, 4, 0.3
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2 * texts, heads, length, dim, generator=generator, dtype=torch.float64)
               for _ in range(3))
    with ReplayDropout(texts=texts, layers=1, views_in_rows=True) as replay:  # decoder2vec: both views, one forward
        one = torch.nn.functional.scaled_dot_product_attention(q, k, v, dropout_p=p)
    with ReplayDropout(texts=texts, layers=1, views_in_rows=False) as replay_views:  # llm2vec: a forward per view
        two = torch.cat([torch.nn.functional.scaled_dot_product_attention(q[i:i + texts], k[i:i + texts],
                                                                          v[i:i + texts], dropout_p=p)
                         for i in (0, texts)])
    assert replay.calls == 1 and replay_views.calls == 2
    assert one.dtype == torch.float64 and torch.equal(one, two)
    masks = torch.stack([replay.mask(row // texts, row % texts, 0, (heads, length, length), p)
                         for row in range(2 * texts)])
    want = ((q @ k.transpose(-1, -2) / math.sqrt(dim)).softmax(-1) * masks) @ v  # float64 throughout
    assert (one - want).abs().max() < 1e-12  # a float32 step would leave ~1e-7
    assert not torch.allclose(one, torch.nn.functional.scaled_dot_product_attention(q, k, v))  # dropped


def test_in_dtype_puts_the_lora_model_in_float64():
    model = checks.in_dtype(add_lora(tiny_model("llama"), r=4, alpha=8, dropout=0.0), torch.float64)
    dtypes = {name: p.dtype for name, p in model.named_parameters()}
    assert any("lora_B" in name for name in dtypes) and set(dtypes.values()) == {torch.float64}


def states_from(model, ids: torch.Tensor, start: int) -> torch.Tensor:
    positions = torch.arange(start, start + ids.shape[1])[None].expand_as(ids)
    with torch.no_grad():
        return model(input_ids=ids, position_ids=positions).last_hidden_state


def test_float64_rope_makes_the_states_independent_of_where_positions_start():
    model = tiny_model("llama").to(torch.float64)
    ids = torch.randint(3, 200, (2, 24), generator=torch.Generator().manual_seed(0))
    # transformers computes the angles in float32: starting at 0 or at 37 (a left-padded text) differs
    assert (states_from(model, ids, 0) - states_from(model, ids, 37)).abs().max() > 1e-9
    assert float64_rope(model) >= 1
    at_zero, shifted = states_from(model, ids, 0), states_from(model, ids, 37)
    assert (at_zero - shifted).abs().max() < 1e-12 and at_zero.dtype == torch.float64
    assert float64_calls(model) > 0


def test_float64_rope_gives_transformers_angles_in_float64():
    model = tiny_model("llama")
    rope = next(m for m in model.modules() if type(m).__name__.endswith("RotaryEmbedding"))
    x, positions = torch.zeros(1, 5, 8, dtype=torch.float64), torch.tensor([[0, 1, 2, 300, 4000]])
    cos32, sin32 = (t.double() for t in rope(x.float(), positions))
    float64_rope(model)
    cos64, sin64 = rope(x, positions)
    angles = positions[0, :, None].double() * rope.inv_freq.double()
    assert cos64.dtype == torch.float64 and torch.equal(cos64[0, :, :angles.shape[1]], angles.cos())
    assert (cos64 - cos32).abs().max() < 1e-3 and (sin64 - sin32).abs().max() < 1e-3  # the same angles, rounded


def test_float64_rope_refuses_a_scaled_rope():
    model = tiny_model("llama")
    rope = next(m for m in model.modules() if type(m).__name__.endswith("RotaryEmbedding"))
    rope.rope_type = "linear"
    with pytest.raises(SystemExit, match="rope type 'linear'"):
        float64_rope(model)
