"""The points where decoder2vec follows LLM2Vec's training code (issue 15), one test each, on tiny models."""

from __future__ import annotations

import json
import random
import warnings

import pytest
import torch
import torch.nn.functional as F

import decoder2vec.model.chunked_attention as chunked_module
from transformers import TrainerCallback

from decoder2vec.backends import torch as torch_backend
from decoder2vec.data.pairs import Pair
from decoder2vec.data.paper import E5Pair
from decoder2vec.training import train
from decoder2vec.training.config import make_config
from decoder2vec.training.dropout import set_dropout
from decoder2vec.training.losses import info_nce, text_keys
from decoder2vec.training.mntp import mask_batch, pack_blocks
from decoder2vec.training.stage import task_blocks
from decoder2vec.training.supervised import SupervisedStage
from test_training_support import FAST, causal_lm_folder, corpus_file, csv_rows, encoder_folder, pairs_file
from tiny import tiny_encoder, tiny_model


def _stage(cls, tmp_path, **values):
    config = make_config({"model": str(encoder_folder(tmp_path)), "output_dir": str(tmp_path / "out"),
                          **FAST, **values})
    stage = cls(config)
    stage.load()
    return stage


# 1 ------------------------------------------------------------------ loss scale
def test_supervised_scale_defaults_to_llm2vec_loss_scale_and_simcse_to_its_configs():
    assert make_config({"stage": "supervised", "data": ["x"], "output_dir": "o"}).scale == 50.0
    assert make_config({"stage": "simcse", "data": ["x"], "output_dir": "o"}).scale == 20.0


# 2 ------------------------------------------------------------------ supervised on the MNTP model
def test_supervised_trains_directly_on_the_mntp_output(tmp_path):
    mntp = train({"stage": "mntp", "model": str(causal_lm_folder(tmp_path)), "data": [str(corpus_file(tmp_path))],
                  "output_dir": str(tmp_path / "mntp"), "eval_examples": 0}, **{**FAST, "max_steps": 2})
    out = train({"stage": "supervised", "model": str(mntp), "data": [str(pairs_file(tmp_path))],
                 "output_dir": str(tmp_path / "supervised")}, **{**FAST, "max_steps": 2})
    stages = json.loads((out / "decoder2vec_config.json").read_text())["stages"]
    assert [s["stage"] for s in stages] == ["mntp", "supervised"]
    assert stages[-1]["model"] == str(mntp)


# 3 ------------------------------------------------------------------ per-row / per-dataset instructions
def test_each_pair_brings_its_own_query_and_document_instructions(tmp_path):
    stage = _stage(SupervisedStage, tmp_path, stage="supervised", data=["x"], batch_per_task=False,
                   query_instruction="Default:", instruction_template="{instruction}; ")
    pairs = [Pair("first query", "first doc", [], "a", "Own one"),
             Pair("second query", "second doc", [], "a"),
             E5Pair("third query", "third doc", ["third neg"], "b", "Sym", "Sym")]
    batch = stage.collate(pairs)
    expected_texts = ["first query", "second query", "third query", "first doc", "second doc", "third doc", "third neg"]
    expected_instructions = ["Own one", "Default:", "Sym", None, None, "Sym", "Sym"]
    ids, masks, _ = stage.view.tokenize(expected_texts, expected_instructions)
    assert batch["ids"] == ids and batch["n"] == 3
    pooled = [t for t, m in zip(batch["ids"][2], batch["masks"][2]) if m]
    assert stage.view.tokenizer.decode(pooled).strip() == "third query"  # "Sym; " is attended to, never pooled
    assert len(pooled) < len(batch["ids"][2])
    # The training template is the recipe's; the Encoder that gets saved keeps its own.
    assert stage.view.config.instruction_template == "{instruction}; "
    assert stage.encoder.config.instruction_template == "{instruction} "


# 4 ------------------------------------------------------------------ single-task blocks across processes
def test_task_blocks_give_every_process_the_same_task_at_each_step():
    from accelerate.data_loader import BatchSamplerShard
    from torch.utils.data import BatchSampler, SequentialSampler

    pairs = [Pair(f"q{t}{i}", f"p{t}{i}", [], f"task{t}") for t in range(3) for i in range(13)]
    random.Random(0).shuffle(pairs)
    items = task_blocks(pairs, per_device=2, size=3, rng=random.Random(1))
    assert len(items) == 3 * 2 * 3  # 13 pairs per task: two blocks of 6, the tail of 1 left out
    # What accelerate deals each process from a sequential sampler with batch size 1 (the engine's setting).
    batches = BatchSampler(SequentialSampler(items), batch_size=1, drop_last=True)
    per_process = [[items[b[0]] for b in BatchSamplerShard(batches, num_processes=3, process_index=r)]
                   for r in range(3)]
    for step in range(6):
        tasks = {p.task for rank in range(3) for p in per_process[rank][step]}
        assert len(tasks) == 1, (step, tasks)
        assert all(len(per_process[rank][step]) == 2 for rank in range(3))
    used = [p.query for item in items for p in item]
    assert len(used) == len(set(used)) == 36


def test_engine_keeps_the_stage_order(tmp_path):
    from torch.utils.data import SequentialSampler

    out = train({"stage": "supervised", "model": str(encoder_folder(tmp_path)), "data": [str(pairs_file(tmp_path))],
                 "output_dir": str(tmp_path / "s")}, callbacks=[_SamplerSpy()], **{**FAST, "max_steps": 1})
    assert out.is_dir() and _SamplerSpy.seen == [SequentialSampler]


class _SamplerSpy(TrainerCallback):
    seen: list = []

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        sampler = getattr(train_dataloader, "base_dataloader", train_dataloader).sampler
        _SamplerSpy.seen = [type(getattr(sampler, "sampler", sampler))]


# 5 ------------------------------------------------------------------ SimCSE dropout as the reference
def test_reference_dropout_is_attention_dropout_through_the_config_and_no_hidden_hooks():
    model = tiny_model("llama").train()
    restore = set_dropout(model, attention=0.3, hidden=0.0)
    assert model.config.attention_dropout == 0.3
    assert {m.attention_dropout for m in model.modules() if hasattr(m, "attention_dropout")} == {0.3}
    assert not any(layer._forward_hooks for layer in model.modules())
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    a, b = model(ids).last_hidden_state, model(ids).last_hidden_state
    assert not torch.allclose(a, b)  # attention dropout acts
    restore()
    assert model.config.attention_dropout == 0.0


# 6 ------------------------------------------------------------------ learning-rate schedule
def test_lr_schedule_epochs_keeps_the_rate_almost_constant_like_the_reference(tmp_path):
    common = {"stage": "simcse", "model": str(encoder_folder(tmp_path)), "data": [str(corpus_file(tmp_path))],
              "min_words": 3, "learning_rate": 1e-3, "warmup_steps": 0, **FAST, "max_steps": 4}
    decaying = train({**common, "output_dir": str(tmp_path / "a"), "keep_checkpoints": True})
    flat = train({**common, "output_dir": str(tmp_path / "b"), "lr_schedule_epochs": 100, "keep_checkpoints": True})
    last = {name: float(csv_rows(folder / "logs" / "log.csv")[-2]["learning_rate"]) for name, folder in
            (("decaying", decaying), ("flat", flat))}
    assert last["decaying"] == pytest.approx(1e-3 * 1 / 4)  # linear to 0 at step 4: step 4's rate was set at step 3
    assert last["flat"] > 0.95e-3


# 7 ------------------------------------------------------------------ MNTP blocks
class _BOSTokenizer:
    """Every character is a token; BOS (1) starts every text, as Llama's tokenizer does."""

    def __call__(self, texts, verbose=False):
        return {"input_ids": [[1] + [ord(c) for c in text] for text in texts]}


def test_pack_blocks_is_llm2vecs_group_texts():
    texts = ["abc", "", "defgh", "ij"]
    blocks = pack_blocks(_BOSTokenizer(), texts, length=4, group=3)
    # Group 1: [1 a b c 1 1 d e f g h] -> two blocks of 4, "f g h" dropped; group 2: [1 i j] < 4 -> nothing.
    a, b, c, d, e = (ord(x) for x in "abcde")
    assert blocks == [[1, a, b, c], [1, 1, d, e]]


def test_special_tokens_are_never_masked():
    ids = torch.tensor([[1, 50, 51, 1, 52, 53, 1, 54]] * 64)
    _, labels = mask_batch(ids, torch.ones_like(ids), mask_id=9, vocab_size=100, probability=0.9,
                           policy="all-mask", generator=torch.Generator().manual_seed(0), special_ids=[1])
    assert not (labels[ids == 1] != -100).any()
    assert (labels[ids != 1] != -100).float().mean() > 0.7


# 8 ------------------------------------------------------------------ chunked attention under checkpointing
def _chunk_every_batch(monkeypatch, threshold: int = 0) -> list:
    """Lower the Encoder's chunked-attention threshold (owned by the backend module) and count the
    forwards that re-arm checkpointed layers for a chunked recompute."""
    monkeypatch.setattr(torch_backend, "CHUNKED_ATTENTION_ABOVE", threshold)
    armed, original = [], chunked_module._chunked_recompute

    def counting(model):
        restore = original(model)
        armed.append(len(restore))
        return restore

    monkeypatch.setattr(chunked_module, "_chunked_recompute", counting)
    return armed


@pytest.mark.parametrize("family", ["llama", "gemma3_text"])
def test_chunked_attention_survives_gradient_checkpointing_with_the_same_gradients(monkeypatch, family):
    texts = ["a short one", "a much longer text with many more tokens than the short one"]

    def grads(checkpointing: bool, threshold: int):
        armed = _chunk_every_batch(monkeypatch, threshold)
        encoder = tiny_encoder(family)
        encoder.model.train()
        if checkpointing:
            encoder.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        ids, masks, _ = encoder.tokenize(texts)
        encoder.embed(encoder.collate(ids, masks)).square().sum().backward()
        return {n: p.grad for n, p in encoder.model.named_parameters() if p.grad is not None}, armed

    plain, armed = grads(False, 2**60)
    assert armed == []
    chunked, armed = grads(True, 0)  # crashed before: the recompute ran SDPA with the lazy mask
    # Both layers re-armed in each chunked forward: the model's, each layer's first pass, each recompute.
    assert armed == [2] * 5
    assert plain.keys() == chunked.keys() and plain
    for name in plain:
        # Float rounding scales with the gradient: on AVX-512 CPUs the recomputed sums round
        # differently (1e-6 of the tensor's largest entry); a wrong recompute is off by its whole size.
        scale = float(plain[name].abs().max())
        assert torch.allclose(plain[name], chunked[name], rtol=1e-4, atol=1e-5 * max(scale, 1.0)), name


# 9 ------------------------------------------------------------------ fp32 pooling and no KV cache
def test_training_pools_in_fp32_and_builds_no_cache(tmp_path):
    from decoder2vec.training.simcse import SimCSEStage

    stage = _stage(SimCSEStage, tmp_path, stage="simcse", data=["x"], dtype="bfloat16")
    assert next(stage.net.parameters()).dtype == torch.bfloat16
    vectors = stage.embed(stage.net, stage.collate(["one small text", "and another one"])["batch"])
    assert vectors.dtype == torch.float32
    out = stage.net(input_ids=torch.tensor([[5, 6, 7]]))
    assert out.past_key_values is None
    stage.finish()
    assert stage.net.config.use_cache is True


# 10 ----------------------------------------------------------------- false negatives
def test_identical_texts_are_not_counted_as_negatives():
    torch.manual_seed(0)
    q, p, n = torch.randn(3, 8), torch.randn(3, 8), torch.randn(2, 8)
    queries, positives, negatives = ["A", "B", "C"], ["x", "y", "x"], ["B", "z"]  # pair 2 repeats pair 0's positive
    keys = (text_keys(queries), text_keys(positives), text_keys(negatives))
    loss, seen = info_nce(q, p, n, scale=50.0, keys=keys)
    scores = F.normalize(q, dim=-1) @ F.normalize(torch.cat([p, n]), dim=-1).T * 50
    scores[0, 2] = scores[2, 0] = float("-inf")  # the other copy of "x"
    scores[1, 3] = float("-inf")  # query "B" meets its own text among the negatives
    assert torch.allclose(loss, F.cross_entropy(scores, torch.arange(3)))
    assert seen == pytest.approx(5 - 3 / 3)


# 11 ----------------------------------------------------------------- truncation and nothing to pool
def test_truncation_is_counted_and_rows_with_nothing_to_pool_are_dropped(tmp_path):
    stage = _stage(SupervisedStage, tmp_path, stage="supervised", data=["x"], batch_per_task=False,
                   train_max_length=12)
    pairs = [Pair("short query", "short doc", ["a negative"], "t"),
             Pair(" ", "its doc", [], "t"),  # nothing to pool
             Pair("third query here", "third doc", ["word " * 40], "t")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batch = stage.collate(pairs)
    messages = [str(w.message) for w in caught]
    assert batch["n"] == 2  # the pair with nothing to pool in its query is gone
    assert len(batch["ids"]) == 2 + 2 + 2 and all(any(m) for m in batch["masks"])
    assert any("truncated" in m for m in messages) and stage.counts()["truncated_texts"] == 1  # "word " * 40
    assert stage.counts()["dropped_rows"] == 1


def test_a_recipe_with_gradient_checkpointing_trains_through_chunked_attention(tmp_path, monkeypatch):
    armed = _chunk_every_batch(monkeypatch)
    out = train({"stage": "supervised", "model": str(encoder_folder(tmp_path)), "data": [str(pairs_file(tmp_path))],
                 "output_dir": str(tmp_path / "s"), "gradient_checkpointing": True}, **{**FAST, "max_steps": 2})
    record = json.loads((out / "decoder2vec_config.json").read_text())["stages"][-1]
    assert record["steps"] == 2 and record["hyperparameters"]["gradient_checkpointing"] is True
    assert armed and set(armed) == {2}  # every training forward ran chunked with both layers re-armed


def test_source_instructions_give_each_source_its_query_instruction(tmp_path):
    first, second = pairs_file(tmp_path), tmp_path / "more.jsonl"
    second.write_text("\n".join(json.dumps({"query": f"question {i}", "positive": f"answer {i}",
                                            "instruction": "Own" if i == 0 else ""}) for i in range(8)) + "\n")
    stage = _stage(SupervisedStage, tmp_path, stage="supervised", data=[str(first), str(second)],
                   batch_per_task=False, eval_examples=0, source_instructions={str(first): "Find a paraphrase"})
    pairs = stage.dataset()
    by_query = {p.query: p.instruction for p in pairs}
    assert by_query["question 0"] == "Own"  # the row's own column comes first
    assert {by_query[f"question {i}"] for i in range(1, 8)} == {None}  # no map entry: query_instruction (none)
    assert {p.instruction for p in pairs if not p.query.startswith("question")} == {"Find a paraphrase"}
    with pytest.raises(Exception, match="source_instructions names 'other.jsonl'"):
        make_config({"stage": "supervised", "data": ["x"], "output_dir": "o", "source_instructions": {"other.jsonl": "I"}})


def test_chunked_attention_switches_the_model_inside_a_ddp_style_wrapper():
    from decoder2vec.model.chunked_attention import NAME, chunked_attention

    class Wrapper(torch.nn.Module):  # what DDP/FSDP look like from outside: .module, no .config
        def __init__(self, module):
            super().__init__()
            self.module = module

    model = tiny_model("llama")
    with chunked_attention(Wrapper(model)):
        assert model.config._attn_implementation == NAME
    assert model.config._attn_implementation == "sdpa"
