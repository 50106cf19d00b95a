"""Flag = Python keyword = YAML key, for every verb (issue 14 point 6): each flag is named after
the keyword it sets, and that keyword exists in a function the verb declares (`KEYWORDS_OF`), or
the flag is one of the verb's declared `CLI_ONLY` flags."""

import argparse
import dataclasses
import importlib
import inspect

import pytest

from decoder2vec.cli import VERBS, build_parser
from decoder2vec.cli.train import recipe_path

PARSER = build_parser()
SUBPARSERS = next(a for a in PARSER._actions if isinstance(a, argparse._SubParsersAction)).choices


def keywords(module) -> set[str]:
    names = set()
    for target in getattr(module, "KEYWORDS_OF", ()):
        if dataclasses.is_dataclass(target):
            names |= {f.name for f in dataclasses.fields(target)}
        else:
            names |= set(inspect.signature(target).parameters)
    return names


def options(verb):
    return [a for a in SUBPARSERS[verb]._actions if a.option_strings and a.dest != "help"]


@pytest.mark.parametrize("verb", list(VERBS))
def test_every_flag_is_the_keyword_it_sets(verb):
    module = importlib.import_module(f"decoder2vec.cli.{VERBS[verb][0]}")
    assert hasattr(module, "KEYWORDS_OF"), f"cli/{VERBS[verb][0]}.py declares no KEYWORDS_OF"
    allowed = keywords(module) | set(getattr(module, "CLI_ONLY", {})) | {"overrides"}
    wrong = []
    for action in options(verb):
        spelled = {o[2:].replace("-", "_") for o in action.option_strings if o.startswith("--")}
        if action.dest not in spelled and action.dest != "overrides":
            wrong.append(f"{'/'.join(action.option_strings)} sets {action.dest!r}: the flag must be its name")
        elif action.dest not in allowed:
            wrong.append(f"--{action.dest.replace('_', '-')} is no keyword of {module.KEYWORDS_OF} nor in CLI_ONLY")
    assert not wrong, f"decoder2vec {verb}:\n" + "\n".join(wrong)


def test_set_is_the_one_key_value_flag():
    """--set KEY=VALUE sets recipe keys (train, run, adapt); nothing else uses the overrides dest."""
    for verb in VERBS:
        for action in options(verb):
            if action.dest == "overrides":
                assert action.option_strings == ["--set"], (verb, action.option_strings)


def test_the_check_can_fail():
    parser = argparse.ArgumentParser()
    parser.add_argument("--causal", dest="bidirectional", action="store_false")
    action = parser._actions[-1]
    assert action.dest not in {o[2:].replace("-", "_") for o in action.option_strings}


def test_packaged_recipe_names_resolve(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert recipe_path("smollm2-135m/mntp").endswith("recipes/smollm2-135m/mntp.yaml")
    (tmp_path / "mine.yaml").write_text("stage: mntp\n")
    assert recipe_path("mine.yaml") == "mine.yaml"
