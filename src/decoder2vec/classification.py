"""A converted model as a bidirectional transformers classifier, for fine-tuning.

An Encoder folder is a transformers model folder whose config.json says `is_causal: false`, and
transformers (>= 5.2) honours that: `AutoModelForSequenceClassification.from_pretrained(folder,
num_labels=3)` and `AutoModelForTokenClassification.from_pretrained(folder, num_labels=9)` give
classifiers whose attention is bidirectional, for every family in tests/tiny.py that has such a
class (tests/test_classification.py checks each: change the last token and the first position
changes).

`load_for_classification` is the loader for the rest and for every folder decoder2vec loads:
- families transformers has no class for (today: token classification for Gemma-3 text models
  and OPT) get transformers' own generic head (`GenericFor{Sequence,Token}Classification`, the
  one Llama, Qwen, Mistral ... use) on the family's pretrained-model class;
- attention follows the folder (decoder2vec_config.json's `bidirectional`, else config.json's
  `is_causal`; bidirectional when neither says, as for an Encoder), with the attention modules' flags set too (bidirectional.set_causal), and the
  family's quirks (Gemma-2: eager attention);
- a sequence classifier gets a pad token id when the config has none, so batches work (it pools
  the last non-pad token).
A classifier saved with `model.save_pretrained(dir)` loads back with `load_for_classification(dir,
task)` (or transformers' Auto class, where the family has one) and predicts the same.
"""

from __future__ import annotations

import contextlib
import inspect
import os

import numpy as np
import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
    PreTrainedModel,
)
from transformers.modeling_layers import GenericForSequenceClassification, GenericForTokenClassification
from transformers.models.auto.modeling_auto import MODEL_MAPPING

from .model.bidirectional import quirks_for, set_causal
from .model.words import join_words, token_word_matrix
from .errors import Decoder2VecError
from .folder.config import read_config
from .model.loading import resolve_model

TASKS = {
    "sequence": (AutoModelForSequenceClassification, GenericForSequenceClassification, "ForSequenceClassification"),
    "token": (AutoModelForTokenClassification, GenericForTokenClassification, "ForTokenClassification"),
}


def classifier_class(config, task: str) -> type:
    """transformers' class for `task` on `config`'s family, or its generic head on the family's
    pretrained-model class where transformers has none."""
    if task not in TASKS:
        raise Decoder2VecError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    auto, generic, suffix = TASKS[task]
    if type(config) in auto._model_mapping:
        return auto._model_mapping[type(config)]
    if type(config) not in MODEL_MAPPING:
        raise Decoder2VecError(f"transformers has no model class for {config.model_type!r}")
    base = MODEL_MAPPING[type(config)]
    family = next((c for c in base.__mro__[1:] if issubclass(c, PreTrainedModel) and c is not PreTrainedModel), None)
    if family is None:
        raise Decoder2VecError(f"{base.__name__} has no pretrained-model base class to put a {task} head on")
    # The name ends like transformers' own heads: the loss (`loss_function`) is chosen by that suffix.
    name = base.__name__.removesuffix("Model") + suffix
    return type(name, (generic, family), {"config_class": type(config), "__annotations__": {"config": type(config)},
                                          "__module__": __name__})


def load_for_classification(
    folder: str | os.PathLike,
    task: str = "sequence",
    num_labels: int | None = None,
    *,
    bidirectional: bool | None = None,
    **from_pretrained_kwargs,
) -> PreTrainedModel:
    """A transformers classifier (`task`: "sequence" or "token") with `num_labels` outputs on a
    converted model: an Encoder folder, a classifier saved from one (`decoder2vec finetune`'s
    output), or anything decoder2vec loads (a model folder, hub id, .gguf file, packaged name).
    num_labels None: the folder's own labels (config.json's id2label; transformers' default 2).
    bidirectional None: what the folder says (decoder2vec_config.json, else config.json's
    `is_causal`), and bidirectional when neither says, as `Encoder.from_pretrained` would load it.
    The tokenizer is `AutoTokenizer.from_pretrained(folder)`. Other keywords go to from_pretrained."""
    if num_labels is not None and num_labels < 1:
        raise Decoder2VecError(f"num_labels must be >= 1, got {num_labels}")
    source = resolve_model(folder)
    config = AutoConfig.from_pretrained(source)
    if bidirectional is None:
        encoder_config = read_config(source) if os.path.isdir(source) else None
        said = getattr(config, "is_causal", None)  # absent from a plain model's config.json
        bidirectional = encoder_config.bidirectional if encoder_config else said is not True
    for key, value in quirks_for(config).items():
        from_pretrained_kwargs.setdefault(key, value)
    if num_labels is not None:  # not passed otherwise: it would replace a saved classifier's id2label
        from_pretrained_kwargs["num_labels"] = num_labels
    model = classifier_class(config, task).from_pretrained(source, **from_pretrained_kwargs)
    set_causal(model, not bidirectional)
    if task == "sequence" and model.config.pad_token_id is None:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model.config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return model


def predict(model: PreTrainedModel, tokenizer, texts: list, *, batch_size: int = 32,
            max_length: int | None = None) -> list:
    """The label names (config.id2label) a classifier gives each text, without gradients, in
    batches padded on the right (transformers' sequence heads read the last non-pad token).
    A sequence classifier: one name per text. A token classifier (`finetune --task token`): one
    name per word, a list per text; a text is a list of words, or a string split at whitespace,
    and each word gets its first token's label (as it was trained: the words joined by single
    spaces). A word cut off by max_length is an error, never a guess."""
    if isinstance(texts, str):
        raise Decoder2VecError("texts must be a list of strings, not one string")
    if _is_token_classifier(model):
        return _predict_words(model, tokenizer, list(texts), batch_size, max_length)
    out = []
    with _inference(model, tokenizer):
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(list(texts[start:start + batch_size]), padding=True, truncation=max_length is not None,
                              max_length=max_length, return_tensors="pt").to(model.device)
            if "token_type_ids" not in _forward_names(model):  # decoders take none; BERT does
                batch.pop("token_type_ids", None)
            ids = model(**batch).logits.argmax(-1).tolist()
            out += [model.config.id2label[i] for i in ids]
    return out


@contextlib.contextmanager
def _inference(model, tokenizer):
    """Right padding (transformers' heads read the last non-pad token), eval mode and no gradients,
    the model's training mode given back afterwards."""
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    tokenizer.padding_side = "right"
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _is_token_classifier(model) -> bool:
    # transformers' classes and classifier_class's generic ones all end with the task's suffix.
    return type(model).__name__.endswith(TASKS["token"][2]) or isinstance(model, GenericForTokenClassification)


def _predict_words(model, tokenizer, texts: list, batch_size: int, max_length: int | None) -> list[list[str]]:
    words = []
    for i, text in enumerate(texts):
        split = text.split() if isinstance(text, str) else list(text)
        if not split:
            raise Decoder2VecError(f"texts[{i}] has no words: a token classifier labels each word of a text")
        words.append(split)
    out = []
    with _inference(model, tokenizer):
        for start in range(0, len(words), batch_size):
            joined = [join_words(w) for w in words[start:start + batch_size]]
            batch = tokenizer([text for text, _ in joined], padding=True, truncation=max_length is not None,
                              max_length=max_length, return_offsets_mapping=True, return_tensors="pt")
            offsets = batch.pop("offset_mapping").numpy()
            if "token_type_ids" not in _forward_names(model):
                batch.pop("token_type_ids", None)
            ids = model(**batch.to(model.device)).logits.argmax(-1).cpu().numpy()
            for row, (_, spans) in enumerate(joined):
                member = token_word_matrix(offsets[row], spans)
                if not member.any(1).all():
                    word = int(np.flatnonzero(~member.any(1))[0])
                    raise Decoder2VecError(f"texts[{start + row}]: word {word} ({words[start + row][word]!r}) has "
                                           f"no token within max_length={max_length}; raise max_length")
                out.append([model.config.id2label[int(ids[row, t])] for t in member.argmax(1)])
    return out


def _forward_names(model) -> set[str]:
    return set(inspect.signature(model.forward).parameters)
