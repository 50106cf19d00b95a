"""Every shipped recipe loads and validates; the stages of a model chain into each other."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from decoder2vec import Decoder2VecError
from decoder2vec.data.corpora import packaged_corpora
from decoder2vec.data.pairs import packaged_pairs
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
    packaged = packaged_pairs() if config.stage == "supervised" else packaged_corpora()
    assert all(source in packaged for source in config.data), config.data


@pytest.mark.parametrize("model", sorted({p.parent for p in RECIPES}), ids=lambda p: p.relative_to(p.parents[1]).as_posix())
def test_stages_chain(model):
    configs = {p.stem: load_recipe(p) for p in RECIPES if p.parent == model}
    stages = [s for s in ORDER if s in configs]
    for previous, stage in zip(stages, stages[1:]):
        assert configs[stage].model == configs[previous].output_dir


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
])
def test_bad_values_are_named(values, match):
    with pytest.raises(Decoder2VecError, match=match):
        load_recipe(values)


def test_cli_set_values_are_yaml(tmp_path):
    from decoder2vec.cli.train import parse_overrides

    values = parse_overrides(["max_steps=5", "learning_rate=1e-4", "data=[a.txt, b.txt]", "query_instruction=null",
                              "hard_negatives=false"])
    assert values == {"max_steps": 5, "learning_rate": "1e-4", "data": ["a.txt", "b.txt"],
                      "query_instruction": None, "hard_negatives": False}
    # YAML 1.1 leaves "1e-4" a string; the config reads it as the float the key is.
    config = load_recipe(RECIPES[-1], **values)
    assert config.learning_rate == 1e-4 and config.data == ["a.txt", "b.txt"] and config.max_steps == 5
    with pytest.raises(Decoder2VecError, match="KEY=VALUE"):
        parse_overrides(["max_steps"])
