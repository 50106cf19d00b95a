"""The finetune stage: a classification head trained on a labelled file, on the one engine.

    stage: finetune
    model: runs/demo/supervised        # any model decoder2vec loads; attention as the folder says
    data: [train.jsonl]                # .jsonl or .csv rows with a text and a label column
    output_dir: runs/topics

The model is `classification.load_for_classification(model, task)` (bidirectional unless the
folder says causal). With LoRA (the default) the adapter trains the decoder layers and the head is
trained in full (peft's modules_to_save, so checkpoints and resume carry it); `full: true` trains
every weight. Labels are names: every label in the data, sorted, unless `labels` lists them; the
output's config.json has them as id2label. task "token": .jsonl rows of a list of words and a list
of their labels; each word's label is trained on its first token.

The output is a transformers classifier folder that is also an Encoder folder (the engine writes
it like every stage, atomically): `load_for_classification(output_dir)`,
`AutoModelForSequenceClassification.from_pretrained(output_dir)` (families transformers has a
class for) and `classification.predict` give its predictions; `Encoder.from_pretrained(output_dir)`
embeds with the fine-tuned body.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import torch
from peft.utils.other import set_additional_trainable_modules
from safetensors.torch import save_model
from transformers import set_seed
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..model.bidirectional import _configs, is_bidirectional
from ..classification import load_for_classification
from ..data.corpora import check_data_file, not_utf8_error
from ..errors import Decoder2VecError, choices_error
from ..folder.config import EncoderConfig, read_config
from ..model.loading import DEFAULT_MODEL, default_device, default_dtype, load_tokenizer, parse_dtype, resolve_model
from .config import FinetuneConfig
from .stage import Stage, check_enough

TASKS = ("sequence", "token")
IGNORED = -100  # transformers' loss skips this label: padding, special tokens, later pieces of a word
FORMATS = (".jsonl", ".csv")


def read_labelled(path: str | Path, text_column: str = "text", label_column: str = "label",
                  task: str = "sequence") -> list[tuple]:
    """(text, label name, line number) of every row of a .jsonl or .csv file; task "token":
    (words, their label names, line number) of every .jsonl row, whose text column is a list of
    words and label column a list of as many labels. A row without a text or a label is an error
    naming the file and line, never skipped."""
    path = Path(path)
    if path.suffix not in FORMATS:
        raise Decoder2VecError(f"finetune data {path} must be a {' or '.join(FORMATS)} file of labelled rows")
    check_data_file(path, "finetune data file")
    try:
        return _read_labelled(path, text_column, label_column, task)
    except UnicodeDecodeError:
        raise (not_utf8_error(path) or Decoder2VecError(f"{path}: not UTF-8")) from None


def _read_labelled(path: Path, text_column: str, label_column: str, task: str) -> list[tuple]:
    if task == "token":
        if path.suffix != ".jsonl":
            raise Decoder2VecError(f"finetune data {path}: token classification reads .jsonl rows (a list of words "
                                   "and a list of labels)")
        with open(path, encoding="utf-8") as f:
            rows = [_tagged(path, number, _json_row(path, number, line), text_column, label_column)
                    for number, line in enumerate(f, 1) if line.strip()]
        if not rows:
            raise Decoder2VecError(f"finetune data {path} has no rows")
        return rows
    rows = []
    with open(path, encoding="utf-8", newline="") as f:
        if path.suffix == ".csv":
            reader = csv.DictReader(f)
            missing = [c for c in (text_column, label_column) if c not in (reader.fieldnames or [])]
            if missing:
                raise Decoder2VecError(f"{path}:1: no {missing[0]!r} column (columns: {', '.join(reader.fieldnames or [])})")
            lines = ((reader.line_num, row) for row in reader)
        else:
            lines = ((number, _json_row(path, number, line)) for number, line in enumerate(f, 1) if line.strip())
        for number, row in lines:
            rows.append((_text(path, number, row, text_column), _label(path, number, row, label_column), number))
    if not rows:
        raise Decoder2VecError(f"finetune data {path} has no rows")
    return rows


def _json_row(path: Path, number: int, line: str) -> dict:
    try:
        row = json.loads(line)
    except ValueError as exc:
        raise Decoder2VecError(f"{path}:{number}: not valid JSON ({exc})") from None
    if not isinstance(row, dict):
        raise Decoder2VecError(f"{path}:{number}: expected a JSON object with text and label, got {type(row).__name__}")
    return row


def _text(path: Path, number: int, row: dict, column: str) -> str:
    text = row.get(column)
    if not isinstance(text, str) or not text.strip():
        what = "no" if text is None else "an empty" if isinstance(text, str) else f"a non-text ({type(text).__name__})"
        raise Decoder2VecError(f"{path}:{number}: {what} {column!r} value")
    return text


def _label(path: Path, number: int, row: dict, column: str) -> str:
    label = row.get(column)
    # A label is a name; a number is its name written as digits (0, 1, 2 -> "0", "1", "2").
    if isinstance(label, bool) or not isinstance(label, (str, int)) or str(label).strip() == "":
        raise Decoder2VecError(f"{path}:{number}: label column {column!r} must be a name or an integer, got {label!r}")
    return str(label).strip()


def _tagged(path: Path, number: int, row: dict, words_column: str, labels_column: str) -> tuple:
    words, labels = row.get(words_column), row.get(labels_column)
    if not isinstance(words, list) or not words or not all(isinstance(w, str) and w.strip() for w in words):
        raise Decoder2VecError(f"{path}:{number}: {words_column!r} must be a list of non-empty words, got {words!r}")
    if not isinstance(labels, list) or len(labels) != len(words):
        raise Decoder2VecError(f"{path}:{number}: {labels_column!r} must be a list of {len(words)} labels (one per "
                               f"word), got {labels!r}")
    return words, [_label(path, number, {labels_column: x}, labels_column) for x in labels], number


def word_spans(words: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """The words joined by single spaces, and each word's [start, end) characters in that text."""
    spans, start = [], 0
    for word in words:
        spans.append((start, start + len(word)))
        start += len(word) + 1
    return " ".join(words), spans


def token_labels(offsets, spans, labels: list[int]) -> list[int]:
    """Each token's label: its word's for the word's first token; IGNORED for the word's later
    tokens, special tokens (empty offsets) and whitespace-only tokens (no word under them)."""
    out, seen, word = [], set(), 0
    for start, end in offsets:
        while word < len(spans) and spans[word][1] <= start:
            word += 1
        inside = end > start and word < len(spans) and spans[word][0] < end
        out.append(labels[word] if inside and word not in seen else IGNORED)
        if inside:
            seen.add(word)
    return out


def label_order(names) -> list[str]:
    """Label names sorted, numerically when they all are integers (2 before 10)."""
    names = set(names)
    if all(n.lstrip("-").isdigit() for n in names):
        return sorted(names, key=int)
    return sorted(names)


class FinetuneStage(Stage):
    config_class = FinetuneConfig

    def load(self) -> None:
        cfg = self.config
        if cfg.task not in TASKS:
            raise choices_error("task", cfg.task, TASKS)
        # The file is read before the model: a bad row fails in a second, not after a load.
        self.rows = [(text, label, f"{source}:{number}") for source in cfg.data
                     for text, label, number in read_labelled(source, cfg.text_column, cfg.label_column, cfg.task)]
        self.label_names = self._labels()
        source = resolve_model(cfg.model if cfg.model is not None else DEFAULT_MODEL)
        dtype = parse_dtype(cfg.dtype) or default_dtype(default_device())
        set_seed(cfg.seed)  # the new head's initial weights: a run and its resumed run start alike
        self.net = load_for_classification(
            source, cfg.task, id2label=dict(enumerate(self.label_names)),
            label2id={name: i for i, name in enumerate(self.label_names)}, dtype=dtype)
        self.tokenizer = load_tokenizer(source)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        # transformers' sequence head reads the last token that is not config.pad_token_id.
        self.pad_id = self.net.config.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.tokenizer.pad_token_id
        self.encoder_config = read_config(source) or EncoderConfig(base_model=str(cfg.model or DEFAULT_MODEL))
        self.encoder_config.bidirectional = is_bidirectional(self.net)  # the Encoder saving it keeps it so
        # A training forward must not build a KV cache it never reads.
        self._use_cache = [(c, c.use_cache) for c in _configs(self.net.config) if hasattr(c, "use_cache")]
        for c, _ in self._use_cache:
            c.use_cache = False

    def _labels(self) -> list[str]:
        cfg = self.config
        found = label_order(name for _, label, _ in self.rows for name in _names(label))
        if cfg.labels is None:
            if len(found) < 2:
                raise Decoder2VecError(f"finetune: {', '.join(map(str, cfg.data))} has one label ({found[0]!r}); "
                                       "a classifier needs at least two")
            return found
        names = [str(n) for n in cfg.labels]
        if len(set(names)) != len(names) or len(names) < 2:
            raise Decoder2VecError(f"labels must be two or more distinct names, got {cfg.labels!r}")
        for _, label, where in self.rows:
            for name in _names(label):
                if name not in names:
                    raise Decoder2VecError(f"{where}: label {name!r} is not in labels ({', '.join(names)})")
        return names

    def resolved(self) -> dict:
        return {"labels": self.label_names}  # ids in this order: a resume with another order swaps them

    def attach(self, peft_model) -> None:
        if self.config.full:
            for name, parameter in peft_model.named_parameters():
                # The engine always adds a LoRA adapter; frozen at its zero init it changes nothing.
                parameter.requires_grad = "lora_" not in name
            _checkpoint_every_weight(peft_model)
            return
        # The head is new: it is trained in full, and peft keeps it in the adapter's checkpoints.
        head = [name for name, child in self.net.named_children()
                if name != self.net.base_model_prefix and any(True for _ in child.parameters())]
        config = peft_model.peft_config[peft_model.active_adapter]
        config.modules_to_save = head
        set_additional_trainable_modules(peft_model.base_model, config, peft_model.config, peft_model.active_adapter)

    def dataset(self) -> list:
        cfg = self.config
        ids = {name: i for i, name in enumerate(self.label_names)}
        rows = list(self.rows)
        random.Random(cfg.seed).shuffle(rows)
        held = min(cfg.eval_examples, len(rows) // 5)  # never more than a fifth of a small set
        if cfg.data_limit is not None:
            rows = rows[:held + cfg.data_limit]
        if cfg.task == "token":
            items = [self._tagged_item(words, [ids[name] for name in labels]) for words, labels, _ in rows]
        else:
            texts = [text for text, _, _ in rows]
            encoded = self.tokenizer(texts, truncation=True, max_length=cfg.train_max_length)["input_ids"]
            items = [{"input_ids": tokens, "label": ids[label]} for tokens, (_, label, _) in zip(encoded, rows)]
        self.eval_items = items[:held]
        return check_enough(items[held:], cfg, "rows")

    def _tagged_item(self, words: list[str], labels: list[int]) -> dict:
        text, spans = word_spans(words)
        encoded = self.tokenizer(text, truncation=True, max_length=self.config.train_max_length,
                                 return_offsets_mapping=True)
        return {"input_ids": encoded["input_ids"], "labels": token_labels(encoded["offset_mapping"], spans, labels)}

    def collate(self, items: list) -> dict:
        width = max(len(item["input_ids"]) for item in items)
        ids = torch.full((len(items), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        tags = torch.full((len(items), width), IGNORED, dtype=torch.long)
        for row, item in enumerate(items):  # padded on the right, as the sequence head expects
            ids[row, :len(item["input_ids"])] = torch.tensor(item["input_ids"])
            mask[row, :len(item["input_ids"])] = 1
            if "labels" in item:
                tags[row, :len(item["labels"])] = torch.tensor(item["labels"])
        labels = tags if "labels" in items[0] else torch.tensor([i["label"] for i in items])
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    def loss(self, model, inputs: dict) -> tuple[torch.Tensor, dict]:
        out = model(**inputs)
        self.tokens_seen += int(inputs["attention_mask"].sum())
        right, total = _right(out.logits, inputs["labels"])
        return out.loss, {"train_accuracy": round(right / max(total, 1), 4)}

    def evaluate(self, model) -> dict:
        """Accuracy on the held-out rows (eval_examples), before and after training."""
        if not self.eval_items:
            return {}
        was_training, right, total, tokens = model.training, 0, 0, self.tokens_seen
        model.eval()
        size = self.config.per_device_train_batch_size
        device = next(model.parameters()).device
        try:
            with torch.no_grad():
                for start in range(0, len(self.eval_items), size):
                    batch = {k: v.to(device) for k, v in self.collate(self.eval_items[start:start + size]).items()}
                    counts = _right(model(**batch).logits, batch["labels"])
                    right, total = right + counts[0], total + counts[1]
        finally:
            model.train(was_training)
            self.tokens_seen = tokens
        return {"eval_accuracy": round(right / max(total, 1), 4), "eval_examples": len(self.eval_items)}

    def finish(self) -> None:
        for c, value in self._use_cache:
            c.use_cache = value


def _names(label) -> list[str]:
    """A row's label names: one (sequence) or one per word (token)."""
    return label if isinstance(label, list) else [label]


def _right(logits: torch.Tensor, labels: torch.Tensor) -> tuple[int, int]:
    """(right, scored): per text, or per labelled token (IGNORED left out)."""
    scored = labels != IGNORED
    return int(((logits.argmax(-1) == labels) & scored).sum()), int(scored.sum())


def _checkpoint_every_weight(peft_model) -> None:
    """Full fine-tuning on the LoRA engine: a peft checkpoint holds only the adapter, so each
    Trainer checkpoint also gets the whole model as model.safetensors, which the Trainer loads
    (into this same peft model) when it resumes from that checkpoint. Only checkpoints: the
    stage's finished adapter/ stays the adapter alone."""
    save = peft_model.save_pretrained

    def save_pretrained(save_directory, *args, **kwargs):
        save(save_directory, *args, **kwargs)
        if Path(save_directory).name.startswith(f"{PREFIX_CHECKPOINT_DIR}-"):
            save_model(peft_model, str(Path(save_directory) / "model.safetensors"))

    peft_model.save_pretrained = save_pretrained


__all__ = ["FinetuneConfig", "FinetuneStage", "read_labelled", "label_order", "token_labels", "word_spans"]
