"""Training stages on tiny models: masking, LoRA targets, losses, the cached loss, the three-stage
pipeline end to end, skip on re-run, and clear errors for bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from decoder2vec import Decoder2VecError, Encoder
from decoder2vec.training import train
from decoder2vec.training import engine  # noqa: F401 - imports every stage's module, so each Stage registers
from decoder2vec.training.config import STAGE_CONFIGS, SupervisedConfig, make_config
from decoder2vec.training.lora import add_lora, default_target_modules
from decoder2vec.training.losses import info_nce
from decoder2vec.training.mntp import mask_batch, mask_token_id, pad_chunks
from decoder2vec.training.stage import stage_class
from test_training_support import FAST, attached_stage, causal_lm_folder, corpus_file, csv_rows, encoder_folder, pairs_file
from tiny import FAMILIES, tiny_model, tiny_tokenizer


# ------------------------------------------------------------------ MNTP masking
def test_mask_batch_labels_only_masked_positions():
    batch = pad_chunks([list(range(10, 40)), list(range(50, 62))], pad_id=0)
    masked, labels = mask_batch(batch["input_ids"], batch["attention_mask"], mask_id=7, vocab_size=300,
                                probability=0.5, policy="all-mask", generator=torch.Generator().manual_seed(0))
    chosen = labels != -100
    assert chosen.any()
    assert not chosen[batch["attention_mask"] == 0].any()  # padding is never masked
    assert torch.equal(labels[chosen], batch["input_ids"][chosen])
    assert (masked[chosen] == 7).all()
    assert torch.equal(masked[~chosen], batch["input_ids"][~chosen])


def test_mask_batch_80_10_10_mixes_mask_random_and_kept_tokens():
    ids = torch.arange(100, 300).repeat(8, 1)
    masked, labels = mask_batch(ids, torch.ones_like(ids), mask_id=5, vocab_size=1000, probability=0.5,
                                policy="80-10-10", generator=torch.Generator().manual_seed(0))
    chosen = labels != -100
    share = chosen.float().mean().item()
    assert 0.4 < share < 0.6
    as_mask = (masked[chosen] == 5).float().mean().item()
    kept = (masked[chosen] == ids[chosen]).float().mean().item()
    assert 0.7 < as_mask < 0.9 and 0.05 < kept < 0.2


def test_mask_batch_masks_at_least_one_token():
    ids = torch.tensor([[3, 4]])
    _, labels = mask_batch(ids, torch.ones_like(ids), mask_id=5, vocab_size=10, probability=1e-9,
                           policy="all-mask", generator=torch.Generator().manual_seed(0))
    assert labels.tolist() == [[-100, 4]]


def test_mask_token_choices():
    tok = tiny_tokenizer()
    underscore, added = mask_token_id(tok, "auto")  # the tiny tokenizer has no mask token
    assert not added and tok.decode([underscore]) == "_"
    assert mask_token_id(tok, "eos") == (tok.eos_token_id, False)
    size = len(tok)
    new_id, added = mask_token_id(tok, "add")
    assert added and new_id == size and tok.mask_token == "<mask>"


# ------------------------------------------------------------------ LoRA targets
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_default_lora_targets_cover_every_layer_projection(family):
    model = tiny_model(family)
    targets = default_target_modules(model)
    assert targets and "lm_head" not in targets
    wrapped = add_lora(model, r=2, alpha=4, dropout=0.0)
    trainable = [n for n, p in wrapped.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    # Every linear-like module inside the layers got an adapter.
    adapted = {n.rsplit(".", 1)[-1] for n, m in wrapped.named_modules() if hasattr(m, "lora_A")}
    assert adapted == set(targets)


def test_unknown_lora_target_is_named():
    with pytest.raises(Decoder2VecError, match="not_a_module"):
        add_lora(tiny_model("llama"), r=2, alpha=4, dropout=0.0, target_modules=["not_a_module"])


# ------------------------------------------------------------------ losses
def test_info_nce_is_cross_entropy_over_positives_and_negatives():
    torch.manual_seed(0)
    q, p, n = torch.randn(4, 8), torch.randn(4, 8), torch.randn(3, 8)
    loss, candidates = info_nce(q, p, n, scale=20.0)
    scores = F.normalize(q, dim=-1) @ F.normalize(torch.cat([p, n]), dim=-1).T * 20
    assert candidates == 7
    assert torch.allclose(loss, F.cross_entropy(scores, torch.arange(4)))


def _supervised_stage(tmp_path, **overrides):
    from decoder2vec.training.supervised import SupervisedStage

    stage, model, items = attached_stage(SupervisedStage, tmp_path, pairs_file(tmp_path), **overrides)
    return stage, model, stage.collate(items[:1] if stage.config.batch_per_task else items[:4])


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_cached_loss_gives_the_same_gradients_as_the_plain_loss(tmp_path):
    stage, model, inputs = _supervised_stage(tmp_path, mini_batch_size=3)
    assert len(inputs["ids"]) > 3 * 2  # several chunks
    model.train()
    loss, plain_logs = stage.loss(model, inputs)
    loss.backward()
    plain = _grads(model)
    model.zero_grad()
    cached_loss, logs = stage.cached_backward(model, inputs)
    cached = _grads(model)
    assert torch.allclose(loss, cached_loss, atol=1e-6)
    assert logs["negatives"] == plain_logs["negatives"] <= len(inputs["ids"]) - inputs["n"] - 1
    assert plain.keys() == cached.keys()
    for name in plain:
        assert torch.allclose(plain[name], cached[name], atol=1e-6, rtol=1e-4), name
    assert any(g.abs().sum() > 0 for g in plain.values())


def test_hidden_dropout_is_on_in_training_and_gone_after_finish(tmp_path):
    from decoder2vec.training.simcse import SimCSEStage

    config = make_config({"stage": "simcse", "model": str(encoder_folder(tmp_path)), "data": ["x.txt"],
                          "output_dir": str(tmp_path / "o"), "hidden_dropout": 0.3, "attention_dropout": 0.2, **FAST})
    stage = SimCSEStage(config)
    stage.load()
    assert stage.net.config.attention_dropout == 0.2
    batch = stage.collate(["the quick brown fox jumps over the lazy dog"])["batch"]
    stage.net.train()
    a, b = (stage.embed(stage.net, batch) for _ in range(2))
    assert not torch.allclose(a[0], a[1])  # the two copies of one sentence differ: dropout
    stage.finish()
    assert stage.net.config.attention_dropout == 0.0
    a, b = (stage.embed(stage.net, batch) for _ in range(2))
    assert torch.allclose(a, b) and torch.allclose(a[0], a[1])


# ------------------------------------------------------------------ the pipeline end to end
@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    corpus, pairs = corpus_file(root), pairs_file(root)
    out = {}
    out["mntp"] = train({"stage": "mntp", "model": str(causal_lm_folder(root)), "data": [str(corpus)],
                         "output_dir": str(root / "mntp"), "eval_examples": 8, "learning_rate": 3e-3},
                        **{**FAST, "max_steps": 12})
    out["simcse_recipe"] = {"stage": "simcse", "model": str(out["mntp"]), "data": [str(corpus)],
                            "output_dir": str(root / "simcse"), "min_words": 3, "learning_rate": 1e-3,
                            **FAST, "max_steps": 8}
    out["simcse"] = train(out["simcse_recipe"])
    out["supervised"] = train({"stage": "supervised", "model": str(out["simcse"]), "data": [str(pairs)],
                               "output_dir": str(root / "supervised"), "learning_rate": 3e-3,
                               "query_instruction": "Find a paraphrase:", "scale": 20.0},  # 50 rounds 2 examples to 0
                              **{**FAST, "max_steps": 12})
    out["root"] = root
    return out


def _stages(folder):
    return json.loads((folder / "decoder2vec_config.json").read_text())["stages"]


def test_each_stage_writes_a_loadable_encoder_with_its_adapter_and_history(pipeline):
    for i, name in enumerate(["mntp", "simcse", "supervised"]):
        folder = pipeline[name]
        stages = _stages(folder)
        assert [s["stage"] for s in stages] == ["mntp", "simcse", "supervised"][: i + 1]
        assert stages[-1]["steps"] == (8 if name == "simcse" else 12)
        assert isinstance(stages[-1]["final_loss"], float)
        assert (folder / "adapter" / "adapter_config.json").is_file()
        assert (folder / "logs" / "log.csv").is_file()
        assert not (folder.parent / f"{folder.name}.checkpoints").exists()  # cleaned up
        encoder = Encoder.from_pretrained(folder)
        assert encoder.is_bidirectional()
        assert encoder.encode(["a text"]).shape == (1, 32)


def test_mntp_output_loads_as_a_backbone_and_accuracy_was_measured(pipeline):
    from transformers import AutoModel

    AutoModel.from_pretrained(pipeline["mntp"])
    record = _stages(pipeline["mntp"])[0]
    assert record["before"]["mntp_eval_tokens"] == record["after"]["mntp_eval_tokens"] > 0
    assert record["after"]["mntp_eval_loss"] < record["before"]["mntp_eval_loss"]


def test_vectors_change_from_stage_to_stage(pipeline):
    texts = ["Paris is the capital of France.", "A dog barked."]
    base = Encoder.from_pretrained(causal_lm_folder(pipeline["root"])).encode(texts)
    previous = base
    for name in ["mntp", "simcse", "supervised"]:
        now = Encoder.from_pretrained(pipeline[name]).encode(texts)
        assert not np.allclose(now, previous, atol=1e-5), name
        previous = now


def test_losses_fall(pipeline):
    for name in ["mntp", "supervised"]:
        losses = [float(r["loss"]) for r in csv_rows(pipeline[name] / "logs" / "log.csv") if r.get("loss")]
        assert np.mean(losses[-3:]) < np.mean(losses[:3]), (name, losses)


def test_contrastive_stages_measure_a_held_out_loss(pipeline):
    # The per-batch training loss is noise over a short run; the held-out loss (same examples,
    # same dropout masks before and after) is the comparable figure.
    for name in ["simcse", "supervised"]:
        record = _stages(pipeline[name])[-1]
        before, after = record["before"], record["after"]
        assert before[f"{name}_eval_examples"] == after[f"{name}_eval_examples"] >= 2
        assert after[f"{name}_eval_loss"] != before[f"{name}_eval_loss"], (name, before, after)
    # That it falls is checked on the real SmolLM2 (test_training_real.py): two held-out examples
    # of a random tiny model say nothing.


def test_held_out_pairs_are_never_trained_on(tmp_path):
    from decoder2vec.data.pairs import Pair
    from decoder2vec.training.supervised import SupervisedStage

    config = make_config({"stage": "supervised", "model": "unused", "data": ["x.jsonl"], "eval_examples": 4,
                          "output_dir": str(tmp_path / "o"), "batch_per_task": False, **FAST})
    stage = SupervisedStage(config)
    # Symmetric data (as STS-B gives): every pair also appears reversed.
    pairs = [Pair(f"q{i}", f"p{i}") for i in range(40)] + [Pair(f"p{i}", f"q{i}") for i in range(40)]
    rest = stage.hold_out(pairs, "pairs")
    held = {frozenset((p.query, p.positive)) for p in stage.eval_items}
    assert len(stage.eval_items) == 4
    assert not any(frozenset((p.query, p.positive)) in held for p in rest)
    assert len(rest) == 80 - 4 - 4  # each held-out pair's reverse is dropped too


def test_supervised_logs_in_batch_and_hard_negatives(pipeline):
    rows = [r for r in csv_rows(pipeline["supervised"] / "logs" / "log.csv") if r.get("negatives")]
    assert {int(float(r["negatives"])) for r in rows} == {4 + 4 - 1}  # 4 positives + 4 hard negatives


def test_finished_stage_is_skipped(pipeline, capsys):
    before = (pipeline["simcse"] / "model.safetensors").stat().st_mtime_ns
    again = train(pipeline["simcse_recipe"], logging_steps=3)  # logging is not part of the recipe
    assert again == pipeline["simcse"]
    assert "skipped" in capsys.readouterr().out
    assert (pipeline["simcse"] / "model.safetensors").stat().st_mtime_ns == before


def test_finished_stage_with_another_recipe_names_the_keys(pipeline):
    before = (pipeline["simcse"] / "model.safetensors").stat().st_mtime_ns
    with pytest.raises(Decoder2VecError, match=r"different recipe \(max_steps: 8 -> 9; "
                                               r"learning_rate: 0.001 -> 0.002\).*force: true"):
        train(pipeline["simcse_recipe"], learning_rate=2e-3, max_steps=9)
    assert (pipeline["simcse"] / "model.safetensors").stat().st_mtime_ns == before


def test_force_trains_a_changed_recipe_again_and_replaces_the_output(tmp_path, pipeline):
    import shutil

    out = tmp_path / "simcse"
    shutil.copytree(pipeline["simcse"], out)
    recipe = {**pipeline["simcse_recipe"], "output_dir": str(out)}
    (out / "NOTES.md").write_text("my notes")  # a user's file in a stage folder survives the replacement
    folder = train(recipe, max_steps=2, force=True)
    assert folder == out
    assert (out / "NOTES.md").read_text() == "my notes"
    assert (out / "adapter").is_dir() and (out / "logs" / "log.csv").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    record = _stages(out)[-1]
    assert record["steps"] == 2 and record["hyperparameters"]["max_steps"] == 2
    assert not (tmp_path / "simcse.checkpoints").exists()
    assert train(recipe, max_steps=2) == out  # the new recipe is now the recorded one: skipped


def test_save_steps_beyond_max_steps_is_clamped_with_a_warning():
    from decoder2vec.training.engine import save_steps

    config = make_config({"stage": "mntp", "data": ["x.txt"], "output_dir": "o", "max_steps": 10, "save_steps": 50})
    seen = []
    assert save_steps(config, log=seen.append) == 5
    assert "save_steps=50 >= max_steps=10" in seen[0]
    assert save_steps(make_config({**dataclasses_dict(config), "save_steps": 4}), log=seen.append) == 4
    assert len(seen) == 1


def dataclasses_dict(config):
    import dataclasses

    values = dataclasses.asdict(config)
    values.pop("training_args")
    return values


def test_output_holding_another_stage_is_refused(pipeline):
    with pytest.raises(Decoder2VecError, match="already holds a finished 'mntp'"):
        train({"stage": "simcse", "model": str(pipeline["mntp"]), "data": ["x.txt"],
               "output_dir": str(pipeline["mntp"])}, **FAST)


# ------------------------------------------------------------------ bad input
def _refused(tmp_path, match, **recipe):
    out = tmp_path / "out"
    recipe = {"output_dir": str(out), **recipe}
    with pytest.raises(Decoder2VecError, match=match):
        train(recipe, **FAST)
    assert not out.exists()  # nothing half-written
    assert not (tmp_path / "out.checkpoints" / "final").exists()


def test_empty_corpus(tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n")
    _refused(tmp_path, "no training", stage="simcse", model=str(encoder_folder(tmp_path)),
             data=[str(tmp_path / "empty.txt")])


def test_corpus_smaller_than_a_batch(tmp_path):
    (tmp_path / "few.txt").write_text("One sentence that is long enough.\nAnother sentence that is long enough.\n")
    _refused(tmp_path, "fewer than one batch", stage="simcse", model=str(encoder_folder(tmp_path)),
             data=[str(tmp_path / "few.txt")])


def test_missing_data_file(tmp_path):
    _refused(tmp_path, "data file not found", stage="mntp", model=str(causal_lm_folder(tmp_path)),
             data=[str(tmp_path / "nope.txt")])


def test_missing_previous_stage(tmp_path):
    _refused(tmp_path, "previous stage", stage="simcse", model=str(tmp_path / "mntp"), data=["x.txt"])


def test_unknown_recipe_keys_are_named(tmp_path):
    with pytest.raises(Decoder2VecError, match="lerning_rate, bogus"):
        train({"stage": "mntp", "data": ["x"], "output_dir": str(tmp_path / "o"), "lerning_rate": 1, "bogus": 2})


def test_training_arguments_keys_pass_through():
    config = make_config({"stage": "supervised", "data": ["x"], "output_dir": "o", "adam_beta2": 0.98,
                          "max_grad_norm": 0.5})
    assert isinstance(config, SupervisedConfig)
    assert config.training_args == {"adam_beta2": 0.98, "max_grad_norm": 0.5}


def test_unfinished_previous_stage(tmp_path):
    (tmp_path / "mntp.checkpoints" / "checkpoint-2").mkdir(parents=True)
    _refused(tmp_path, "unfinished stage", stage="simcse", model=str(tmp_path / "mntp"), data=["x.txt"])


@pytest.mark.parametrize("family", FAMILIES)
def test_hidden_dropout_hooks_sublayers_not_the_residual_stream(family):
    """Hidden dropout is applied to attention/MLP outputs (as BERT/SimCSE do), never to the whole
    residual stream: with p=1 on sublayer outputs the layers add nothing, so the output is the
    embeddings passed through the final norm — which dropping the residual stream would zero."""
    from decoder2vec.training.dropout import set_dropout

    model = tiny_model(family)
    restore = set_dropout(model, attention=0.0, hidden=1.0)
    model.train()
    ids = torch.tensor([[3, 5, 7, 9]])
    with torch.no_grad():
        out = model(input_ids=ids).last_hidden_state
    restore()
    assert out.abs().sum() > 0


def test_a_record_written_before_the_renames_compares_under_the_new_names():
    from decoder2vec.training.engine import recipe_differences

    config = make_config({"stage": "mntp", "model": "m", "data": ["x.txt"], "output_dir": "o", "train_max_length": 64,
                          "eval_examples": 32, "packing": "per-text"})
    record = {"model": "m", "hyperparameters": {**dataclasses_dict(config)}}
    for key in ("train_max_length", "eval_examples", "packing", "lr_schedule_epochs", "gradient_checkpointing"):
        record["hyperparameters"].pop(key)
    record["hyperparameters"].update(max_length=64, eval_texts=32)  # session-2 names; per-text was the only packing
    assert recipe_differences(record, config) == []
    blocks = make_config({**dataclasses_dict(config), "packing": "blocks"})
    assert recipe_differences(record, blocks) == ["packing: 'per-text' -> 'blocks'"]


@pytest.mark.parametrize("recorded, num_negatives, changed", [
    (True, 1, []), (False, 0, []), (False, 1, ["num_negatives: 0 -> 1"]), (True, 0, ["num_negatives: 1 -> 0"])])
def test_a_supervised_record_with_hard_negatives_compares_as_num_negatives(recorded, num_negatives, changed):
    """hard_negatives: true kept the one negative an STS-B / E5 pair carries: num_negatives 1."""
    from decoder2vec.training.engine import recipe_differences

    config = make_config({"stage": "supervised", "model": "m", "data": ["x.jsonl"], "output_dir": "o",
                          "num_negatives": num_negatives})
    record = {"model": "m", "hyperparameters": {**dataclasses_dict(config)}}
    del record["hyperparameters"]["num_negatives"]
    record["hyperparameters"]["hard_negatives"] = recorded
    assert recipe_differences(record, config) == changed


def test_one_stage_registry(monkeypatch):
    """STAGE_CONFIGS is the one list of stages: each entry's Stage is the one naming that config as
    its config_class, named after it; a config with no Stage is a one-line error, not a KeyError."""
    assert {name: stage_class(name).__name__ for name in STAGE_CONFIGS} == {
        "mntp": "MNTPStage", "simcse": "SimCSEStage", "supervised": "SupervisedStage", "distill": "DistillStage",
        "finetune": "FinetuneStage"}
    assert all(stage_class(name).name == name for name in STAGE_CONFIGS)

    class NewConfig(SupervisedConfig):
        stage: str = "new"
    monkeypatch.setitem(STAGE_CONFIGS, "new", NewConfig)
    with pytest.raises(Decoder2VecError, match="stage 'new' has a config \\(NewConfig\\) but no Stage"):
        stage_class("new")
