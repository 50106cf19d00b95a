"""Issue 23, the training side: a resume never mixes two runs, bad values and bad training files
are one-line errors naming the problem, the final loss is always the real one, and the doc's
`finetune --task token` and `classification.predict` on a token classifier work. Tiny models only."""

from __future__ import annotations

import json
import os
import re

import pytest
import torch
import yaml
from transformers import AutoTokenizer, TrainerCallback

from decoder2vec import Decoder2VecError
from decoder2vec.classification import load_for_classification, predict
from decoder2vec.cli import main
from decoder2vec.training import train
from decoder2vec.training.config import make_config
from test_finetune import ROWS, TAGGED, keys as finetune_keys, write_jsonl
from test_training_support import FAST, SENTENCES, corpus_file, csv_rows, encoder_folder

from tiny import tiny_encoder


class StopAt(TrainerCallback):
    """Stops a run (as a kill would) at the end of `step`, after the checkpoints before it."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt


def simcse(tmp_path, **over) -> dict:
    return {"stage": "simcse", "model": str(encoder_folder(tmp_path)), "data": [str(corpus_file(tmp_path))],
            "min_words": 3, **FAST, "max_steps": 6, "save_steps": 2, "learning_rate": 3e-3,
            "output_dir": str(tmp_path / "out"), **over}


def stopped(recipe: dict, step: int = 3) -> None:
    with pytest.raises(KeyboardInterrupt):
        train(recipe, callbacks=[StopAt(step)])


def record(folder) -> dict:
    return json.loads((folder / "decoder2vec_config.json").read_text())["stages"][-1]


# ------------------------------------------------------------------ 1: resume never mixes two runs
def test_a_resume_with_a_changed_recipe_is_refused_naming_the_keys(tmp_path):
    stopped(simcse(tmp_path))
    assert (tmp_path / "out.checkpoints" / "checkpoint-2").is_dir()
    with pytest.raises(Decoder2VecError, match=r"\(step 2\) of a run trained with other settings "
                                               r"\(learning_rate: 0\.003 -> 0\.001\); resuming would mix") as info:
        train(simcse(tmp_path, learning_rate=1e-3))
    assert "\n" not in str(info.value)
    other = tmp_path / "other.txt"
    other.write_text(corpus_file(tmp_path).read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(Decoder2VecError, match=r"data: \[.*corpus\.txt'\] -> \[.*other\.txt'\]"):
        train(simcse(tmp_path, data=[str(other)]))
    with pytest.raises(Decoder2VecError, match=r"max_steps: 6 -> 5 \(max_steps may only grow\)"):
        train(simcse(tmp_path, max_steps=5))
    assert not (tmp_path / "out").exists()


def test_a_resume_on_a_data_file_whose_content_changed_is_refused(tmp_path):
    data = tmp_path / "mine.txt"
    data.write_text(corpus_file(tmp_path).read_text(encoding="utf-8"), encoding="utf-8")
    stopped(simcse(tmp_path, data=[str(data)]))
    data.write_text(data.read_text(encoding="utf-8") + "\nOne more sentence at the end of it.", encoding="utf-8")
    with pytest.raises(Decoder2VecError, match=r"data: .*mine\.txt changed since the checkpoints were written"):
        train(simcse(tmp_path, data=[str(data)]))


def test_a_resume_on_a_model_folder_replaced_at_the_same_path_is_refused(tmp_path):
    model = tmp_path / "model"
    tiny_encoder("llama", max_length=64).save_pretrained(model)
    stopped(simcse(tmp_path, model=str(model)))
    tiny_encoder("llama", max_length=32).save_pretrained(model)  # another model, same path
    with pytest.raises(Decoder2VecError, match=r"model: the files in .*model changed since the checkpoints"):
        train(simcse(tmp_path, model=str(model)))


def test_a_resume_may_train_longer_and_log_otherwise_and_records_both(tmp_path, capsys):
    stopped(simcse(tmp_path))
    folder = train(simcse(tmp_path, max_steps=8, logging_steps=2, save_steps=4))
    assert "resuming at step 2 with logging_steps: 1 -> 2; max_steps: 6 -> 8; save_steps: 2 -> 4" in capsys.readouterr().out
    done = record(folder)
    assert done["steps"] == 8 and done["hyperparameters"]["max_steps"] == 8
    assert done["resumed"] == [{"at_step": 2, "changed": {"logging_steps": [1, 2], "max_steps": [6, 8],
                                                           "save_steps": [2, 4]}}]


def test_a_finetune_resume_with_the_labels_in_another_order_is_refused(tmp_path):
    recipe = finetune_keys(tmp_path, max_steps=6, save_steps=2, logging_steps=1)
    stopped({**recipe, "labels": ["animal", "country"]})
    with pytest.raises(Decoder2VecError, match=r"labels: \['animal', 'country'\] -> \['country', 'animal'\]"):
        train({**recipe, "labels": ["country", "animal"]})
    # labels: null derives the same order (sorted): the run resumes and keeps its ids.
    folder = train(recipe)
    config = json.loads((folder / "config.json").read_text())
    assert config["id2label"] == {"0": "animal", "1": "country"}
    assert record(folder)["resumed"] == [{"at_step": 2}]


def test_a_distill_resume_with_another_teacher_is_refused_before_the_teacher_runs(tmp_path):
    teacher = encoder_folder(tmp_path)
    other = tmp_path / "other-teacher"
    tiny_encoder("llama").save_pretrained(other)
    recipe = {"stage": "distill", "model": str(encoder_folder(tmp_path)), "data": [str(corpus_file(tmp_path))],
              "teacher": str(teacher), **FAST, "max_steps": 6, "save_steps": 2, "output_dir": str(tmp_path / "out")}
    stopped(recipe)
    cached = tmp_path / "out.checkpoints" / "teacher_vectors.json"
    assert json.loads(cached.read_text())["teacher"] == str(teacher)
    with pytest.raises(Decoder2VecError, match=rf"teacher: '{teacher}' -> '{other}'"):
        train({**recipe, "teacher": str(other)})
    assert json.loads(cached.read_text())["teacher"] == str(teacher)  # refused before the new teacher ran


# ------------------------------------------------------------------ 18, 19: wrong types are one-line errors
@pytest.mark.parametrize("value, message", [
    ("learning_rate=[1,2]", r"learning_rate must be a number, got \[1, 2\] \(list\)$"),
    ("max_steps=ten", r"max_steps must be an integer, got 'ten' \(str\)$"),
    ('training_args={"bf16": "yes"}', r"training_args bf16 must be true or false, got 'yes' \(str\)$"),
])
def test_a_value_of_the_wrong_type_is_a_one_line_error_naming_key_value_and_type(tmp_path, capsys, value, message):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(simcse(tmp_path)))
    capsys.readouterr()
    assert main(["train", str(recipe), "--set", value]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert re.search(message, err), err


# transformers refuses bf16 on a machine without a bf16 GPU, and an unknown optimizer everywhere.
REFUSED = [({"optim": "sgd_nonesuch"}, "optim")]
if not torch.cuda.is_available():
    REFUSED.append(({"bf16": True}, "bf16"))


@pytest.mark.parametrize("training_args, key", REFUSED)
def test_training_args_transformers_refuses_are_one_line_errors_before_the_model_loads(tmp_path, training_args, key):
    recipe = simcse(tmp_path, training_args=training_args, model="nobody/no-such-model")
    with pytest.raises(Decoder2VecError, match=rf"^simcse: transformers' TrainingArguments refused the recipe "
                                               rf"\(training_args: {key}=") as info:
        train(recipe)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ 26: the final loss is the real one
def test_the_final_loss_is_the_last_steps_loss_when_max_steps_is_below_logging_steps(tmp_path, capsys):
    every = train(simcse(tmp_path, max_steps=3, logging_steps=1, output_dir=str(tmp_path / "every")))
    losses = [float(row["loss"]) for row in csv_rows(every / "logs" / "log.csv") if row.get("loss")]
    assert len(losses) == 3
    capsys.readouterr()
    rare = train(simcse(tmp_path, max_steps=3, logging_steps=10, output_dir=str(tmp_path / "rare")))
    assert "final loss None" not in capsys.readouterr().out
    # The Trainer logs the mean loss since its last log: here, of all three steps.
    assert record(rare)["final_loss"] == pytest.approx(sum(losses) / 3, abs=2e-4)
    # A last window shorter than logging_steps is logged too: its one step.
    tail = train(simcse(tmp_path, max_steps=3, logging_steps=2, output_dir=str(tmp_path / "tail")))
    assert record(tail)["final_loss"] == pytest.approx(losses[2], abs=2e-4)


# ------------------------------------------------------------------ 17, 23: bad training files are named
def bad_utf8(path):
    path.write_bytes(b"The first line is fine and long enough.\nSo is the second line of this file.\n"
                     b"The third has caf\xe9 in Latin-1.\n")
    return path


def test_training_data_that_is_not_utf8_is_a_one_line_error_naming_file_and_line(tmp_path):
    with pytest.raises(Decoder2VecError, match=r"bad\.txt:3: not UTF-8 \(byte 0xe9 at column 18\); convert") as info:
        train(simcse(tmp_path, data=[str(bad_utf8(tmp_path / "bad.txt"))]))
    assert "\n" not in str(info.value)
    labelled = tmp_path / "bad.jsonl"
    labelled.write_bytes(b'{"text": "a fox", "label": "animal"}\n{"text": "caf\xe9", "label": "country"}\n')
    with pytest.raises(Decoder2VecError, match=r"bad\.jsonl:2: not UTF-8 \(byte 0xe9 at column 14\)"):
        train(finetune_keys(tmp_path, data=[str(labelled)]))


def mine_args(tmp_path, pairs, *more) -> list[str]:
    model = tmp_path / "enc"
    if not model.exists():
        tiny_encoder("llama").save_pretrained(model)
    return ["mine", str(pairs), "--model", str(model), "--output", str(tmp_path / "mined.jsonl"), *more]


def pair_file(tmp_path, rows=None):
    rows = rows or [{"query": s[:20], "positive": s} for s in SENTENCES[:4]]
    return write_jsonl(tmp_path / "pairs.jsonl", rows)


def test_mine_corpus_that_is_not_utf8_is_a_one_line_error(tmp_path, capsys):
    args = mine_args(tmp_path, pair_file(tmp_path), "--corpus", str(bad_utf8(tmp_path / "more.txt")))
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()  # datasets' progress bars, then the error
    assert err.splitlines()[-1].startswith("decoder2vec mine: error: ") and "Traceback" not in err
    assert err.endswith("more.txt:3: not UTF-8 (byte 0xe9 at column 18); convert the file, e.g. iconv -f latin1 -t utf-8")
    assert not (tmp_path / "mined.jsonl").exists()


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_a_directory_or_fifo_as_training_data_says_what_it_is(tmp_path, capsys, kind):
    for name in ("corpus-dir.txt", "rows.jsonl"):
        path = tmp_path / name
        path.mkdir() if kind == "directory" else os.mkfifo(path)
    said = "is a directory, not a file" if kind == "directory" else "is not a regular file (a FIFO"
    with pytest.raises(Decoder2VecError, match=rf"^data file .*corpus-dir\.txt {re.escape(said)}"):
        train(simcse(tmp_path, data=[str(tmp_path / "corpus-dir.txt")]))
    with pytest.raises(Decoder2VecError, match=rf"^finetune data file .*rows\.jsonl {re.escape(said)}"):
        train(finetune_keys(tmp_path, data=[str(tmp_path / "rows.jsonl")]))
    args = mine_args(tmp_path, pair_file(tmp_path), "--corpus", str(tmp_path / "corpus-dir.txt"))
    capsys.readouterr()
    assert main(args) == 2
    assert said in capsys.readouterr().err
    with pytest.raises(Decoder2VecError, match="data file not found: .*nothing.txt"):  # still said when missing
        train(simcse(tmp_path, data=[str(tmp_path / "nothing.txt")]))


# ------------------------------------------------------------------ 25: mine keeps every pair or refuses
def test_mine_refuses_a_pair_without_a_positive_naming_its_line(tmp_path, capsys):
    rows = [{"query": "quick fox", "positive": SENTENCES[0]}, {"query": "no positive here"},
            {"query": "capital", "positive": SENTENCES[1]}]
    args = mine_args(tmp_path, pair_file(tmp_path, rows))
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("pairs.jsonl:2: no 'positive' value; every pair needs a query and a positive "
                        "(fix or remove the row)")
    assert not (tmp_path / "mined.jsonl").exists()
    # A CSV row is named by its line too, a blank line and a quoted line break counted.
    (tmp_path / "pairs.csv").write_text('query,positive\n"two\nlines",fine\n\n,no query\n', encoding="utf-8")
    with pytest.raises(Decoder2VecError, match=r"pairs\.csv:5: no 'query' value"):
        train({"stage": "supervised", "model": str(encoder_folder(tmp_path)), "data": [str(tmp_path / "pairs.csv")],
               **FAST, "output_dir": str(tmp_path / "out")})


# ------------------------------------------------------------------ 24, 22: finetune --task token, predict
def test_finetune_task_token_as_the_docs_write_it_and_predict_gives_each_word_its_label(tmp_path, capsys):
    data = write_jsonl(tmp_path / "tags.jsonl", TAGGED)
    k = finetune_keys(tmp_path)
    # docs/word-level.md: --task token with --text-column words --label-column tags
    assert main(["finetune", "--task", "token", "--model", k["model"], "--data", str(data), "--text-column", "words",
                 "--label-column", "tags", "--output-dir", str(tmp_path / "tagger"), "--max-steps", "40",
                 "--per-device-train-batch-size", "8", "--learning-rate", "5e-3", "--set", "report_to=none",
                 "--set", "lora_r=8", "--set", "lora_dropout=0.0", "--set", "warmup_steps=0"]) == 0
    folder = tmp_path / "tagger"
    assert record(folder)["hyperparameters"]["task"] == "token"
    model = load_for_classification(folder, "token")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    # Trained to every word right (tests/test_finetune.py): predict gives each word its tag.
    assert predict(model, tokenizer, [row["words"] for row in TAGGED]) == [row["tags"] for row in TAGGED]
    assert predict(model, tokenizer, ["the  quick fox", "Paris"], batch_size=1) == [["O", "O", "A"], ["P"]]
    with pytest.raises(Decoder2VecError, match=r"texts\[0\]: word 2 \('fox'\) has no token within max_length=3"):
        predict(model, tokenizer, ["the quick fox"], max_length=3)
    # A sequence classifier still gives one name per text.
    sequence = train(finetune_keys(tmp_path, max_steps=2, output_dir=str(tmp_path / "seq")))
    names = predict(load_for_classification(sequence), AutoTokenizer.from_pretrained(sequence), [ROWS[0]["text"]])
    assert len(names) == 1 and names[0] in ("animal", "country")
