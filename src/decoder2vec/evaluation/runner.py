"""Run a suite on a model: load the model (decoder2vec or sentence-transformers), embed each task's
texts through the caching adapter, score them, average main scores per language, write the results."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

from ..folder.anchors import installed_anchors, is_anchor, load_anchor, load_sentence_transformers
from ..encoder import Encoder
from ..errors import Decoder2VecError
from ..folder.config import is_sentence_transformers
from ..results import write_results
from .adapter import CachingAdapter
from .label import model_label
from .suites import load_tasks, task_specs
from .task import Task

LANGUAGES = ("en", "da", "de")
# Task sources from the LibreOffice help, the domain the Danish and German recipes train on
# (other pages): each language's average is also reported without them, "<lang>-no-libreoffice".
LIBREOFFICE_SOURCES = ("libreoffice-help", "libreoffice-titles")
NO_LIBREOFFICE = "-no-libreoffice"


def load_encoder(model=None, *, sentence_transformers: bool | None = None, pooling: str | None = None,
                 bidirectional: bool | None = None, max_length: int | None = None, device: str | None = None,
                 dtype=None):
    """A model name/path -> an encoder object: a decoder2vec Encoder; an anchor (folder/anchors.py: minilm,
    multilingual-e5-small, embeddinggemma-300m, with the prompts their cards prescribe); or a
    sentence-transformers model (`sentence_transformers=True`, or a sentence-transformers folder:
    folder.kind), prompted by its own prompts table."""
    if sentence_transformers is None:
        sentence_transformers = is_sentence_transformers(model)
    if sentence_transformers:
        if pooling or bidirectional is not None:
            raise Decoder2VecError("--pooling/--causal apply to decoder2vec models, not sentence-transformers ones")
        wrapped = load_anchor(model, device=device) if is_anchor(model) else load_sentence_transformers(
            str(model), device=device)
        if max_length and hasattr(wrapped, "model"):
            wrapped.model.max_seq_length = max_length
        return wrapped
    return Encoder.from_pretrained(model, pooling=pooling, bidirectional=bidirectional, max_length=max_length,
                                   device=device, dtype=dtype)


def run_task(task: Task, model, *, cache: bool = True) -> dict:
    """One task's scores: embed each list of texts the task declares (through the caching adapter,
    with the instruction, token limit and batch size it asks for), then let the task score them."""
    adapter = model if isinstance(model, CachingAdapter) else CachingAdapter(model, cache=cache)
    vectors = {
        key: adapter.embed(texts.texts, texts.instruction, task=task.name, max_length=texts.max_length,
                           batch_size=texts.batch_size, side=texts.side, task_type=task.type)
        for key, texts in task.inputs(adapter.tokenizer).items()
    }
    return task.score(vectors)


def evaluate(encoder_or_model=None, suite: str = "default", tasks: list[str] | None = None, *,
             batch_size: int = 32, cache: bool = True, output: str | os.PathLike | None = None,
             name: str | None = None, verbose: bool = True, **load_kwargs) -> dict:
    """Evaluate an encoder (or a model name/path, loaded with `load_encoder`) on a suite.

    Returns {"model", "suite", "tasks": {name: {"type", "language", "metric", "main_score",
    "scores", "sizes", "seconds"}}, "averages": {"en", "da", "de", "all"}, "seconds"}.
    """
    task_list = load_tasks(suite, tasks)  # validate names before loading a model
    if output is not None and Path(output).is_dir():
        raise Decoder2VecError(f"--output {output} is a directory; give a results file path such as "
                               f"{Path(output) / 'results.json'}")
    load_kwargs = {k: v for k, v in load_kwargs.items() if v is not None}
    if encoder_or_model is None or isinstance(encoder_or_model, (str, os.PathLike)):
        encoder = load_encoder(encoder_or_model, **load_kwargs)
    elif load_kwargs:
        raise Decoder2VecError(f"{', '.join(load_kwargs)} apply only when evaluate() loads the model by name")
    else:
        encoder = encoder_or_model
    label = name or model_label(encoder)
    adapter = CachingAdapter(encoder, batch_size=batch_size, cache=cache, name=label)
    started = time.perf_counter()
    results = {}
    for task in task_list:
        t0 = time.perf_counter()
        scores = run_task(task, adapter)
        seconds = time.perf_counter() - t0
        main = scores[task.main_score]
        if not np.isfinite(main):
            raise Decoder2VecError(f"task {task.name}: main score {task.main_score} is {main}")
        results[task.name] = {
            "type": task.type, "language": task.language, "source": task.source, "metric": task.main_score,
            "main_score": main,
            "scores": scores, "sizes": task.sizes(), "seconds": round(seconds, 2),
        }
        if verbose:
            print(f"  {task.name:<22} {task.main_score:<16} {main:.4f}  ({seconds:.1f} s)", file=sys.stderr)
    out = {
        "model": label,
        "suite": suite if not tasks else f"{suite}:{','.join(tasks)}",
        "tasks": results,
        "averages": averages(results),
        "seconds": round(time.perf_counter() - started, 2),
    }
    if output:
        write_results(out, output)
    return out


def anchor_results(like: dict, *, batch_size: int = 32) -> list[dict]:
    """Each installed anchor (anchors.installed_anchors) evaluated on the suite and tasks of the
    results `like`, each with the prompts its card prescribes (vectors cached, so a second call
    encodes nothing): the rows a comparison needs beside ours."""
    suite = str(like.get("suite", "default")).split(":")[0]
    tasks = list(like["tasks"])
    return [evaluate(name, suite=suite, tasks=tasks, name=label, batch_size=batch_size, verbose=False)
            for label, name in installed_anchors().items()]


def task_source(name: str, result: dict) -> str | None:
    """A result's task source; results written before it was recorded are looked up by task name."""
    return result.get("source") or task_specs().get(name, {}).get("source")


def averages(results: dict) -> dict:
    """Mean main score per language (tasks whose `language` is that one) and over all tasks; and
    "<lang>-no-libreoffice", the mean without the LibreOffice help tasks, for a language that has
    both kinds of task."""
    out = {}
    for lang in LANGUAGES:
        mine = {name: r for name, r in results.items() if r["language"] == lang}
        if mine:
            out[lang] = float(np.mean([r["main_score"] for r in mine.values()]))
        others = [r["main_score"] for name, r in mine.items() if task_source(name, r) not in LIBREOFFICE_SOURCES]
        if others and len(others) < len(mine):
            out[lang + NO_LIBREOFFICE] = float(np.mean(others))
    if results:
        out["all"] = float(np.mean([r["main_score"] for r in results.values()]))
    return out
