"""Every shipped recipe loads and validates; the stages of a model chain into each other."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from decoder2vec import Decoder2VecError
from decoder2vec.data.corpora import packaged_corpora
from decoder2vec.data.pairs import packaged_pairs
from decoder2vec.data.paper import is_paper_source
from decoder2vec.training.config import STAGE_CONFIGS, load_recipe

# Training recipes: every YAML file except evaluation suites (suite.yaml) that sit beside them.
RECIPES = sorted(p for p in (Path(__file__).parents[1] / "src" / "decoder2vec" / "recipes").rglob("*.yaml") if p.stem != "suite")
ORDER = ["mntp", "simcse", "supervised"]


def test_recipes_exist():
    assert {p.relative_to(p.parents[1]).as_posix() for p in RECIPES if p.parent.name == "smollm2-135m"} == {
        "smollm2-135m/mntp.yaml", "smollm2-135m/simcse.yaml", "smollm2-135m/supervised.yaml"}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_recipe_is_valid(path):
    config = load_recipe(path)
    assert isinstance(config, STAGE_CONFIGS[config.stage])
    assert config.stage == path.stem  # one file per (model, stage), named after the stage
    assert config.recipe == str(path)
    assert config.training_args == {}  # shipped recipes use only named keys
    # Distillation reads sentences (corpora) or pairs (translations: the teacher embeds the English).
    packaged = {"supervised": packaged_pairs(), "distill": {**packaged_corpora(), **packaged_pairs()}}.get(
        config.stage, packaged_corpora())
    assert all(source in packaged or is_paper_source(source) for source in config.data), config.data


@pytest.mark.parametrize("model", sorted({p.parent for p in RECIPES}), ids=lambda p: p.relative_to(p.parents[1]).as_posix())
def test_stages_chain(model):
    configs = {p.stem: load_recipe(p) for p in RECIPES if p.parent == model}
    if model.parent.name == "paper":
        # LLM2Vec's chain: SimCSE (the unsupervised model) and supervised both start from MNTP.
        assert configs["simcse"].model == configs["supervised"].model == configs["mntp"].output_dir
        return
    stages = [s for s in ORDER if s in configs]
    for previous, stage in zip(stages, stages[1:]):
        assert configs[stage].model == configs[previous].output_dir


# ------------------------------------------------------------------ the distill recipes
RECIPE_ROOT = Path(__file__).parents[1] / "src" / "decoder2vec" / "recipes"
# The measured Danish run (issue 17): one distill stage, MiniLM's in-batch similarities on en-da pairs.
GEMMA_DISTILL = dict(model="gemma3-270m", teacher="minilm", distill_loss="similarity_kl", train_max_length=64,
                     per_device_train_batch_size=16, eval_examples=32, learning_rate=2e-4)
DISTILL = {
    "gemma3-270m-da/distill": dict(GEMMA_DISTILL, data=["libreoffice-en-da-train"], max_steps=72, save_steps=24,
                                   logging_steps=8),
    "gemma3-270m-de/distill": dict(GEMMA_DISTILL, data=["libreoffice-en-de-train"], max_steps=72, save_steps=24,
                                   logging_steps=8),
    "smollm2-135m/distill": dict(model="smollm2-135m", teacher="minilm", data=["wikipedia-en"], min_words=6,
                                 max_words=40, distill_loss="similarity_kl", train_max_length=48,
                                 per_device_train_batch_size=32, max_steps=72, logging_steps=8, save_steps=24,
                                 eval_examples=64, learning_rate=2e-4),
}
# The measured runs (issue 25): EmbeddingGemma's vectors on titles -> pages, man page summaries ->
# pages, package summaries -> descriptions and translations (da at 1600 per source, lr 1e-3; de also
# section headings -> sections and every STS-B de train pair, at 1000 per source, lr 5e-4, each batch
# one source; both without LoRA dropout), STS-B train and Wikipedia sentences (en); bf16 where native.
EMBEDDINGGEMMA_DISTILL = dict(model="gemma3-270m", teacher="embeddinggemma-300m", distill_loss="mse",
                              similarity_weight=1.0, source_limit=1200, train_max_length=64,
                              query_instruction="Given the title of a help page, retrieve the help page:",
                              per_device_train_batch_size=16, logging_steps=10, eval_examples=32,
                              learning_rate=2e-4, fast=True)
DISTILL["gemma3-270m-da/distill-embeddinggemma"] = dict(
    EMBEDDINGGEMMA_DISTILL, max_steps=450, save_steps=100, source_limit=1600, learning_rate=1e-3, lora_dropout=0.0,
    data=["libreoffice-titles-da-train", "manpage-summaries-da", "package-descriptions-da", "libreoffice-en-da-train"])
DISTILL["gemma3-270m-de/distill-embeddinggemma"] = dict(
    EMBEDDINGGEMMA_DISTILL, max_steps=450, save_steps=100, source_limit=1000, learning_rate=5e-4, lora_dropout=0.0,
    min_score=0.0, batch_per_task=True,
    data=["libreoffice-titles-de-train", "libreoffice-headings-de-train", "manpage-summaries-de",
          "package-descriptions-de", "stsb-de-train", "libreoffice-en-de-train"])
DISTILL["gemma3-270m-en/distill-embeddinggemma"] = dict(
    EMBEDDINGGEMMA_DISTILL, max_steps=480, save_steps=160, query_instruction=None, data=["stsb-en-train", "wikipedia-en"])
QUICK = dict(max_steps=16, save_steps=8, logging_steps=4)  # the quick flavour: only these differ
# ... except where the teacher is costly: fewer examples to encode too.
QUICK_OF = {folder: dict(max_steps=8, save_steps=4, logging_steps=2, source_limit=80)
            for folder in DISTILL if folder.endswith("distill-embeddinggemma")}


@pytest.mark.parametrize("folder", sorted(DISTILL))
@pytest.mark.parametrize("quick", [False, True], ids=["full", "quick"])
def test_distill_recipes_are_one_stage_with_the_measured_settings(folder, quick):
    path = RECIPE_ROOT / folder / ("quick" if quick else "") / "distill.yaml"
    # The Danish and German quick flavours are scored on their paper quick flavour's suite.
    with_suite = quick and folder.startswith(("gemma3-270m-da", "gemma3-270m-de"))
    assert sorted(p.name for p in path.parent.glob("*.yaml")) == (
        ["distill.yaml", "suite.yaml"] if with_suite else ["distill.yaml"])
    config = load_recipe(path)
    for key, value in {**DISTILL[folder], **(QUICK_OF.get(folder, QUICK) if quick else {})}.items():
        assert getattr(config, key) == value, (key, getattr(config, key), value)
    # Its own runs folder, so the paper recipe's runs/<model>[-quick] are never mixed with it.
    assert config.output_dir == f"runs/{folder.replace('/', '-')}{'-quick' if quick else ''}/distill"
    if with_suite:  # scored on the paper quick flavour's suite, so the two compare
        paper_suite = RECIPE_ROOT / folder.split("/")[0] / "quick" / "suite.yaml"
        assert (path.parent / "suite.yaml").read_text() == paper_suite.read_text()


# ------------------------------------------------------------------ the paper's recipes
PAPER = sorted({p.parent for p in RECIPES if p.parent.parent.name == "paper"})
# The reference's train_configs/{mntp,simcse,supervised}/*.json (and its scripts' defaults: lr 5e-5
# and 3 epochs from TrainingArguments, LoRA alpha = 2 r, dropout 0.05, supervised loss_scale 50).
REFERENCE = {
    "mntp": dict(data=["wikitext-103"], train_max_length=512, per_device_train_batch_size=32, max_steps=1000,
                 learning_rate=5e-5, warmup_steps=0, lr_schedule_epochs=3, packing="blocks", save_steps=200),
    "simcse": dict(data=["wiki1m"], train_max_length=128, per_device_train_batch_size=128, max_steps=1000,
                   learning_rate=3e-5, warmup_steps=0, lr_schedule_epochs=3, scale=20.0, attention_dropout=0.3,
                   hidden_dropout=0.0, pooling="mean", save_steps=200),
    "supervised": dict(data=["e5:cache/echo-data"], train_max_length=512, per_device_train_batch_size=64,
                       max_steps=1000, learning_rate=2e-4, warmup_steps=300, lr_schedule_epochs=3, scale=50.0,
                       pooling="mean", batch_per_task=True, num_negatives=1, instruction_template="{instruction}; ",
                       attention_dropout=0.0, hidden_dropout=0.0, save_steps=200),
}
COMMON = dict(lora_r=16, lora_alpha=32, lora_dropout=0.05, gradient_checkpointing=True, dtype="bfloat16",
              gradient_accumulation_steps=1, seed=42)
MNTP_MASKING = {  # (mask_probability, mask_policy): Mistral's config uses all_mask at 0.8
    "mistral-7b-instruct-v0.2": (0.8, "all-mask"),
}
# The chat format LLM2Vec 0.2.3's prepare_for_tokenization applies to each model (by hub id; the
# two current models get their family's: Gemma-2-it's and Qwen2-Instruct's).
CHAT = {"sheared-llama-1.3b": None, "llama-2-7b-chat": "llama-2", "mistral-7b-instruct-v0.2": "mistral",
        "meta-llama-3-8b-instruct": "llama-3", "gemma-3-1b-it": "gemma", "qwen3-1.7b": "qwen"}
# How many GPUs each stage's launch line uses: the paper's single GPU, and 8 x 64 = 512 for supervised.
GPUS = {"mntp": 1, "simcse": 1, "supervised": 8}


def test_paper_recipes_cover_the_papers_models_and_two_current_ones():
    models = {yaml.safe_load((m / "mntp.yaml").read_text())["model"] for m in PAPER}
    assert {"princeton-nlp/Sheared-LLaMA-1.3B", "meta-llama/Llama-2-7b-chat-hf", "mistralai/Mistral-7B-Instruct-v0.2",
            "meta-llama/Meta-Llama-3-8B-Instruct"} < models
    assert any(m.startswith("Qwen/Qwen3-") for m in models) and any(m.startswith("google/gemma-3-") for m in models)
    assert all(sorted(p.stem for p in m.glob("*.yaml")) == ["mntp", "simcse", "supervised"] for m in PAPER)


@pytest.mark.parametrize("model", PAPER, ids=lambda p: p.name)
@pytest.mark.parametrize("stage", ORDER)
def test_paper_recipe_has_the_references_settings(model, stage):
    path = model / f"{stage}.yaml"
    config = load_recipe(path)
    for key, value in {**REFERENCE[stage], **COMMON}.items():
        assert getattr(config, key) == value, (key, getattr(config, key), value)
    if stage == "mntp":
        assert (config.mask_probability, config.mask_policy) == MNTP_MASKING.get(model.name, (0.2, "80-10-10"))
    # Every stage pools as LLM2Vec and records the model's chat format in the folder it writes.
    assert config.pool_span == "llm2vec"
    assert config.chat_format == (CHAT[model.name] or "none")
    launch = f"torchrun --nproc_per_node {GPUS[stage]} $(which decoder2vec) train recipes/paper/{model.name}/{stage}.yaml"
    assert launch in path.read_text()


def test_overrides_and_unknown_keys(tmp_path):
    config = load_recipe(RECIPES[0], max_steps=3, learning_rate=1e-3)
    assert (config.max_steps, config.learning_rate) == (3, 1e-3)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**yaml.safe_load(RECIPES[0].read_text()), "mask_prob": 0.3}))
    with pytest.raises(Decoder2VecError, match="unknown .* key\\(s\\): mask_prob"):
        load_recipe(bad)


@pytest.mark.parametrize("values, match", [
    ({"stage": "pretrain"}, "unknown stage 'pretrain'"),
    ({"stage": "mntp", "data": ["x"], "output_dir": "o", "mask_policy": "half"}, "mask_policy"),
    ({"stage": "mntp", "data": ["x"], "output_dir": "o", "mask_probability": 1.5}, "mask_probability"),
    ({"stage": "simcse", "data": ["x"], "output_dir": "o", "pooling": "max"}, "pooling"),
    ({"stage": "supervised", "data": ["x"], "output_dir": "o", "max_steps": 0}, "max_steps"),
    ({"stage": "supervised", "output_dir": "o"}, "data is required"),
    ({"stage": "supervised", "data": ["x"]}, "output_dir is required"),
    ({"stage": "supervised", "data": ["x"], "output_dir": "o", "hard_negatives": True},
     r"^supervised recipe key 'hard_negatives' is now num_negatives \(at most this many hard negatives per example"),
    ({"stage": "supervised", "data": ["x"], "output_dir": "o", "num_negatives": True},
     "num_negatives must be an integer"),
    ({"stage": "supervised", "data": ["x"], "output_dir": "o", "num_negatives": -1},
     "num_negatives must be an integer >= 0"),
])
def test_bad_values_are_named(values, match):
    with pytest.raises(Decoder2VecError, match=match):
        load_recipe(values)


def test_cli_set_values_are_yaml(tmp_path):
    from decoder2vec.cli.train import parse_overrides

    values = parse_overrides(["max_steps=5", "learning_rate=1e-4", "data=[a.txt, b.txt]", "query_instruction=null",
                              "num_negatives=0"])
    assert values == {"max_steps": 5, "learning_rate": "1e-4", "data": ["a.txt", "b.txt"],
                      "query_instruction": None, "num_negatives": 0}
    # YAML 1.1 leaves "1e-4" a string; the config reads it as the float the key is.
    config = load_recipe(RECIPES[-1], **values)
    assert config.learning_rate == 1e-4 and config.data == ["a.txt", "b.txt"] and config.max_steps == 5
    assert config.stage == "supervised" and config.num_negatives == 0
    with pytest.raises(Decoder2VecError, match="KEY=VALUE"):
        parse_overrides(["max_steps"])
