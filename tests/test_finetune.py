"""The finetune stage (issue 18): a classification head trained on a labelled file, on the one
training engine (LoRA with the head in full, or every weight), written as a folder that
load_for_classification and transformers' Auto class load with the same predictions, and with
bidirectional attention inside the classifier on every tiny family."""

import json

import pytest
import torch
from safetensors import safe_open
from tiny import FAMILIES, tiny_encoder
from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback

from decoder2vec import Decoder2VecError, Encoder
from decoder2vec.classification import load_for_classification, predict
from decoder2vec.cli import main
from decoder2vec.training import train
from decoder2vec.training.finetune import label_order, read_labelled, token_labels, word_spans

# Separable by vocabulary: every "animal" text is made of animal words, every "country" text of
# place words (tests/tiny.py's tokenizer knows them all).
ANIMALS = ["The quick brown fox", "the lazy dog", "brown fox jumps", "quick dog jumps over", "the fox and the dog",
           "lazy brown dog", "a fox", "the quick dog"]
COUNTRIES = ["Paris is the capital of France", "Berlin the capital of Germany", "Copenhagen of Denmark",
             "France and Germany", "capital of Denmark", "Berlin and Paris", "Germany", "the capital Copenhagen"]
ROWS = [{"text": t, "label": "animal"} for t in ANIMALS] + [{"text": t, "label": "country"} for t in COUNTRIES]
IDS = torch.tensor([[5, 6, 7, 8, 9, 10]])


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def keys(tmp_path, family="llama", **over):
    encoder = tmp_path / f"encoder-{family}"
    if not encoder.exists():
        tiny_encoder(family).save_pretrained(encoder)
    values = dict(stage="finetune", model=str(encoder), data=[str(write_jsonl(tmp_path / "train.jsonl", ROWS))],
                  output_dir=str(tmp_path / "out"), max_steps=30, per_device_train_batch_size=8, learning_rate=5e-3,
                  warmup_steps=0, lora_r=8, lora_dropout=0.0, logging_steps=10, save_steps=10, report_to=[])
    return {**values, **over}


class Logits(TrainerCallback):
    """The trained (unmerged, in-memory) model's logits on a fixed batch at the end of training."""

    def __init__(self, batch):
        self.batch, self.logits = batch, None

    def on_train_end(self, args, state, control, model=None, **kwargs):
        model.eval()
        with torch.no_grad():
            self.logits = model(**{k: v.to(model.device) for k, v in self.batch.items()}).logits.cpu()


def fixed_batch():
    ids = torch.tensor([[5, 6, 7, 8, 9, 10], [12, 13, 14, 0, 0, 0]])
    return {"input_ids": ids, "attention_mask": (ids != 0).long()}


@pytest.mark.parametrize("full", [False, True], ids=["lora", "full"])
def test_finetune_learns_a_separable_set_and_predicts_the_same_after_save_and_load(tmp_path, full):
    spy = Logits(fixed_batch())
    folder = train(keys(tmp_path, full=full), callbacks=[spy])
    model = load_for_classification(folder)
    assert model.config.id2label == {0: "animal", 1: "country"}
    tokenizer = AutoTokenizer.from_pretrained(folder)
    # Training accuracy on a separable set: every row right.
    assert predict(model, tokenizer, [r["text"] for r in ROWS]) == [r["label"] for r in ROWS]
    with torch.no_grad():
        loaded = model(**fixed_batch()).logits
        auto = AutoModelForSequenceClassification.from_pretrained(folder).eval()(**fixed_batch()).logits
    # The trained model in memory (LoRA unmerged) = the merged, saved, reloaded one = transformers' own load.
    torch.testing.assert_close(loaded, spy.logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(auto, spy.logits, rtol=0, atol=1e-5)
    # The folder is an Encoder folder too: its body is the fine-tuned classifier's.
    body = getattr(model, model.base_model_prefix)
    with torch.no_grad():
        torch.testing.assert_close(Encoder.from_pretrained(folder).model(input_ids=IDS).last_hidden_state,
                                   body(input_ids=IDS).last_hidden_state, rtol=0, atol=1e-5)
    record = json.loads((folder / "decoder2vec_config.json").read_text())["stages"][-1]
    assert record["stage"] == "finetune" and record["steps"] == 30 and record["hyperparameters"]["full"] is full


@pytest.mark.parametrize("full", [False, True], ids=["lora", "full"])
def test_a_killed_run_resumes_to_the_same_classifier(tmp_path, full):
    """Checkpoints carry the head (LoRA: peft's modules_to_save; full: every weight)."""
    straight = train(keys(tmp_path, full=full, max_steps=20, output_dir=str(tmp_path / "straight")))

    class Kill(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 15:
                raise KeyboardInterrupt

    killed = keys(tmp_path, full=full, max_steps=20, output_dir=str(tmp_path / "killed"))
    with pytest.raises(KeyboardInterrupt):
        train(killed, callbacks=[Kill()])
    checkpoint = tmp_path / "killed.checkpoints" / "checkpoint-10"
    assert (checkpoint / "model.safetensors").is_file() is full
    with safe_open(checkpoint / "adapter_model.safetensors", "pt") as adapter:
        assert any(".score." in k for k in adapter.keys()) is not full  # LoRA: the trained head is in the adapter
    resumed = train(killed)
    with torch.no_grad():
        a = load_for_classification(straight)(**fixed_batch()).logits
        b = load_for_classification(resumed)(**fixed_batch()).logits
    torch.testing.assert_close(b, a, rtol=0, atol=1e-5)


def sees_the_last_token(model) -> bool:
    def first(ids):
        with torch.no_grad():
            return model(input_ids=ids, output_hidden_states=True).hidden_states[-1][0, 0]
    changed = IDS.clone()
    changed[0, -1] = 11
    return not torch.allclose(first(IDS), first(changed))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_finetuned_classifier_is_bidirectional_on_every_family(tmp_path, family):
    folder = train(keys(tmp_path, family, max_steps=1, per_device_train_batch_size=4, save_steps=1))
    model = load_for_classification(folder).eval()
    assert model.config.num_labels == 2 and model.config.is_causal is False
    assert sees_the_last_token(model)
    # The check can fail: the same folder loaded causal does not see the last token at position 0.
    assert not sees_the_last_token(load_for_classification(folder, bidirectional=False).eval())


@pytest.mark.parametrize("content, message", [
    ('{"text": "a fox", "label": "animal"}\n{"text": "Paris"}\n', r"bad\.jsonl:2: label column 'label' must be"),
    ('{"text": "a fox", "label": "animal"}\n\n{"text": "Paris", "label": "country"\n', r"bad\.jsonl:3: not valid JSON"),
    ('{"text": "", "label": "animal"}\n', r"bad\.jsonl:1: an empty 'text' value"),
    ('["a fox", "animal"]\n', r"bad\.jsonl:1: expected a JSON object"),
    ('{"text": "a fox", "label": true}\n', r"bad\.jsonl:1: label column 'label' must be a name or an integer"),
])
def test_a_bad_label_file_is_a_one_line_error_naming_file_and_line(tmp_path, content, message):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content, encoding="utf-8")
    with pytest.raises(Decoder2VecError, match=message) as info:
        train(keys(tmp_path, data=[str(bad)]))
    assert "\n" not in str(info.value)


def test_csv_files_and_label_errors(tmp_path):
    good = tmp_path / "rows.csv"
    good.write_text('text,label\n"a fox, brown",2\nParis,10\nBerlin,2\n', encoding="utf-8")
    assert read_labelled(good) == [("a fox, brown", "2", 2), ("Paris", "10", 3), ("Berlin", "2", 4)]
    assert label_order(["10", "2"]) == ["2", "10"]
    missing = tmp_path / "missing.csv"
    missing.write_text("sentence,label\nParis,1\n", encoding="utf-8")
    with pytest.raises(Decoder2VecError, match=r"missing\.csv:1: no 'text' column \(columns: sentence, label\)"):
        read_labelled(missing)
    with pytest.raises(Decoder2VecError, match=r"rows\.csv:3: label '10' is not in labels \(2, 3\)"):
        train(keys(tmp_path, data=[str(good)], labels=[2, 3]))
    one = write_jsonl(tmp_path / "one.jsonl", [{"text": "a fox", "label": "animal"}])
    with pytest.raises(Decoder2VecError, match="has one label \\('animal'\\); a classifier needs at least two"):
        train(keys(tmp_path, data=[str(one)]))
    with pytest.raises(Decoder2VecError, match=r"must be a \.jsonl or \.csv file"):
        train(keys(tmp_path, data=[str(tmp_path / "rows.txt")]))


def test_the_cli_verb_takes_flags(tmp_path, capsys):
    k = keys(tmp_path, max_steps=2)
    code = main(["finetune", "--model", k["model"], "--data", *k["data"], "--output-dir", str(tmp_path / "cli"),
                 "--max-steps", "2", "--per-device-train-batch-size", "4", "--set", "report_to=none"])
    assert code == 0
    assert capsys.readouterr().out.strip().endswith("cli")
    assert load_for_classification(tmp_path / "cli").config.label2id == {"animal": 0, "country": 1}
    assert main(["finetune", "--model", k["model"], "--output-dir", str(tmp_path / "x")]) == 2
    assert "give a recipe, or --data FILE" in capsys.readouterr().err


# Token classification: each word tagged A (animal word), P (place word) or O.
TAGS = {"fox": "A", "dog": "A", "Paris": "P", "Berlin": "P", "France": "P", "Germany": "P", "Denmark": "P",
        "Copenhagen": "P"}
TAGGED = [{"words": t.split(), "tags": [TAGS.get(w, "O") for w in t.split()]} for t in ANIMALS + COUNTRIES]


def test_token_labels_go_to_the_first_token_of_each_word():
    text, spans = word_spans(["Copenhagen", "is", "big"])
    assert (text, spans) == ("Copenhagen is big", [(0, 10), (11, 13), (14, 17)])
    # BOS (0, 0), "Copen" "hagen", " is" with its space, a whitespace-only token, "big"
    offsets = [(0, 0), (0, 5), (5, 10), (10, 13), (13, 14), (14, 17)]
    assert token_labels(offsets, spans, [7, 8, 9]) == [-100, 7, -100, 8, -100, 9]


@pytest.mark.parametrize("family", ["llama", "opt"])  # opt: transformers has no token class (generic head)
def test_token_finetuning_learns_word_tags(tmp_path, family):
    data = write_jsonl(tmp_path / "tags.jsonl", TAGGED)
    folder = train(keys(tmp_path, family, task="token", data=[str(data)], text_column="words", label_column="tags",
                        max_steps=40))
    model = load_for_classification(folder, "token").eval()
    assert model.config.id2label == {0: "A", 1: "O", 2: "P"}
    assert sees_the_last_token_at_position_0(model)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    right = total = 0
    for row in TAGGED:
        text, spans = word_spans(row["words"])
        enc = tokenizer(text, return_offsets_mapping=True)
        gold = token_labels(enc["offset_mapping"], spans, [model.config.label2id[t] for t in row["tags"]])
        with torch.no_grad():
            guess = model(input_ids=torch.tensor([enc["input_ids"]])).logits[0].argmax(-1).tolist()
        pairs = [(g, p) for g, p in zip(gold, guess) if g != -100]
        right, total = right + sum(g == p for g, p in pairs), total + len(pairs)
    assert total == sum(len(r["words"]) for r in TAGGED)  # every word scored once
    assert right == total  # training accuracy on a separable set: every word right


def sees_the_last_token_at_position_0(model) -> bool:
    changed = IDS.clone()
    changed[0, -1] = 11
    with torch.no_grad():
        return not torch.allclose(model(input_ids=IDS).logits[0, 0], model(input_ids=changed).logits[0, 0])


def test_token_rows_are_checked(tmp_path):
    bad = write_jsonl(tmp_path / "tags.jsonl", [TAGGED[0], {"words": ["a", "fox"], "tags": ["O"]}])
    with pytest.raises(Decoder2VecError, match=r"tags\.jsonl:2: 'tags' must be a list of 2 labels"):
        train(keys(tmp_path, task="token", data=[str(bad)], text_column="words", label_column="tags"))
    (tmp_path / "tags.csv").write_text("words,tags\nfox,A\n", encoding="utf-8")
    with pytest.raises(Decoder2VecError, match=r"tags\.csv: token classification reads \.jsonl rows"):
        read_labelled(tmp_path / "tags.csv", task="token")
