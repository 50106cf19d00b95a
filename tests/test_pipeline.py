"""The pipeline runner: recipe folders (packaged or a path), the stage chain, evaluation after each
stage, results files, resuming, and `decoder2vec run` — on a tiny random model with a tiny suite."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from decoder2vec.cli import run as run_verb
from decoder2vec.errors import Decoder2VecError
from decoder2vec.pipeline.runner import Pipeline, packaged_recipe_names, packaged_recipes, recipe_folder, stage_recipes
from tiny import CORPUS, tiny_config, tiny_tokenizer

RECIPE = ("stage: {stage}\nmodel: {model}\ndata: [{data}]\noutput_dir: {output}/{stage}\nmax_steps: 2\n"
          "per_device_train_batch_size: 4\nsave_steps: 1\nlogging_steps: 1\nreport_to: none\n")


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """A plain causal-LM folder (as a hub model would be) and a recipe folder: mntp -> simcse, with
    its own suite.yaml (16 STS-B pairs: seconds on a tiny model)."""
    root = tmp_path_factory.mktemp("chain")
    base = root / "base"
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(tiny_config("llama")).save_pretrained(base)
    tiny_tokenizer().save_pretrained(base)
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(CORPUS), encoding="utf-8")
    recipes = root / "recipes"
    recipes.mkdir()
    for stage in ("mntp", "simcse"):
        (recipes / f"{stage}.yaml").write_text(
            RECIPE.format(stage=stage, model=base, data=corpus, output=root / "default-run"))
    (recipes / "suite.yaml").write_text("tasks:\n  stsb-en: {sample: 16}\n")
    (recipes / "notes.yaml").write_text("not: a stage\n")  # ignored: not a registered stage's name
    return root, base, recipes


def test_packaged_recipes_are_found_by_name():
    names = packaged_recipe_names()
    assert {"smollm2-135m", "smollm2-135m/quick", "gemma3-270m-da", "gemma3-270m-de/quick"} <= set(names)
    assert recipe_folder("smollm2-135m/quick") == packaged_recipes() / "smollm2-135m" / "quick"
    assert list(stage_recipes(recipe_folder("smollm2-135m"))) == ["mntp", "simcse", "supervised"]
    with pytest.raises(Decoder2VecError, match=r"'nope'.*smollm2-135m/quick"):
        recipe_folder("nope")


def test_stage_order_comes_from_the_stage_registry_not_the_folder(tmp_path):
    for stage in ("supervised", "mntp"):
        (tmp_path / f"{stage}.yaml").write_text("stage: x\n")
    assert list(stage_recipes(tmp_path)) == ["mntp", "supervised"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(Decoder2VecError, match="no stage recipe.*mntp.yaml"):
        stage_recipes(empty)


def test_defaults_come_from_the_recipes_and_the_plan_chains_the_stages(chain):
    root, base, recipes = chain
    pipeline = Pipeline(recipes)
    assert pipeline.model == str(base)
    assert pipeline.output_dir == root / "default-run"
    assert pipeline.suite == str(recipes / "suite.yaml")
    configs = pipeline.configs()
    assert list(configs) == ["mntp", "simcse"]
    assert configs["mntp"].model == str(base) and configs["mntp"].output_dir == str(root / "default-run" / "mntp")
    assert configs["simcse"].model == str(root / "default-run" / "mntp")
    # A subset starts from the base model while the chain's previous stage is not finished there
    # (the run test checks that it continues a finished one); unknown stages list the folder's.
    assert Pipeline(recipes, stages=("simcse",)).configs()["simcse"].model == str(base)
    with pytest.raises(Decoder2VecError, match=r"'supervised'.*mntp, simcse"):
        Pipeline(recipes, stages=("supervised",))
    # Overrides reach every stage and are validated there.
    assert {c.max_steps for c in Pipeline(recipes, overrides={"max_steps": 1}).configs().values()} == {1}
    with pytest.raises(Decoder2VecError, match="max_steps"):
        Pipeline(recipes, overrides={"max_steps": 0}).configs()


def test_run_trains_evaluates_each_row_writes_results_and_resumes(chain, monkeypatch):
    root, base, recipes = chain
    out = root / "run"
    pipeline = Pipeline(recipes, output_dir=out, baselines={"causal": {"bidirectional": False}, "base": {}})
    done = pipeline.run()

    assert done["final"] == out / "simcse"
    assert list(done["rows"]) == ["causal", "base", "mntp", "simcse"]
    for row, result in done["rows"].items():
        assert list(result["tasks"]) == ["stsb-en"]
        assert (out / "results" / "recipes-suite" / f"{row}.json").is_file()
    for stage in ("mntp", "simcse"):
        saved = json.loads((out / stage / "decoder2vec_config.json").read_text())
        assert saved["stages"][-1]["stage"] == stage
    assert [s["stage"] for s in json.loads((out / "simcse" / "decoder2vec_config.json").read_text())["stages"]] == [
        "mntp", "simcse"]
    summary = json.loads((out / "results.json").read_text())
    assert list(summary) == ["causal", "base", "mntp", "simcse"]
    assert summary["simcse"]["model"] == str(out / "simcse") and summary["base"]["model"] == str(base)
    assert summary["mntp"]["average"] == done["rows"]["mntp"]["averages"]["all"]
    assert summary["mntp"]["tasks"] == {"stsb-en": done["rows"]["mntp"]["tasks"]["stsb-en"]["main_score"]}
    # The causal baseline and the bidirectional base are different encoders of the same weights.
    assert summary["causal"]["average"] != summary["base"]["average"]

    # Resuming: nothing is trained or evaluated again, and the rows read back are the same.
    monkeypatch.setattr("decoder2vec.training.train", lambda *a, **k: pytest.fail("trained a finished stage"))
    monkeypatch.setattr("decoder2vec.evaluation.evaluate", lambda *a, **k: pytest.fail("evaluated twice"))
    again = Pipeline(recipes, output_dir=out, baselines={"causal": {"bidirectional": False}, "base": {}}).run()
    assert again["rows"] == done["rows"] and again["final"] == done["final"]

    # A subset continues the finished stage before it.
    assert Pipeline(recipes, output_dir=out, stages=("simcse",)).configs()["simcse"].model == str(out / "mntp")

    # A finished stage whose recipe changed is not silently skipped: training names the keys.
    monkeypatch.undo()
    with pytest.raises(Decoder2VecError, match=r"mntp: .*different recipe.*max_steps: 2 -> 3"):
        Pipeline(recipes, output_dir=out, overrides={"max_steps": 3}, evaluate=False).run()


def test_cli_run_dry_run_validates_without_training(chain, capsys, monkeypatch):
    root, base, recipes = chain
    monkeypatch.setattr("decoder2vec.training.train", lambda *a, **k: pytest.fail("a dry run trained"))
    parser = argparse.ArgumentParser()
    run_verb.add_arguments(parser)
    run_verb.run(parser.parse_args([str(recipes), "--dry-run", "--output-dir", str(root / "x"), "--set", "max_steps=3"]))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[0] == "mntp" and lines[0].endswith(f"{base} -> {root / 'x' / 'mntp'}")
    assert lines[1].split()[0] == "simcse" and lines[1].endswith(f"{root / 'x' / 'mntp'} -> {root / 'x' / 'simcse'}")
    with pytest.raises(Decoder2VecError, match="KEY=VALUE"):
        run_verb.parse_overrides(["max_steps"])
    assert run_verb.parse_overrides(["max_steps=3", "data=[a, b]"]) == {"max_steps": 3, "data": ["a", "b"]}


@pytest.mark.parametrize("name", packaged_recipe_names())
def test_cli_run_dry_run_validates_every_packaged_recipe_folder(name, capsys, monkeypatch, tmp_path):
    monkeypatch.setattr("decoder2vec.training.train", lambda *a, **k: pytest.fail("a dry run trained"))
    parser = argparse.ArgumentParser()
    run_verb.add_arguments(parser)
    run_verb.run(parser.parse_args([name, "--dry-run", "--output-dir", str(tmp_path)]))
    lines = capsys.readouterr().out.splitlines()
    stages = list(stage_recipes(recipe_folder(name)))
    assert [line.split()[0] for line in lines[:-1]] == stages
    assert [line.split()[-1] for line in lines[:-1]] == [str(tmp_path / s) for s in stages]
    if "distill" in name.split("/"):
        assert stages == ["distill"]


@pytest.mark.parametrize("recipe, quick, recipes, folder, output_dir", [
    ("distill", False, None, "smollm2-135m/distill", "runs/demo-distill"),
    ("distill", True, None, "smollm2-135m/distill/quick", "runs/demo-distill-quick"),
    ("paper", False, None, "smollm2-135m", "runs/demo"),
    ("paper", True, None, "smollm2-135m/quick", "runs/demo-quick"),
    # --recipes overrides --recipe, and names its own runs folder
    ("paper", False, "gemma3-270m-da/distill", "gemma3-270m-da/distill", "runs/demo-gemma3-270m-da-distill"),
    ("distill", True, "gemma3-270m-da", "gemma3-270m-da/quick", "runs/demo-gemma3-270m-da-quick"),
])
def test_demo_recipe_picks_the_folder_and_output_dir(recipe, quick, recipes, folder, output_dir):
    from pathlib import Path

    from decoder2vec.pipeline.demo import Demo

    demo = Demo(recipe=recipe, quick=quick, recipes=recipes)
    assert demo.folder() == folder and recipe_folder(folder).is_dir()
    assert demo.default_output_dir() == Path(output_dir)


def test_demo_recipe_default_bad_value_and_cli(tmp_path, monkeypatch, capsys):
    from pathlib import Path

    from decoder2vec.cli import demo as demo_verb
    from decoder2vec.cli import main
    from decoder2vec.data.languages import RECIPES as ADAPT_RECIPES
    from decoder2vec.pipeline.demo import DEFAULT_RECIPE, RECIPES, Demo

    # One set of recipe names: each demo recipe is an adapt recipe of the same name (adapt also has
    # distill-embeddinggemma, measured on Danish and German only).
    assert set(RECIPES) <= set(ADAPT_RECIPES) and set(ADAPT_RECIPES) - set(RECIPES) == {"distill-embeddinggemma"}
    assert Demo().recipe == DEFAULT_RECIPE and Demo().folder() == RECIPES[DEFAULT_RECIPE]  # folders: test above
    with pytest.raises(Decoder2VecError, match=r"^unknown recipe 'llm2vec'; choose one of: distill, paper$"):
        Demo(recipe="llm2vec")
    with pytest.raises(SystemExit):
        main(["demo", "--recipe", "llm2vec"])
    assert "argument --recipe: invalid choice: 'llm2vec' (choose from 'distill', 'paper')" in capsys.readouterr().err
    # A recipe folder by path names its runs folder after itself.
    (tmp_path / "mine").mkdir()
    assert Demo(recipes=str(tmp_path / "mine")).default_output_dir() == Path("runs/demo-mine")
    # The flags reach Demo's keywords of the same names.
    made = []
    monkeypatch.setattr(demo_verb, "Demo", lambda **kwargs: made.append(kwargs) or argparse.Namespace(run=lambda: None))
    main(["demo", "--recipe", "paper", "--quick"])
    main(["demo", "--recipes", "gemma3-270m-da/distill"])
    assert [(m["recipe"], m["quick"], m["recipes"]) for m in made] == [
        ("paper", True, None), (DEFAULT_RECIPE, False, "gemma3-270m-da/distill")]


def _recorders(monkeypatch):
    """training.train and evaluation.evaluate replaced by recorders: (trained, evaluated) lists."""
    trained, evaluated = [], []

    def fake_train(recipe, *, model, output_dir, **overrides):
        trained.append((str(recipe), model, output_dir))
        return output_dir

    def fake_evaluate(model, *, suite, name, output, **load_kwargs):
        evaluated.append((model, name, load_kwargs))
        score = 0.1 * len(evaluated)
        result = {"model": name, "suite": suite, "seconds": 1.0, "averages": {"en": score, "all": score},
                  "tasks": {"stsb-en": {"type": "sts", "language": "en", "metric": "spearman", "main_score": score,
                                        "scores": {"spearman": score}, "sizes": {}, "seconds": 1.0}}}
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result))
        return result

    monkeypatch.setattr("decoder2vec.training.train", fake_train)
    monkeypatch.setattr("decoder2vec.evaluation.evaluate", fake_evaluate)
    return trained, evaluated


def test_demo_is_the_pipeline_with_baselines_and_a_reference(tmp_path, monkeypatch):
    """The demo's rows, calls and files (the paper recipe), with training and evaluation replaced by recorders."""
    from decoder2vec.pipeline.demo import BASELINES, Demo

    trained, evaluated = _recorders(monkeypatch)
    monkeypatch.setattr("decoder2vec.folder.anchors.embeddinggemma_folder", lambda: tmp_path / "not-fetched")
    out = tmp_path / "demo"
    summary = Demo(recipe="paper", quick=True, output_dir=out).run()

    quick = packaged_recipes() / "smollm2-135m" / "quick"
    assert trained == [(str(quick / "mntp.yaml"), "smollm2-135m", str(out / "mntp")),
                       (str(quick / "simcse.yaml"), str(out / "mntp"), str(out / "simcse")),
                       (str(quick / "supervised.yaml"), str(out / "simcse"), str(out / "supervised"))]
    assert evaluated == [("smollm2-135m", name, kwargs) for name, kwargs in BASELINES.items()] + [
        (str(out / s), s, {}) for s in ("mntp", "simcse", "supervised")] + [
        ("minilm", "all-MiniLM-L6-v2", {}), ("multilingual-e5-small", "multilingual-e5-small", {})]
    assert list(summary["rows"]) == [*BASELINES, "mntp", "simcse", "supervised", "all-MiniLM-L6-v2",
                                     "multilingual-e5-small"]
    assert summary["suite"] == "quick" and summary["model"] == "smollm2-135m" and summary["quick"] is True
    assert json.loads((out / "demo-quick.json").read_text())["rows"] == summary["rows"]
    assert (out / "demo-quick.png").is_file()
    assert sorted(p.name for p in (out / "results" / "quick").iterdir()) == sorted(
        f"{row}.json" for row in summary["rows"])


def test_demo_distill_recipe_is_one_stage_between_the_baselines_and_the_reference(tmp_path, monkeypatch):
    from decoder2vec.pipeline.demo import BASELINES, Demo

    trained, evaluated = _recorders(monkeypatch)
    fetched = tmp_path / "embeddinggemma"  # after `make anchors`: its row too
    fetched.mkdir()
    (fetched / "modules.json").write_text("[]")
    monkeypatch.setattr("decoder2vec.folder.anchors.embeddinggemma_folder", lambda: fetched)
    out = tmp_path / "demo"
    summary = Demo(recipe="distill", quick=True, output_dir=out).run()

    recipe = packaged_recipes() / "smollm2-135m" / "distill" / "quick" / "distill.yaml"
    assert trained == [(str(recipe), "smollm2-135m", str(out / "distill"))]
    assert [name for _, name, _ in evaluated] == [*BASELINES, "distill", "all-MiniLM-L6-v2", "multilingual-e5-small",
                                                  "EmbeddingGemma-300M"]
    assert summary["suite"] == "quick" and summary["recipes"] == str(recipe.parent)


def test_demo_and_adapt_are_presets_of_the_one_runner_with_one_runs_folder_rule():
    """presets.PRESETS is the one table: demo and every language's adapt are rows of it, and the runs
    folder rule (the paper recipe keeps its old name) is written once, in Preset.output_dir."""
    from pathlib import Path

    from decoder2vec.data.languages import LANGUAGES
    from decoder2vec.pipeline import demo, languages
    from decoder2vec.pipeline.presets import PRESETS

    assert sorted(PRESETS) == ["adapt-da", "adapt-de", "demo"] and set(LANGUAGES) == {"da", "de"}
    assert demo.RECIPES is PRESETS["demo"].recipes and demo.BASELINES is PRESETS["demo"].baselines
    assert [PRESETS[name].output_dir(recipe, quick) for name, recipe, quick in [
        ("demo", "paper", False), ("demo", "distill", True), ("adapt-de", "paper", True),
        ("adapt-de", "distill-embeddinggemma", False)]] == [
        Path("runs/demo"), Path("runs/demo-distill-quick"), Path("runs/adapt-de-quick"),
        Path("runs/adapt-de-distill-embeddinggemma")]
    # A recipe folder of the demo's own named "paper" is a label, not the paper recipe: it keeps its name.
    assert PRESETS["demo"].output_dir(None, label="paper") == Path("runs/demo-paper")
    assert languages.default_output_dir("da", "paper", True) == PRESETS["adapt-da"].output_dir("paper", True)
    with pytest.raises(Decoder2VecError, match=r"^unknown recipe 'paper2'; choose one of: distill, paper$"):
        PRESETS["demo"].output_dir("paper2")
