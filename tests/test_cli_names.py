"""Flag = Python keyword = YAML key, for every verb (issue 14 point 6): each flag is named after
the keyword it sets, and that keyword exists in a function the verb declares (`KEYWORDS_OF`), or
the flag is one of the verb's declared `CLI_ONLY` flags."""

import argparse
import dataclasses
import importlib
import inspect

import pytest

from decoder2vec.cli import VERBS, Number, build_parser, flag_type, keyword_spec, main
from decoder2vec.encode_options import HINTS, EncodeOptions
from decoder2vec.cli.train import recipe_path

PARSER = build_parser()
SUBPARSERS = next(a for a in PARSER._actions if isinstance(a, argparse._SubParsersAction)).choices


def names_of(target) -> set[str]:
    if dataclasses.is_dataclass(target):
        return {f.name for f in dataclasses.fields(target)}
    return set(inspect.signature(target).parameters)


def keywords(module) -> set[str]:
    return set().union(*(names_of(target) for target in getattr(module, "KEYWORDS_OF", ())))


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


# ----------------------------------------------------------------- types and defaults (issue 24)
FIELDS = {f.name: f for f in dataclasses.fields(EncodeOptions)}


def flag_kind(action) -> type | None:
    """What a flag parses to: bool for --x/--no-x and store_true, else its type's target (`Number.kind`)."""
    if isinstance(action, (argparse.BooleanOptionalAction, argparse._StoreTrueAction)):
        return bool
    return getattr(action.type, "kind", action.type) or str


def typed_keywords(module) -> dict[str, set]:
    """keyword -> the scalar types its annotations give, over the verb's KEYWORDS_OF."""
    out = {}
    for target in module.KEYWORDS_OF:
        for name in names_of(target):
            _, hint, _ = keyword_spec(target, name)
            kind = flag_type(hint) if hint is not None else None
            if kind is not None:
                out.setdefault(name, set()).add(kind)
    return out


def type_and_default_errors(verb: str, module) -> list[str]:
    wrong = []
    kinds = typed_keywords(module)
    own_defaults = getattr(module, "OWN_DEFAULTS", {})
    for action in options(verb):
        flag = "/".join(action.option_strings)
        # A converter of its own (finetune's YAML-read --learning-rate) says its type nowhere: not checked.
        plain = action.type in (None, int, float, str) or isinstance(action.type, Number)
        if plain and action.dest in kinds and flag_kind(action) not in kinds[action.dest]:
            wrong.append(f"{flag} parses to {flag_kind(action).__name__}, its keyword is "
                         f"{' | '.join(sorted(k.__name__ for k in kinds[action.dest]))}")
        field = FIELDS.get(action.dest)
        if field is None:
            continue
        expected = flag_type(HINTS[field.name])
        if flag_kind(action) is not expected:
            wrong.append(f"{flag} parses to {flag_kind(action).__name__}, EncodeOptions.{field.name} is "
                         f"{expected.__name__}")
        if action.dest not in own_defaults and action.default != field.default:
            wrong.append(f"{flag} defaults to {action.default!r}, EncodeOptions.{field.name} to {field.default!r}")
        if field.metadata["choices"] is not None and tuple(action.choices or ()) != tuple(field.metadata["choices"]):
            wrong.append(f"{flag} offers {action.choices}, EncodeOptions.{field.name} {field.metadata['choices']}")
    return wrong


@pytest.mark.parametrize("verb", list(VERBS))
def test_flags_have_their_keywords_type_and_encode_options_defaults(verb):
    """Every flag parses to its keyword's annotated type (--max-length: int everywhere), and a flag
    named after an EncodeOptions field has the field's type, default and choices (or the verb says
    why its default differs, OWN_DEFAULTS)."""
    module = importlib.import_module(f"decoder2vec.cli.{VERBS[verb][0]}")
    wrong = type_and_default_errors(verb, module)
    assert not wrong, f"decoder2vec {verb}:\n" + "\n".join(wrong)


def test_every_encode_verb_has_the_encode_option_flags():
    """encode exposes every EncodeOptions flag field; evaluate and serve its batch_size; --max-length
    is an int in all three."""
    flagged = {f.name for f in dataclasses.fields(EncodeOptions) if f.metadata["flag"]}
    dests = {verb: {a.dest: a for a in options(verb)} for verb in ("encode", "evaluate", "serve")}
    assert flagged == {"instruction", "batch_size", "max_batch_tokens", "normalize_embeddings", "truncate_dim",
                       "precision", "on_empty", "unpadded"}
    assert flagged <= set(dests["encode"])
    for verb, actions in dests.items():
        assert flag_kind(actions["batch_size"]) is int and actions["batch_size"].default == 32, verb
        assert flag_kind(actions["max_length"]) is int and actions["max_length"].default is None, verb


def test_the_type_check_can_fail(monkeypatch):
    """A --max-length read as text (cli/encode.py had it so) or a --batch-size with another default
    is reported."""
    module = importlib.import_module("decoder2vec.cli.encode")
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-length", dest="max_length", default=None)
    parser.add_argument("--batch-size", dest="batch_size", type=int, default=16)
    monkeypatch.setitem(SUBPARSERS, "encode", parser)
    wrong = type_and_default_errors("encode", module)
    assert "--max-length parses to str, its keyword is int" in wrong
    assert "--batch-size defaults to 16, EncodeOptions.batch_size to 32" in wrong


def test_a_bad_number_is_one_line_naming_the_flag(capsys):
    for argv, message in [(["evaluate", "--max-length", "ten"], "--max-length must be an integer, got 'ten'"),
                          (["serve", "--batch-size", "0"], "--batch-size must be >= 1, got 0"),
                          (["encode", "--inputs", "a", "--output", "b.npy", "--max-batch-tokens", "1.5"],
                           "--max-batch-tokens must be an integer, got '1.5'")]:
        assert main(argv) == 2
        assert capsys.readouterr().err == f"decoder2vec {argv[0]}: error: {message}\n"
