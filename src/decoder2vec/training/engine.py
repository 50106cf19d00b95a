"""The one training engine: LoRA + Hugging Face Trainer, checkpoints and resume, logs, merge.

    output_dir.checkpoints/   Trainer checkpoints (adapter, optimizer, RNG), logs; removed at the end
    output_dir/               the finished Encoder (merged weights), written atomically:
        decoder2vec_config.json   ... "stages": [..., {"stage": "simcse", "steps": ..., "final_loss": ...}]
        adapter/                  this stage's LoRA adapter alone (its base: the stage's input model)
        logs/                     log.csv (+ TensorBoard events)

A folder with decoder2vec_config.json whose last stage is this stage is finished: re-running the
same command skips it. A run killed at any point resumes from its last complete checkpoint.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import time
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed

from ..encoder import CONFIG_NAME, Encoder
from ..errors import Decoder2VecError
from .config import StageConfig
from .lora import add_lora, merge_lora, trainable_parameters
from .losses import world
from .stage import Stage
from .throughput import Throughput, layer_parameters, measure_peak_flops

CHECKPOINT_PREFIX = "checkpoint-"


def stage_class(name: str) -> type[Stage]:
    from .mntp import MNTPStage
    from .simcse import SimCSEStage
    from .supervised import SupervisedStage

    return {"mntp": MNTPStage, "simcse": SimCSEStage, "supervised": SupervisedStage}[name]


def finished_stage(output: Path) -> dict | None:
    """The last stage record of a finished output folder, else None."""
    path = output / CONFIG_NAME
    if not path.is_file():
        return None
    stages = json.loads(path.read_text()).get("stages") or []
    return stages[-1] if stages else None


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
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.path)


def _training_arguments(config: StageConfig, work: Path) -> TrainingArguments:
    _, size = world()
    batch = config.per_device_train_batch_size
    if getattr(config, "batch_per_task", False):
        batch = 1  # dataset items are whole batches (supervised.SupervisedStage.dataset)
    extra = dict(config.training_args)
    if not torch.cuda.is_available():
        extra.setdefault("dataloader_pin_memory", False)
        if size > 1:
            extra.setdefault("ddp_backend", "gloo")
    return TrainingArguments(
        output_dir=str(work), max_steps=config.max_steps, learning_rate=config.learning_rate,
        per_device_train_batch_size=batch, gradient_accumulation_steps=config.gradient_accumulation_steps,
        warmup_steps=config.warmup_steps, lr_scheduler_type=config.lr_scheduler_type,
        weight_decay=config.weight_decay, logging_steps=config.logging_steps, save_steps=config.save_steps,
        save_total_limit=config.save_total_limit, seed=config.seed, report_to=config.report_to,
        remove_unused_columns=False, ddp_find_unused_parameters=False, dataloader_drop_last=True, **extra,
    )


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
    # A hub id is "name" or "org/name"; anything else, or whose first folder exists here, is a path.
    looks_local = (model.startswith((".", "/", "~")) or model.count("/") > 1 or path.suffix == ".gguf"
                   or (len(path.parts) > 1 and Path(path.parts[0]).is_dir()))
    if looks_local:
        raise Decoder2VecError(
            f"{config.stage}: model {model!r} not found (is it the previous stage's output_dir? run that stage first)")


def _is_main() -> bool:
    return world()[0] == 0


def _barrier() -> None:
    import torch.distributed as dist

    if world()[1] > 1:
        dist.barrier()


def run_stage(config: StageConfig, *, callbacks: list | None = None, log=print) -> Path:
    """Train one stage; returns the finished Encoder folder (skips a stage that is already done)."""
    output = Path(config.output_dir)
    done = finished_stage(output)
    if done is not None:
        if done.get("stage") == config.stage:
            log(f"{config.stage}: {output} is already finished ({done.get('steps')} steps, final loss "
                f"{done.get('final_loss')}); skipped. Delete it to train again.")
            return output
        raise Decoder2VecError(
            f"{config.stage}: output_dir {output} already holds a finished {done.get('stage')!r} stage; "
            "choose another output_dir")
    if output.exists() and any(output.iterdir()):
        raise Decoder2VecError(f"{config.stage}: output_dir {output} exists and is not a decoder2vec folder")
    _check_model_source(config)
    work = Path(f"{output}.checkpoints")

    stage = stage_class(config.stage)(config)
    stage.load()
    items = stage.dataset()
    set_seed(config.seed)  # LoRA's initial weights
    peft_model = add_lora(stage.net, r=config.lora_r, alpha=config.lora_alpha, dropout=config.lora_dropout,
                          target_modules=config.lora_target_modules,
                          trainable_token_indices=stage.trainable_token_indices)
    stage.attach(peft_model)
    trainable, total = trainable_parameters(peft_model)

    args = _training_arguments(config, work)
    peak = measure_peak_flops(args.device, next(peft_model.parameters()).dtype)
    throughput = Throughput(layer_parameters(peft_model), peak)
    trainer = StageTrainer(
        model=peft_model, args=args, train_dataset=items, data_collator=stage.collate,
        callbacks=[CSVLog(work / "log.csv"), *(callbacks or [])], stage=stage, throughput=throughput,
    )
    resume = last_checkpoint(work)
    before_path = work / "before.json"  # metrics of the untrained model, kept across a resume
    if before_path.is_file():
        before = json.loads(before_path.read_text())
    else:
        before = stage.evaluate(peft_model)
        if _is_main():
            work.mkdir(parents=True, exist_ok=True)
            before_path.write_text(json.dumps(before))
    if _is_main():
        log(f"{config.stage}: {len(items)} training examples, LoRA r={config.lora_r} on "
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
            "hyperparameters": _hyperparameters(config),
            "adapter": "adapter/ (this stage's LoRA alone, on top of 'model'; already merged into these weights)",
        }
        if before or after:
            record["before"], record["after"] = before, after
        _save_output(stage, trainer.model, output, work, record)
        log(f"{config.stage}: done in {trainer.state.global_step} steps, final loss {final_loss}"
            + (f"; after: {after}" if after else "") + f" -> {output}")
    _barrier()
    if _is_main() and not config.keep_checkpoints:
        shutil.rmtree(work, ignore_errors=True)
    return output


def _final_loss(trainer) -> float | None:
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return round(losses[-1], 4) if losses else None


def _hyperparameters(config: StageConfig) -> dict:
    skip = {"stage", "model", "output_dir", "recipe", "report_to", "keep_checkpoints"}
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in skip}


def _save_output(stage: Stage, peft_model, output: Path, work: Path, record: dict) -> None:
    """Adapter, merged Encoder and logs into one staging folder, then one rename: an output folder
    either does not exist or is complete."""
    staging = work / "final"
    shutil.rmtree(staging, ignore_errors=True)
    adapter = work / "adapter"
    shutil.rmtree(adapter, ignore_errors=True)
    peft_model.save_pretrained(adapter)
    stage.finish()
    merged = merge_lora(peft_model)
    config = stage.encoder_config
    config.stages = [*config.stages, record]
    encoder = Encoder(stage.backbone(merged), stage.tokenizer, config)
    encoder.save_pretrained(staging)
    shutil.move(str(adapter), staging / "adapter")
    logs = staging / "logs"
    logs.mkdir()
    if (work / "log.csv").is_file():
        shutil.copy(work / "log.csv", logs / "log.csv")
    if (work / "runs").is_dir():
        shutil.copytree(work / "runs", logs / "tensorboard")
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.exists():  # an empty folder the user made
        output.rmdir()
    os.replace(staging, output)
