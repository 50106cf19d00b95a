"""decoder2vec evaluate [MODEL] [--suite NAME] [--tasks a,b] --output results.json"""

from __future__ import annotations

import argparse

from ..errors import Decoder2VecError
from ..evaluation import compare, evaluate
from ..evaluation.runner import load_encoder
from ..evaluation.suites import load_tasks, suite_names, suite_tasks, task_specs
from ..model.pooling import POOLINGS
from . import add_encode_options, add_max_length_argument


KEYWORDS_OF = (evaluate, load_encoder)
CLI_ONLY = {"list_tasks": "list suites and tasks"}


def add_arguments(p):
    p.add_argument("model", nargs="?", default=None,
                   help="decoder2vec/HF folder, hub id, .gguf, packaged name (default smollm2-135m), "
                        "a sentence-transformers folder, or 'minilm' (packaged all-MiniLM-L6-v2)")
    p.add_argument("--suite", default="default", help="default | quick | en | da | de | path to a suite .yaml")
    p.add_argument("--tasks", default=None, help="comma-separated task names (overrides the suite's list)")
    p.add_argument("--output", default=None, help="write the results JSON here")
    p.add_argument("--sentence-transformers", dest="sentence_transformers", action="store_true", default=None,
                   help="load MODEL with sentence-transformers (default: yes for an anchor name such as "
                        "'minilm' and for a folder with modules.json but no decoder2vec_config.json; a saved "
                        "Encoder folder has both and loads as an Encoder)")
    p.add_argument("--pooling", choices=POOLINGS, default=None)
    p.add_argument("--bidirectional", action=argparse.BooleanOptionalAction, default=None,
                   help="attention direction (default: what the model folder says; bidirectional otherwise)")
    add_max_length_argument(p)
    add_encode_options(p, ["batch_size"])
    p.add_argument("--cache", action=argparse.BooleanOptionalAction, default=True,
                   help="read and write cached vectors (--no-cache: neither)")
    p.add_argument("--name", default=None, help="the model's name in the results (default: derived)")
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default=None, help="float32 | bfloat16 | float16")
    p.add_argument("--list-tasks", "--list", dest="list_tasks", action="store_true",
                   help="list suites and tasks, then exit")


def task_list(value: str | None) -> list[str] | None:
    """`--tasks a,b` -> ["a", "b"]; None when the flag is absent. An empty name (`--tasks ""`,
    `--tasks a,,b`) is an error: it must never mean "the whole suite"."""
    if value is None:
        return None
    names = [t.strip() for t in value.split(",")]
    if not all(names):
        raise Decoder2VecError(f"--tasks {value!r} has an empty task name; give comma-separated names from: "
                               f"{', '.join(task_specs())}")
    return names


def run(args):
    if args.list_tasks:
        print("suites:", ", ".join(suite_names()))
        for suite in suite_names():
            print(f"  {suite}: {', '.join(suite_tasks(suite))}")
        print("tasks:")
        for name, spec in task_specs().items():
            print(f"  {name:<20} {spec['type']:<20} {spec['language']}  {spec.get('description', '')}")
        return 0
    tasks = task_list(args.tasks)
    load_tasks(args.suite, tasks)  # a typo in a task name fails before the model loads
    results = evaluate(
        args.model, suite=args.suite, tasks=tasks, batch_size=args.batch_size, cache=args.cache,
        output=args.output, name=args.name, sentence_transformers=args.sentence_transformers,
        pooling=args.pooling, bidirectional=args.bidirectional, max_length=args.max_length,
        device=args.device, dtype=args.dtype,
    )
    print(compare([results]))
    print(f"{len(results['tasks'])} tasks in {results['seconds']:.1f} s"
          + (f"; results written to {args.output}" if args.output else ""))
    return 0
