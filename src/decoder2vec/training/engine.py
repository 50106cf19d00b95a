"""The one training engine: LoRA + Hugging Face Trainer, checkpoints and resume, logs, merge.

    output_dir.checkpoints/   Trainer checkpoints (adapter, optimizer, RNG), logs; removed at the end
    output_dir/               the finished Encoder (merged weights), written atomically:
        decoder2vec_config.json   ... "stages": [..., {"stage": "simcse", "steps": ..., "final_loss": ...}]
        adapter/                  this stage's LoRA adapter alone (its base: the stage's input model)
        distill_projection.safetensors   (distill, mse, dimensions differ) the trained projection, unused by the Encoder
        latent_attention.safetensors     (latent_attention > 0) the trained latent-attention pooling layer
        logs/                     log.csv (+ TensorBoard events)

A folder with decoder2vec_config.json whose last stage is this stage is finished: re-running the
same recipe skips it; a different recipe is an error naming the differing keys (or, with
`force: true`, trains again and replaces it). A run killed at any point resumes from its last
complete checkpoint (save_steps is clamped so there always is one before the end).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
import time
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import SequentialSampler
from transformers import Trainer, TrainerCallback, TrainingArguments, get_scheduler, set_seed

from ..atomic import record_output, swap_in, write_atomic, write_json_atomic
from ..cpu import trains_in_bf16
from ..encoder import Encoder
from ..errors import Decoder2VecError
from ..folder.config import finished, kind
from .merge import _name as merge_source_name, average_into
# Every stage's module, imported so its Stage registers itself (stage.stage_class finds it).
from . import distill, finetune, mntp, simcse, supervised  # noqa: F401
from .config import StageConfig
from .lora import add_lora, merge_lora, trainable_parameters
from .losses import world
from .latent_pooling import apply_latent_attention
from .matryoshka import apply_matryoshka
from .resume import NOT_RECIPE, check_resolved, check_resume, hyperparameters, write_run
from .stage import Stage, stage_class
from .throughput import Throughput, layer_parameters, measure_peak_flops

CHECKPOINT_PREFIX = "checkpoint-"
EXTRAS_NAME = "extra_modules.pt"  # a stage's extra trainable modules, in each checkpoint


def last_checkpoint(work: Path) -> Path | None:
    """The newest complete checkpoint: trainer_state.json is the last file the Trainer writes."""
    done = [p for p in work.glob(f"{CHECKPOINT_PREFIX}*") if (p / "trainer_state.json").is_file()]
    return max(done, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):])) if done else None


class StageTrainer(Trainer):
    """The Trainer with the stage's loss, the stage's own step (cached loss), and speed figures."""

    loss_is_scaled_for_ga = False  # our losses are means per micro-batch: divide by accumulation steps

    def __init__(self, *args, stage: Stage, throughput: Throughput, **kwargs):
        super().__init__(*args, **kwargs)
        self.stage, self.throughput = stage, throughput
        self.extra_logs: dict = {}
        self._micro = (-1, 0)

    def _seed_step(self):
        step = self.state.global_step
        micro = self._micro[1] + 1 if self._micro[0] == step else 0
        self._micro = (step, micro)
        self.stage.step_seed = hash((self.args.seed, step, micro, world()[0])) & 0x7FFF_FFFF

    def _get_train_sampler(self, train_dataset=None):
        # Stages that order their items themselves (single-task blocks spread over the processes,
        # stage.task_blocks) need them in that order; accelerate then gives process r the
        # items r, r + world, r + 2 * world, ... i.e. its slice of every block.
        if self.stage.ordered:
            return SequentialSampler(train_dataset if train_dataset is not None else self.train_dataset)
        return super()._get_train_sampler(train_dataset)

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        epochs = self.stage.config.lr_schedule_epochs
        if self.lr_scheduler is None and epochs:
            # LLM2Vec sizes its linear schedule for 3 epochs and stops at 1,000 steps, so its rate
            # barely decays; warmup stays counted in steps of this run.
            self.lr_scheduler = get_scheduler(
                self.args.lr_scheduler_type, optimizer=optimizer or self.optimizer,
                num_warmup_steps=self.args.get_warmup_steps(num_training_steps),
                num_training_steps=max(num_training_steps, schedule_steps(self.stage.config, len(self.train_dataset))),
                scheduler_specific_kwargs=self.args.lr_scheduler_kwargs)
        return super().create_scheduler(num_training_steps, optimizer)

    def save_model(self, output_dir=None, _internal_call=False):
        super().save_model(output_dir, _internal_call)
        # Written inside the checkpoint before its trainer_state.json, which marks it complete.
        extras = self.stage.extra_modules()
        if extras and self.args.should_save:
            folder = Path(output_dir or self.args.output_dir)
            folder.mkdir(parents=True, exist_ok=True)
            torch.save({name: module.state_dict() for name, module in extras.items()}, folder / EXTRAS_NAME)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self._seed_step()
        loss, logs = self.stage.loss(model, inputs)
        self.extra_logs = logs
        return (loss, None) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        if not getattr(self.stage.config, "mini_batch_size", 0):
            return super().training_step(model, inputs, num_items_in_batch)
        model.train()
        self._seed_step()
        inputs = self._prepare_inputs(inputs)
        steps = self.current_gradient_accumulation_steps
        loss, self.extra_logs = self.stage.cached_backward(
            model, inputs, scale=1.0 / steps, backward=self.accelerator.backward, no_sync=self.accelerator.no_sync)
        return loss / steps

    def log(self, logs: dict, start_time=None):
        if "loss" in logs:
            logs.update(self.extra_logs)
            _, size = world()
            logs.update(self.throughput.figures(self.stage.tokens_seen * size))
        super().log(logs, start_time)


class LogLastStep(TrainerCallback):
    """Log at the last step too: the steps after the last logging step (all of them when max_steps
    < logging_steps) would otherwise never reach log.csv, and the record's final_loss would be an
    older window's loss, or none."""

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps:
            control.should_log = True


class CSVLog(TrainerCallback):
    """log.csv with one row per logging step; rows after a resumed checkpoint are dropped first."""

    def __init__(self, path: Path):
        self.path = path

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero and self.path.is_file():
            rows = [r for r in self._rows() if float(r.get("step") or 0) <= state.global_step]
            self._write(rows)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            rows = self._rows() if self.path.is_file() else []
            rows.append({"step": state.global_step, "time": round(time.time(), 1), **logs})
            self._write(rows)

    def _rows(self) -> list[dict]:
        with open(self.path, newline="") as f:
            return list(csv.DictReader(f))

    def _write(self, rows: list[dict]) -> None:
        keys = list(dict.fromkeys(k for row in rows for k in row))

        def write(tmp: Path) -> None:
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=keys)
                writer.writeheader()
                writer.writerows(rows)
        write_atomic(self.path, write)


def schedule_steps(config: StageConfig, items: int) -> int:
    """Optimizer steps in `lr_schedule_epochs` passes over `items` dataset items (one item per
    process and micro-step: a whole batch when the stage batches itself)."""
    _, size = world()
    per_item = 1 if getattr(config, "batch_per_task", False) else config.per_device_train_batch_size
    per_step = per_item * size * config.gradient_accumulation_steps
    return max(1, int(config.lr_schedule_epochs * items // per_step))


def save_steps(config: StageConfig, log=warnings.warn) -> int:
    """save_steps, clamped so that a killed run always has a checkpoint to resume from: a first
    checkpoint at max_steps (or never) saves nothing the finished output does not."""
    if config.save_steps < config.max_steps:
        return config.save_steps
    clamped = max(1, config.max_steps // 2)
    log(f"{config.stage}: save_steps={config.save_steps} >= max_steps={config.max_steps} would leave no checkpoint "
        f"to resume a killed run from; saving every {clamped} steps instead")
    return clamped


def _training_arguments(config: StageConfig, work: Path) -> TrainingArguments:
    _, size = world()
    batch = config.per_device_train_batch_size
    if getattr(config, "batch_per_task", False):
        batch = 1  # dataset items are whole batches (supervised.SupervisedStage.dataset)
    extra = dict(config.training_args)
    # Checkpointing is switched on by the engine itself (enable_gradient_checkpointing), never by
    # the Trainer: the recompute must run the stage's own forward (chunked attention, no cache).
    extra.pop("gradient_checkpointing", None)
    if not torch.cuda.is_available():
        extra.setdefault("dataloader_pin_memory", False)
        if trains_in_bf16(config.stage, config.fast):
            # accelerate's CPU autocast: matmuls in bf16, the fp32 weights and optimizer untouched.
            extra.setdefault("bf16", True)
            extra.setdefault("use_cpu", True)
        if size > 1:
            extra.setdefault("ddp_backend", "gloo")
    try:
        return TrainingArguments(
            output_dir=str(work), max_steps=config.max_steps, learning_rate=config.learning_rate,
            per_device_train_batch_size=batch, gradient_accumulation_steps=config.gradient_accumulation_steps,
            warmup_steps=config.warmup_steps, lr_scheduler_type=config.lr_scheduler_type,
            weight_decay=config.weight_decay, logging_steps=config.logging_steps, save_steps=save_steps(config),
            save_total_limit=config.save_total_limit, seed=config.seed, report_to=config.report_to,
            remove_unused_columns=False, ddp_find_unused_parameters=False, dataloader_drop_last=True, **extra,
        )
    except (ValueError, TypeError, ImportError) as exc:  # transformers' checks: bf16 without a GPU, a bad enum ...
        given = ", ".join(f"{k}={v!r}" for k, v in config.training_args.items())
        reason = " ".join(str(exc).split())
        raise Decoder2VecError(f"{config.stage}: transformers' TrainingArguments refused the recipe"
                               + (f" (training_args: {given})" if given else "") + f": {reason}") from None


def _check_model_source(config: StageConfig) -> None:
    """A missing previous-stage folder is the most likely mistake in a pipeline: say so."""
    model = str(config.model) if config.model is not None else None
    if model is None:
        return
    path = Path(model).expanduser()
    if path.exists():
        return
    if Path(f"{path}.checkpoints").is_dir():
        raise Decoder2VecError(
            f"{config.stage}: model {model!r} is an unfinished stage (its checkpoints are in {path}.checkpoints); "
            "run that stage again to finish it")
    if kind(model) == "nothing":  # not here, and not a name a hub id could be ("name", "org/name")
        raise Decoder2VecError(
            f"{config.stage}: model {model!r} not found (is it the previous stage's output_dir? run that stage first)")


def _check_merge_with(config: StageConfig) -> None:
    """A merge_with path that does not exist is refused before training, not after it."""
    name = config.merge_with
    if not name or name in ("input", "base"):
        return
    if kind(name) == "nothing" and not Path(name).expanduser().exists():
        raise Decoder2VecError(f"{config.stage}: merge_with {name!r} not found (input, base, a model folder or a "
                               "hub id)")


def _is_main() -> bool:
    return world()[0] == 0


def _barrier() -> None:
    if world()[1] > 1:
        dist.barrier()


RENAMED_RECORD_KEYS = {"max_length": "train_max_length", "eval_texts": "eval_examples",
                       "hard_negatives": "num_negatives"}
# What a stage did before these keys existed: a record without them was trained that way.
BEHAVIOUR_BEFORE_KEY = {"packing": "per-text", "mask_false_negatives": False, "instruction_template": None,
                        "lr_schedule_epochs": None, "gradient_checkpointing": False}


def recipe_differences(done: dict, config: StageConfig) -> list[str]:
    """`key: recorded -> now` for every training key that differs from a finished stage's record.
    A key the record lacks (added to decoder2vec later) differs only when set to a non-default."""
    recorded = dict(done.get("hyperparameters") or {})
    recorded["model"] = done.get("model")
    for old, new in RENAMED_RECORD_KEYS.items():  # folders trained before a key was renamed
        if old in recorded and new not in recorded:
            recorded[new] = recorded.pop(old)
    if isinstance(recorded.get("num_negatives"), bool):  # supervised's hard_negatives: true kept the one
        recorded["num_negatives"] = int(recorded["num_negatives"])  # negative an STS-B / E5 pair carries
    for key, value in BEHAVIOUR_BEFORE_KEY.items():
        recorded.setdefault(key, value)
    now = {**hyperparameters(config), "model": str(config.model) if config.model else None}
    defaults = {f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())
                for f in dataclasses.fields(type(config))}
    out = []
    for key, value in now.items():
        if key in NOT_RECIPE:
            continue
        old = recorded.get(key, defaults.get(key))
        if json.loads(json.dumps(old)) != json.loads(json.dumps(value)):
            out.append(f"{key}: {old!r} -> {value!r}")
    return out


def finished_as_recipe(config: StageConfig) -> tuple[dict | None, list[str]]:
    """Is this stage finished? The one answer, for training and the pipeline: (the record of the
    stage finished in config.output_dir, or None; the recipe keys that differ from that record).
    Finished with no key differing: skip it. Another stage there is an error (folder.finished)."""
    done = finished(config.output_dir, config.stage)
    return done, (recipe_differences(done, config) if done is not None else [])


def run_stage(config: StageConfig, *, callbacks: list | None = None, log=print) -> Path:
    """Train one stage; returns the finished Encoder folder (skips a stage that is already done
    with the same recipe)."""
    output = Path(config.output_dir)
    done, changed = finished_as_recipe(config)
    if done is not None:
        if not changed:
            log(f"{config.stage}: {output} is already finished ({done.get('steps')} steps, final loss "
                f"{done.get('final_loss')}); skipped. Delete it to train again.")
            return output
        if not config.force:
            raise Decoder2VecError(
                f"{config.stage}: {output} was finished with a different recipe ({'; '.join(changed)}); "
                "use another output_dir, or force: true (--set force=true) to train again and replace it")
        log(f"{config.stage}: force: training again ({'; '.join(changed)}); {output} is replaced when done")
    elif output.exists() and any(output.iterdir()):
        raise Decoder2VecError(f"{config.stage}: output_dir {output} exists and is not a decoder2vec folder")
    _check_model_source(config)
    _check_merge_with(config)
    work = Path(f"{output}.checkpoints")
    # Settings transformers refuses, and a resume that would mix two runs, fail before the model loads.
    args = _training_arguments(config, work)
    resume = last_checkpoint(work)
    at_step = int(resume.name[len(CHECKPOINT_PREFIX):]) if resume else None
    run = check_resume(config, work, at_step, log)

    stage = stage_class(config.stage)(config)
    stage.load()
    items = stage.dataset()
    check_resolved(config, run, stage.resolved(), work, resuming=resume is not None)
    if _is_main():
        write_run(work, run)
    apply_latent_attention(stage)  # before Matryoshka, which reuses the embedding it finds
    apply_matryoshka(stage)
    if config.gradient_checkpointing:
        enable_gradient_checkpointing(stage.net)
    set_seed(config.seed)  # LoRA's initial weights
    peft_model = add_lora(stage.net, r=config.lora_r, alpha=config.lora_alpha, dropout=config.lora_dropout,
                          target_modules=config.lora_target_modules,
                          trainable_token_indices=stage.trainable_token_indices)
    stage.attach(peft_model)
    for name, module in stage.extra_modules().items():
        # A submodule of the trained model: the Trainer's optimizer, DDP and device moves see it.
        module.requires_grad_(True)
        peft_model.add_module(name, module.to(next(peft_model.parameters()).device))
    trainable, total = trainable_parameters(peft_model)

    peak = measure_peak_flops(args.device, next(peft_model.parameters()).dtype)
    throughput = Throughput(layer_parameters(peft_model), peak)
    trainer = StageTrainer(
        model=peft_model, args=args, train_dataset=items, data_collator=stage.collate,
        callbacks=[CSVLog(work / "log.csv"), LogLastStep(), *(callbacks or [])], stage=stage, throughput=throughput,
    )
    if resume is not None:
        _load_extras(stage, resume)
    before_path = work / "before.json"  # metrics of the untrained model, kept across a resume
    if resume is not None and before_path.is_file():
        before = json.loads(before_path.read_text())
    else:
        before = stage.evaluate(peft_model)
        if _is_main():  # atomic: a run killed while writing it resumes with a whole file or none
            write_json_atomic(before_path, before, indent=None)
    if _is_main():
        what = "training batches, each of one data source" if stage.ordered else "training examples"
        log(f"{config.stage}: {len(items)} {what}, LoRA r={config.lora_r} on "
            f"{trainable:,} of {total:,} parameters, {config.max_steps} steps"
            + (f", resuming from {resume.name}" if resume else "")
            + (f"; before: {before}" if before else ""))
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    after = stage.evaluate(trainer.model)
    final_loss = _final_loss(trainer)
    if _is_main():
        record = {
            "stage": config.stage, "recipe": config.recipe, "model": str(config.model) if config.model else None,
            "steps": trainer.state.global_step, "final_loss": final_loss,
            "train_loss": round(result.training_loss, 4),
            "hyperparameters": hyperparameters(config),
            "adapter": "adapter/ (this stage's LoRA alone, on top of 'model'; already merged into these weights)",
        }
        if before or after:
            record["before"], record["after"] = before, after
        if run["resumes"]:
            record["resumed"] = run["resumes"]
        _save_output(stage, trainer.model, output, work, record)
        log(f"{config.stage}: done in {trainer.state.global_step} steps, final loss {final_loss}"
            + (f"; after: {after}" if after else "") + f" -> {output}")
    _barrier()
    if _is_main() and not config.keep_checkpoints:
        shutil.rmtree(work, ignore_errors=True)
    return output


def _load_extras(stage: Stage, checkpoint: Path) -> None:
    extras = stage.extra_modules()
    if not extras:
        return
    path = checkpoint / EXTRAS_NAME
    if not path.is_file():
        raise Decoder2VecError(f"{stage.config.stage}: checkpoint {checkpoint} has no {EXTRAS_NAME} (the stage's "
                               "trained modules); delete that checkpoint folder to resume from an earlier one")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    for name, module in extras.items():
        module.load_state_dict(saved[name])


def merge_source(stage: Stage) -> str:
    """What `merge_with` names: input (the stage's own model), base (the original base model), or a model."""
    config = stage.config
    if config.merge_with == "input":
        return str(config.model)
    if config.merge_with == "base":
        return str(stage.encoder_config.base_model or config.model)
    return str(config.merge_with)


def _merge_after(stage: Stage, encoder: Encoder) -> dict:
    """BidirLM's merge with the base (or any compatible model), into the finished stage's weights
    before they are saved; the adapter/ folder stays the unmerged LoRA."""
    config = stage.config
    source = merge_source(stage)
    name = merge_source_name(source)
    average_into(encoder, "the trained stage", [(source, name, config.merge_weight)], 1.0 - config.merge_weight)
    return {"with": name, "merge_with": config.merge_with, "weight": config.merge_weight}


def _final_loss(trainer) -> float | None:
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return round(losses[-1], 4) if losses else None


def enable_gradient_checkpointing(net) -> None:
    """Non-reentrant checkpointing (LLM2Vec's setting): LoRA's frozen inputs need no
    requires_grad trick, and chunked attention re-enters itself in the recompute."""
    kwargs = {"use_reentrant": False}
    if hasattr(net, "activation_checkpointing_enable"):  # transformers >= 5.x's name
        net.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        net.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def _save_output(stage: Stage, peft_model, output: Path, work: Path, record: dict) -> None:
    """Adapter, merged Encoder and logs into one staging folder, then swapped in: an output folder
    either does not exist or is complete."""
    staging = work / "final"
    shutil.rmtree(staging, ignore_errors=True)
    adapter = work / "adapter"
    shutil.rmtree(adapter, ignore_errors=True)
    peft_model.save_pretrained(adapter)
    stage.finish()
    for name in stage.extra_modules():
        delattr(peft_model, name)  # not part of the backbone
    merged = merge_lora(peft_model)
    config = stage.encoder_config
    encoder = Encoder(stage.backbone(merged), stage.tokenizer, config)
    if stage.config.merge_with:
        record["merge"] = _merge_after(stage, encoder)
    config.stages = [*config.stages, record]
    # The layer is saved with the Encoder, so the folder's sentence-transformers files run it too
    # (decoder2vec's own ST module): a plain Pooling would load the folder without it (issue 23).
    encoder.latent_attention = getattr(stage, "latent_attention", None)
    encoder.save_pretrained(staging)
    stage.write_extras(staging)
    shutil.move(str(adapter), staging / "adapter")
    logs = staging / "logs"
    logs.mkdir()
    if (work / "log.csv").is_file():
        shutil.copy(work / "log.csv", logs / "log.csv")
    if (work / "runs").is_dir():
        shutil.copytree(work / "runs", logs / "tensorboard")
    record_output(staging, "encoder")  # adapter/ and logs/ are decoder2vec's files too
    output.parent.mkdir(parents=True, exist_ok=True)
    # One rename when output is new; over a finished stage (force) only decoder2vec's files are
    # replaced, and a user's files in that folder stay (atomic.py).
    swap_in(staging, output)
