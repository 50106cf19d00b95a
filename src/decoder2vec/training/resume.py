"""What a run's checkpoints were trained with, and what may change when it resumes.

    <output_dir>.checkpoints/run.json   {"hyperparameters", "model", "model_files", "data_files",
                                         "resolved", "resumes": [{"at_step", "changed"}, ...]}

A new run writes it before its first step. A resumed run compares the recipe it is given with it
and refuses any change to a key that alters what is trained (the learning rate, the data, the
model, a file's content, finetune's label order, distill's teacher ...), naming each key:
continuing would mix two runs into one folder that describes neither. Only keys that change how a
run is logged or kept (and max_steps, upward: train longer) may change; the finished stage's
record lists each resume with the values before and after (`resumed`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from ..atomic import write_json_atomic
from ..errors import Decoder2VecError
from .config import StageConfig

RUN_NAME = "run.json"
# Keys that change how a run is logged or kept, never what it trains.
NOT_RECIPE = ("logging_steps", "save_steps", "save_total_limit", "report_to", "keep_checkpoints", "force", "recipe",
              "output_dir")
# Keys that change memory or speed, not the arithmetic: the activations are recomputed exactly;
# the teacher's vectors are cached in the checkpoints folder by teacher and texts, so a resume
# reads them whatever the batch size.
SAME_RESULT = ("gradient_checkpointing", "teacher_batch_size")
# TrainingArguments keys (training_args) of the same kind.
SAME_RESULT_TRAINER = ("logging_dir", "logging_first_step", "logging_strategy", "logging_nan_inf_filter",
                       "disable_tqdm", "run_name", "dataloader_num_workers", "dataloader_pin_memory",
                       "dataloader_persistent_workers", "dataloader_prefetch_factor", "save_safetensors")
HEAD_BYTES = 1 << 20  # model weight files: size and the first MiB (hashing gigabytes per start is too slow)


def hyperparameters(config: StageConfig) -> dict:
    """The recipe keys a stage's record keeps (the model is recorded beside them)."""
    skip = {"stage", "model", "output_dir", "recipe", "report_to", "keep_checkpoints"}
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in skip}


def _sha256(path: Path, limit: int | None = None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        left = limit
        while left is None or left > 0:
            block = f.read(1 << 20 if left is None else min(1 << 20, left))
            if not block:
                break
            digest.update(block)
            if left is not None:
                left -= len(block)
    return digest.hexdigest()


def data_fingerprints(config: StageConfig) -> dict:
    """{source: sha256 of its content} for every local data file (packaged names and hub ids are
    recorded by name in `data`)."""
    return {str(source): _sha256(Path(source).expanduser()) for source in config.data
            if Path(str(source)).expanduser().is_file()}


def model_fingerprint(model: str | None) -> str | None:
    """A local model folder's (or file's) fingerprint: its small JSON/text files' content and each
    other file's size and first MiB; None for packaged names and hub ids."""
    if model is None:
        return None
    path = Path(str(model)).expanduser()
    # Not the model card (README.md): text about the model, not the model.
    files = [path] if path.is_file() else sorted(
        p for p in path.iterdir() if p.is_file() and p.suffix != ".md") if path.is_dir() else []
    digest = hashlib.sha256()
    for file in files:
        whole = file.suffix in (".json", ".txt", ".model") and file.stat().st_size <= HEAD_BYTES
        digest.update(f"{file.name}\0{file.stat().st_size}\0".encode())
        digest.update(_sha256(file, None if whole else HEAD_BYTES).encode())
    return digest.hexdigest() if files else None


def run_facts(config: StageConfig) -> dict:
    model = str(config.model) if config.model is not None else None
    return {"hyperparameters": hyperparameters(config), "model": model, "model_files": model_fingerprint(model),
            "data_files": data_fingerprints(config)}


def _same(a, b) -> bool:
    return json.loads(json.dumps(a)) == json.loads(json.dumps(b))


def _differences(recorded: dict, now: dict, skip: set) -> tuple[list[str], dict]:
    """(refused: "key: recorded -> now" for each change that alters the result, allowed:
    {key: [recorded, now]} for the others)."""
    refused, allowed = [], {}
    old, new = recorded.get("hyperparameters") or {}, now["hyperparameters"]
    for key in sorted(set(old) | set(new)):
        if key in skip or _same(old.get(key), new.get(key)):
            continue
        if key == "training_args":
            for sub in sorted(set(old[key] or {}) | set(new[key] or {})):
                a, b = (old[key] or {}).get(sub), (new[key] or {}).get(sub)
                if _same(a, b):
                    continue
                if sub in SAME_RESULT_TRAINER:
                    allowed[f"training_args.{sub}"] = [a, b]
                else:
                    refused.append(f"training_args.{sub}: {a!r} -> {b!r}")
        elif key in NOT_RECIPE or key in SAME_RESULT:
            allowed[key] = [old.get(key), new.get(key)]
        elif key == "max_steps" and isinstance(old.get(key), int) and new[key] > old[key]:
            allowed[key] = [old[key], new[key]]  # train longer; both values are recorded
        elif key == "max_steps":
            refused.append(f"max_steps: {old.get(key)!r} -> {new.get(key)!r} (max_steps may only grow)")
        else:
            refused.append(f"{key}: {old.get(key)!r} -> {new.get(key)!r}")
    if recorded.get("model") != now["model"]:
        refused.append(f"model: {recorded.get('model')!r} -> {now['model']!r}")
    elif recorded.get("model_files") != now["model_files"]:
        refused.append(f"model: the files in {now['model']} changed since the checkpoints were written")
    data = now["hyperparameters"].get("data")
    if _same(recorded.get("hyperparameters", {}).get("data"), data):
        for source, digest in (recorded.get("data_files") or {}).items():
            if now["data_files"].get(source) != digest:
                refused.append(f"data: {source} changed since the checkpoints were written")
    return refused, allowed


def check_resume(config: StageConfig, work: Path, step: int | None, log=print) -> dict:
    """The run record for this run. A new run (step None): what it is trained with. A resume from
    checkpoint `step`: the recorded run, refused when the recipe now differs in a key that alters
    the result, else updated to now with this resume (and any allowed change) appended."""
    now = run_facts(config)
    if step is None:
        return {**now, "resolved": {}, "resumes": []}
    path = work / RUN_NAME
    if not path.is_file():
        log(f"{config.stage}: the checkpoints in {work} have no {RUN_NAME} (written by an older decoder2vec): "
            "resuming without checking that the recipe is the one they were trained with")
        return {**now, "resolved": {}, "resumes": [{"at_step": step, "unchecked": True}]}
    recorded = json.loads(path.read_text(encoding="utf-8"))
    refused, allowed = _differences(recorded, now, skip=set(recorded.get("resolved") or {}))
    if refused:
        raise Decoder2VecError(
            f"{config.stage}: {work} holds checkpoints (step {step}) of a run trained with other settings "
            f"({'; '.join(refused)}); resuming would mix two runs. Give the recorded values, another output_dir, "
            f"or delete {work} to start again")
    resume = {"at_step": step, **({"changed": allowed} if allowed else {})}
    if allowed:
        log(f"{config.stage}: resuming at step {step} with "
            + "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in allowed.items()) + " (recorded in the output)")
    return {**now, "resolved": recorded.get("resolved") or {}, "resumes": [*recorded.get("resumes", []), resume]}


def check_resolved(config: StageConfig, run: dict, resolved: dict, work: Path, resuming: bool) -> None:
    """What the stage derived from its recipe and data (finetune's label order): a resume must
    derive the same (a record without it, from an older run, is taken as it is)."""
    before = run.get("resolved") or {}
    if resuming:
        changed = [f"{key}: {before[key]!r} -> {value!r}" for key, value in resolved.items()
                   if key in before and not _same(before[key], value)]
        if changed:
            raise Decoder2VecError(
                f"{config.stage}: {work} holds checkpoints of a run trained with other settings "
                f"({'; '.join(changed)}); resuming would mix two runs. Give the recorded values, another "
                f"output_dir, or delete {work} to start again")
    run["resolved"] = {**resolved, **before} if resuming else dict(resolved)


def write_run(work: Path, run: dict) -> None:
    write_json_atomic(work / RUN_NAME, run)
