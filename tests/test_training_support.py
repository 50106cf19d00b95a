"""Builders shared by the training tests: tiny model folders, corpora and pair files (no tests here)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch

from tiny import CORPUS, tiny_config, tiny_encoder, tiny_tokenizer

from decoder2vec.training.config import make_config
from decoder2vec.training.lora import add_lora

SENTENCES = sorted(set(CORPUS)) + [
    "Copenhagen is a city with many bicycles and old harbours.",
    "The model reads every token before it writes a vector.",
    "Masked tokens are predicted from the tokens around them.",
    "A small model trains quickly on a laptop processor.",
    "Rain fell all night over the quiet northern village.",
    "The committee approved the budget after a long debate.",
]


def causal_lm_folder(root: Path, family: str = "llama") -> Path:
    """A tiny AutoModelForCausalLM (with LM head) + tokenizer, saved: the MNTP stage's input."""
    from transformers import AutoModelForCausalLM

    folder = root / f"tiny-{family}-lm"
    if not (folder / "config.json").exists():
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(tiny_config(family)).save_pretrained(folder)
        tiny_tokenizer().save_pretrained(folder)
    return folder


def encoder_folder(root: Path, family: str = "llama") -> Path:
    """A tiny Encoder folder: the SimCSE / supervised stages' input."""
    folder = root / f"tiny-{family}-encoder"
    if not (folder / "config.json").exists():
        tiny_encoder(family).save_pretrained(folder)
    return folder


def corpus_file(root: Path, repeat: int = 3) -> Path:
    path = root / "corpus.txt"
    path.write_text("\n".join(" ".join(SENTENCES[i:] + SENTENCES[:i]) for i in range(len(SENTENCES))) * repeat)
    return path


def pairs_file(root: Path, negatives: bool = True) -> Path:
    path = root / "pairs.jsonl"
    with open(path, "w") as f:
        for i, text in enumerate(SENTENCES):
            row = {"query": text, "positive": text.lower().replace(".", " indeed.")}
            if negatives:
                row["negative"] = "Not so: " + SENTENCES[(i + 5) % len(SENTENCES)]  # never another query's text
            f.write(json.dumps(row) + "\n")
    return path


def csv_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


FAST = dict(per_device_train_batch_size=4, train_max_length=32, logging_steps=1, save_steps=50, report_to="none",
            lora_r=4, lora_alpha=8)


def attached_stage(cls, tmp_path, data, **overrides):
    """A loaded stage of `cls` on the tiny encoder folder with a non-zero LoRA adapter attached (so
    gradients reach every LoRA matrix): (stage, peft model, dataset items)."""
    config = make_config({"stage": cls.name, "model": str(encoder_folder(tmp_path)), "data": [str(data)],
                          "output_dir": str(tmp_path / "out"), "lora_dropout": 0.0, **FAST, **overrides})
    stage = cls(config)
    stage.load()
    items = stage.dataset()
    torch.manual_seed(0)
    model = add_lora(stage.net, r=4, alpha=8, dropout=0.0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    stage.attach(model)
    return stage, model, items
