"""Stage configs: one `@dataclass` per stage; a recipe (YAML) is one of them written down.

Keys that exist in Hugging Face `TrainingArguments` keep those names (output_dir, max_steps,
learning_rate, per_device_train_batch_size, ...). Any other TrainingArguments key may also appear
in a recipe and is passed through; every other unknown key is an error that names it.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from transformers import TrainingArguments

from ..model.chat_format import FORMATS
from ..data.corpora import check_data_file, not_utf8_error
from ..errors import Decoder2VecError, choices_error
from ..folder.config import POOL_SPANS
from ..model.pooling import check_pooling


def _help(text: str, default=dataclasses.MISSING, factory=dataclasses.MISSING):
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata={"help": text})
    return field(default=default, metadata={"help": text})


def _num_negatives(default: int, where: str):
    """num_negatives of every stage that trains with hard negatives (supervised, distill): one
    name and meaning, that of `decoder2vec mine`'s num_negatives; `where` says where they come from."""
    return _help(f"at most this many hard negatives per example; 0: none (the name and meaning of `decoder2vec "
                 f"mine`'s num_negatives). {where}", default)


@dataclass
class StageConfig:
    """What every stage takes: the model, the data, LoRA and the Trainer's main knobs."""

    stage: str = _help("mntp | simcse | supervised | distill", "")
    model: str | None = _help("base model (packaged name, hub id, folder, .gguf) or the previous stage's folder", None)
    data: list = _help("sources: packaged names, local files, or hub dataset ids", factory=list)
    output_dir: str = _help("where the finished Encoder folder is written (checkpoints go to <output_dir>.checkpoints)", "")
    # Not `max_length`: that is the Encoder's inference length (its folder config, `encode`), which
    # training never changes.
    train_max_length: int = _help("training sequence length in tokens (the saved Encoder keeps its own max_length)", 128)
    data_limit: int | None = _help("use at most this many training examples (after splitting)", None)
    text_column: str = _help("text column of local files / hub datasets", "text")
    lora_r: int = _help("LoRA rank", 16)
    lora_alpha: float = _help("LoRA alpha (scaling = alpha / r)", 32)
    lora_dropout: float = _help("dropout on the LoRA path", 0.05)
    lora_target_modules: list | None = _help(
        "module names to adapt; default: every linear layer inside the decoder layers", None)
    # TrainingArguments with our defaults (CPU-sized).
    max_steps: int = _help("optimizer steps", 100)
    learning_rate: float = _help("peak learning rate", 1e-4)
    per_device_train_batch_size: int = _help("examples per step and process", 16)
    gradient_accumulation_steps: int = _help("micro-batches per optimizer step", 1)
    warmup_steps: float = _help("warmup steps (a value < 1 is a fraction of max_steps)", 0.1)
    lr_scheduler_type: str = _help("learning-rate schedule", "linear")
    weight_decay: float = _help("AdamW weight decay", 0.0)
    logging_steps: int = _help("log every this many steps", 10)
    save_steps: int = _help("checkpoint every this many steps (resume starts from the last one)", 50)
    save_total_limit: int | None = _help("keep at most this many checkpoints", 2)
    seed: int = _help("random seed (data order, masking, dropout, LoRA init)", 42)
    report_to: list = _help("loggers: csv (always written), tensorboard, wandb, ...", factory=lambda: ["tensorboard"])
    dtype: str | None = _help("float32 | bfloat16 (default: fp32 on CPU, bf16 on GPU)", None)
    fast: bool = _help(
        "CPU: train under bf16 autocast where cpu.FAST_TRAINING lists this stage for this CPU class (measured "
        "there; master weights, optimizer state, losses and scores stay fp32); else fp32", False)
    gradient_checkpointing: bool = _help(
        "recompute activations in the backward pass (less memory, ~30% more compute); long batches stay chunked", False)
    lr_schedule_epochs: float | None = _help(
        "size the learning-rate schedule for this many passes over the data and stop at max_steps (LLM2Vec: 3 "
        "epochs stopped at 1,000 steps, an almost constant rate); null: the schedule ends at max_steps", None)
    eval_examples: int = _help("held-out examples (MNTP: text blocks) measured before and after training", 64)
    pool_span: str | None = _help(
        "which tokens an Encoder pools: offsets (exactly the text's, by character offsets) | llm2vec (the last n "
        "tokens, n = the text's token count alone, as LLM2Vec); null: the input folder's (offsets for a base "
        "model). Used while training and saved in the output folder", None)
    chat_format: str | None = _help(
        "LLM2Vec chat format the Encoder wraps instruction + text in: llama-2 | mistral | llama-3 | gemma | qwen | "
        "none; null: the input folder's. Saved in the output folder; supervised training wraps its texts, SimCSE "
        "does not (as LLM2Vec)", None)
    force: bool = _help("train again when output_dir holds this stage finished with a different recipe", False)
    keep_checkpoints: bool = _help("keep <output_dir>.checkpoints after the stage finished", False)
    training_args: dict = _help("other TrainingArguments keys, passed through", factory=dict)
    recipe: str | None = _help("the recipe file this config came from (recorded in the output)", None)
    merge_with: str | None = _help(
        "after training, average the finished weights with this model: input (the stage's own `model`), base "
        "(the original base model) or a model folder / hub id; null: no merge", None)
    merge_weight: float = _help("weight of merge_with's model in that average (the trained stage gets 1 - it)", 0.5)


@dataclass
class MNTPConfig(StageConfig):
    """Masked next-token prediction: bidirectional attention, mask tokens, predict each masked
    token from the position before it (the LM head stays where it was trained)."""

    stage: str = "mntp"
    mask_probability: float = _help("fraction of tokens masked", 0.2)
    mask_policy: str = _help("80-10-10 (mask / random / keep, like BERT) or all-mask", "80-10-10")
    mask_token: str = _help(
        "auto (the tokenizer's mask token, else underscore) | underscore | eos | add (a new <mask> token)", "auto")
    packing: str = _help(
        "blocks: texts with their special tokens (BOS) packed end to end into full train_max_length blocks, as "
        "LLM2Vec's group_texts | per-text: each text cut alone into windows, no special tokens", "blocks")
    train_lm_head: bool = _help(
        "train the LM head in full (not LoRA) next to the LoRA adapter, as LLM2Vec's run_mntp.py does (its LoRA is on "
        "the backbone only, so an untied head trains in full); only for models whose head is not tied to the input "
        "embeddings. The Encoder folder keeps the backbone only: the trained head is used by MNTP alone", False)


@dataclass
class EmbeddingConfig(StageConfig):
    """What every stage that trains the pooled vector takes (SimCSE, supervised, distill): the
    pooling it trains and the Matryoshka dimensions."""

    pooling: str = _help("mean | weighted_mean | last_token | first_token", "mean")
    matryoshka_dims: list = _help(
        "Matryoshka training: the loss is summed over these prefix lengths of the vector, each renormalised "
        "(list the full dimension too to train it); []: the full vector only", factory=list)
    matryoshka_weights: list | None = _help("weight of each matryoshka_dims entry in the sum; null: all 1", None)
    latent_attention: int = _help(
        "NV-Embed latent-attention pooling: a trainable layer of this many latents over the token states before "
        "`pooling` (NV-Embed: 512, then mean), saved as latent_attention.safetensors; 0: none (an input folder "
        "that has the layer keeps training it)", 0)
    latent_attention_heads: int = _help("attention heads of the latent-attention layer (must divide the dimension)", 8)


@dataclass
class ContrastiveConfig(EmbeddingConfig):
    """What both contrastive stages (SimCSE, supervised) take: the pooling they train and the
    InfoNCE scale."""

    scale: float = _help("logit scale of the InfoNCE loss (1 / temperature)", 20.0)


@dataclass
class SimCSEConfig(ContrastiveConfig):
    """Unsupervised SimCSE: the same sentence twice with dropout is the positive pair."""

    stage: str = "simcse"
    attention_dropout: float = _help("dropout on attention weights while training", 0.1)
    hidden_dropout: float = _help("dropout on each decoder layer's output while training", 0.1)
    min_words: int = _help("shortest sentence kept (words)", 5)
    max_words: int = _help("longest sentence kept (words)", 60)


@dataclass
class SupervisedConfig(ContrastiveConfig):
    """Supervised contrastive: (query, positive, hard negatives), in-batch and cross-process negatives."""

    stage: str = "supervised"
    scale: float = _help("logit scale of the InfoNCE loss (1 / temperature); LLM2Vec's loss_scale is 50", 50.0)
    query_instruction: str | None = _help("instruction before every query (attended to, not pooled)", None)
    document_instruction: str | None = _help("instruction before every positive/negative", None)
    source_instructions: dict = _help(
        "query instruction per data source ({source: instruction}); a row's own instruction column comes first, "
        "query_instruction last", factory=dict)
    instruction_template: str | None = _help(
        "how an instruction joins the text while training, e.g. '{instruction}; ' (LLM2Vec's E5 training); "
        "null: the Encoder's own template. The saved Encoder keeps its template", None)
    mask_false_negatives: bool = _help(
        "drop candidates whose text equals the query or the query's positive (not counted as negatives)", True)
    min_score: float = _help("STS-B pairs scoring at least this are positives", 4.0)
    num_negatives: int = _num_negatives(
        1, "They are those the data carries, first ones first: an STS-B pair's low-scoring partner (one at most, "
        "see negative_max_score), an E5 row's negative (one, as LLM2Vec), a pair file's `negative` column (e.g. "
        "`decoder2vec mine`'s output)")
    negative_max_score: float = _help("STS-B partners scoring at most this are hard negatives", 1.0)
    mini_batch_size: int = _help("cached (GradCache) loss: encode in chunks of this size; 0 = off", 0)
    gather_across_processes: bool = _help("use every process's documents as negatives (with gradient)", True)
    batch_per_task: bool = _help("draw each batch from a single data source", True)
    attention_dropout: float = _help("dropout on attention weights while training", 0.0)
    hidden_dropout: float = _help("dropout on each decoder layer's output while training", 0.0)


@dataclass
class DistillConfig(EmbeddingConfig):
    """Distillation from a teacher embedding model (its vectors computed once before training and
    cached in <output_dir>.checkpoints). Sentence sources: the student's vector of each text is
    pulled to the teacher's. Pair sources (query, positive), e.g. translations: the student's
    vectors of both are pulled to the teacher's vector of the query (Reimers & Gurevych 2020)."""

    stage: str = "distill"
    teacher: str = _help(
        "teacher: an anchor (minilm, multilingual-e5-small, embeddinggemma-300m: prompted as their cards say), a "
        "sentence-transformers folder or hub id (its own prompts), or a decoder2vec Encoder folder", "minilm")
    distill_loss: str = _help(
        "mse: squared distance of the normalised student vector (through a trained linear projection when the "
        "dimensions differ) to the teacher's | similarity_kl: KL divergence from the teacher's in-batch "
        "similarity distribution to the student's", "mse")
    temperature: float = _help("similarity_kl: cosine similarities are divided by this before the softmax", 0.05)
    source_limit: int | None = _help(
        "at most this many examples from each data source (a seeded sample), so sources mix in proportion; "
        "null: all", None)
    similarity_weight: float = _help(
        "mse: add this times the similarity_kl loss of the student's own vectors (0: mse alone)", 0.0)
    query_instruction: str | None = _help(
        "the instruction given to the query of each query -> document pair (e.g. libreoffice-titles-da-train); "
        "null: none", None)
    save_projection: bool = _help(
        "mse: write the trained projection to the output folder (distill_projection.safetensors); the Encoder "
        "never uses it", True)
    teacher_batch_size: int = _help(
        "texts per teacher forward when computing the teacher vectors (with fast: true where this CPU trains distill "
        "in bf16, the teacher runs under bf16 autocast too)", 64)
    num_negatives: int = _num_negatives(
        0, "Query -> document pair sources (libreoffice-titles-*, manpage-summaries-*, package-descriptions-*) "
        "only: documents of the same source's training split that the teacher ranks closest to each query, other "
        "than its positive (each learns its own teacher vector; a batch then holds 2 + this texts per pair)")
    relative_margin: float = _help(
        "num_negatives: skip a candidate whose teacher score is above positive - |positive| x this (positive: the "
        "teacher score of the query's own positive; a likely false negative; NV-Retriever's TopK-PercPos, the rule "
        "of `decoder2vec mine`'s relative_margin)", 0.05)
    min_words: int = _help("sentence sources: shortest sentence kept (words)", 3)
    max_words: int = _help("sentence sources: longest sentence kept (words)", 60)
    min_score: float = _help(
        "STS-B sources (stsb-*-train): pairs scoring at least this are read, each once; each sentence learns its "
        "own teacher vector, so a low-scoring pair teaches too (0: every pair)", 4.0)
    batch_per_task: bool = _help(
        "draw each batch from a single data source, so the in-batch similarities (similarity_kl) compare texts of "
        "one kind: help pages with help pages, STS sentences with STS sentences", False)
    attention_dropout: float = _help("dropout on attention weights while training", 0.0)
    hidden_dropout: float = _help("dropout on each decoder layer's output while training", 0.0)


@dataclass
class FinetuneConfig(StageConfig):
    """A classification head trained on a labelled .jsonl/.csv file, with LoRA (the head trained in
    full) or every weight (training/finetune.py; the dataclass is here, as every stage's is, so the
    registry below needs no import of the stage)."""

    stage: str = "finetune"
    task: str = _help("sequence: one label per text | token: one label per word (.jsonl: the text column a list of "
                      "words, the label column a list of as many labels)", "sequence")
    label_column: str = _help("label column of the labelled .jsonl/.csv files", "label")
    labels: list | None = _help("label names in id order; null: every label in the data, sorted", None)
    full: bool = _help("train every weight instead of a LoRA adapter (the head is trained in full either way)", False)
    learning_rate: float = _help("peak learning rate", 5e-4)
    eval_examples: int = _help("labelled rows held out (seeded) and scored (accuracy) before and after training", 0)


# The one list of stages (in training order). A stage's training code registers by naming its config
# class (stage.Stage.config_class); this table is all the CLI and the pipeline need to know. A new stage
# is also named on engine.py's import line (a static import the layering test sees; stage modules
# import this module, so this table cannot import them); test_one_stage_registry fails until it is.
STAGE_CONFIGS = {"mntp": MNTPConfig, "simcse": SimCSEConfig, "supervised": SupervisedConfig,
                 "distill": DistillConfig, "finetune": FinetuneConfig}
DISTILL_LOSSES = ("mse", "similarity_kl")
MASK_POLICIES = ("80-10-10", "all-mask")
MASK_TOKENS = ("auto", "underscore", "eos", "add")
PACKINGS = ("blocks", "per-text")
# Recipe keys that were renamed: the old name is an error that says the new one.
RENAMED = {
    "max_length": "train_max_length (max_length is the Encoder's inference length, which training never changes)",
    "eval_texts": "eval_examples",
    "hard_negatives": "num_negatives (at most this many hard negatives per example; 0: none)",
}


def _training_argument_names() -> set[str]:
    return {f.name for f in dataclasses.fields(TrainingArguments)}


def make_config(values: dict) -> StageConfig:
    """A stage config from a flat dict (a parsed recipe plus overrides); validates everything."""
    values = dict(values)
    stage = values.get("stage")
    if stage not in STAGE_CONFIGS:
        raise choices_error("stage", stage, STAGE_CONFIGS)
    cls = STAGE_CONFIGS[stage]
    renamed = [k for k in values if k in RENAMED]
    if renamed:
        raise Decoder2VecError(f"{stage} recipe key {renamed[0]!r} is now {RENAMED[renamed[0]]}")
    known = {f.name for f in dataclasses.fields(cls)}
    passthrough = values.pop("training_args", None) or {}
    if not isinstance(passthrough, dict):
        raise Decoder2VecError(f"training_args must be a mapping of TrainingArguments keys, got {passthrough!r}")
    passthrough = dict(passthrough)
    unknown = [k for k in values if k not in known]
    trainer_keys = _training_argument_names()
    for key in [k for k in unknown if k in trainer_keys]:
        passthrough[key] = values.pop(key)
    unknown = [k for k in unknown if k not in trainer_keys]
    bad_pass = [k for k in passthrough if k not in trainer_keys]
    if unknown or bad_pass:
        raise Decoder2VecError(
            f"unknown {stage} recipe key(s): {', '.join(unknown + bad_pass)} "
            f"(known: {', '.join(sorted(known - {'training_args'}))}, or any TrainingArguments key)"
        )
    for f in dataclasses.fields(cls):
        # YAML 1.1 reads "1e-4" (no dot) as a string; a float key takes it as the number it is.
        value = values.get(f.name)
        if isinstance(value, str) and str(f.type).startswith("float"):
            try:
                values[f.name] = float(value)
            except ValueError:
                raise Decoder2VecError(f"{f.name} must be a number, got {value!r}") from None
    if isinstance(values.get("data"), str):
        values["data"] = [values["data"]]
    if isinstance(values.get("lora_target_modules"), str):
        values["lora_target_modules"] = [values["lora_target_modules"]]
    if isinstance(values.get("report_to"), str):
        values["report_to"] = [] if values["report_to"] == "none" else [values["report_to"]]
    types = {f.name: f.type for f in dataclasses.fields(cls)}
    for key, value in values.items():
        _check_type(key, value, types[key])
    trainer_types = {f.name: f.type for f in dataclasses.fields(TrainingArguments)}
    for key, value in passthrough.items():
        _check_type(f"training_args {key}", value, trainer_types[key])
    config = cls(**values, training_args=passthrough)
    validate(config)
    return config


# What a key's annotation allows, in the words of the error message. An int is a float; a bool
# (a Python int) is neither; a path object is a string.
_SIMPLE_TYPES = {"int": (int, "an integer"), "float": ((int, float), "a number"), "str": ((str, os.PathLike), "a string"),
                 "bool": (bool, "true or false"), "list": (list, "a list"), "dict": (dict, "a mapping"),
                 "None": (type(None), "null")}


def _check_type(key: str, value, annotation) -> None:
    """`key: value` against its field's annotation ("float", "int | None", bool, ...): a value of
    another type is an error naming key, value and the expected type, before anything compares or
    does arithmetic with it. Annotations with other types (transformers' enums) are not checked."""
    if isinstance(annotation, str):  # this module's fields (from __future__ import annotations)
        names = [n.strip() for n in annotation.split("|")]
    else:  # TrainingArguments' fields: bool, int | None, ...
        names = [getattr(t, "__name__", str(t)) for t in (typing.get_args(annotation) or (annotation,))]
    names = ["None" if n == "NoneType" else n for n in names]
    if not names or any(n not in _SIMPLE_TYPES for n in names):
        return
    if isinstance(value, bool) and "bool" not in names:
        ok = False
    else:
        ok = any(isinstance(value, _SIMPLE_TYPES[n][0]) for n in names)
    if not ok:
        expected = " or ".join(_SIMPLE_TYPES[n][1] for n in names)
        raise Decoder2VecError(f"{key} must be {expected}, got {value!r} ({type(value).__name__})")


def validate(config: StageConfig) -> None:
    def need(ok: bool, message: str):
        if not ok:
            raise Decoder2VecError(message)

    need(bool(config.output_dir), f"{config.stage}: output_dir is required")
    need(bool(config.data), f"{config.stage}: data is required (a packaged name, a file, or a hub dataset)")
    for key in ("train_max_length", "lora_r", "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps",
                "logging_steps", "save_steps"):
        value = getattr(config, key)
        need(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
             f"{key} must be an integer >= 1, got {value!r}")
    need(config.learning_rate > 0, f"learning_rate must be > 0, got {config.learning_rate}")
    need(0 <= config.lora_dropout < 1, f"lora_dropout must be in [0, 1), got {config.lora_dropout}")
    need(config.eval_examples >= 0, f"eval_examples must be >= 0, got {config.eval_examples}")
    if config.pool_span is not None and config.pool_span not in POOL_SPANS:
        raise choices_error("pool_span", config.pool_span, POOL_SPANS)
    if config.chat_format not in (None, "none") and config.chat_format not in FORMATS:
        raise choices_error("chat_format", config.chat_format, [*FORMATS, "none"])
    need(config.lr_schedule_epochs is None or config.lr_schedule_epochs > 0,
         f"lr_schedule_epochs must be > 0 or null, got {config.lr_schedule_epochs}")
    if isinstance(config, MNTPConfig):
        need(0 < config.mask_probability < 1, f"mask_probability must be in (0, 1), got {config.mask_probability}")
        if config.mask_policy not in MASK_POLICIES:
            raise choices_error("mask_policy", config.mask_policy, MASK_POLICIES)
        if config.mask_token not in MASK_TOKENS:
            raise choices_error("mask_token", config.mask_token, MASK_TOKENS)
        if config.packing not in PACKINGS:
            raise choices_error("packing", config.packing, PACKINGS)
    need(0 <= config.merge_weight <= 1, f"merge_weight must be in [0, 1], got {config.merge_weight}")
    if isinstance(config, EmbeddingConfig):
        check_pooling(config.pooling)
        for key in ("attention_dropout", "hidden_dropout"):
            need(0 <= getattr(config, key) < 1, f"{key} must be in [0, 1), got {getattr(config, key)}")
        _check_matryoshka(config)
        need(isinstance(config.latent_attention, int) and config.latent_attention >= 0,
             f"latent_attention must be an integer >= 0 (latents; 0: none), got {config.latent_attention!r}")
        need(isinstance(config.latent_attention_heads, int) and config.latent_attention_heads >= 1,
             f"latent_attention_heads must be an integer >= 1, got {config.latent_attention_heads!r}")
    if isinstance(config, (SupervisedConfig, DistillConfig)):
        need(isinstance(config.num_negatives, int) and not isinstance(config.num_negatives, bool)
             and config.num_negatives >= 0, f"num_negatives must be an integer >= 0, got {config.num_negatives!r}")
    if isinstance(config, ContrastiveConfig):
        need(config.scale > 0, f"scale must be > 0, got {config.scale}")
    if isinstance(config, DistillConfig):
        if config.distill_loss not in DISTILL_LOSSES:
            raise choices_error("distill_loss", config.distill_loss, DISTILL_LOSSES)
        need(config.temperature > 0, f"temperature must be > 0, got {config.temperature}")
        need(config.distill_loss != "similarity_kl" or config.per_device_train_batch_size >= 2,
             "distill_loss: similarity_kl compares each text with the batch's others: per_device_train_batch_size "
             f"must be >= 2, got {config.per_device_train_batch_size}")
        need(isinstance(config.teacher_batch_size, int) and config.teacher_batch_size >= 1,
             f"teacher_batch_size must be an integer >= 1, got {config.teacher_batch_size!r}")
        need(config.relative_margin >= 0, f"relative_margin must be >= 0, got {config.relative_margin}")
        need(bool(config.teacher), "distill: teacher is required (minilm, a sentence-transformers model or an "
                                   "Encoder folder)")
    if isinstance(config, SupervisedConfig):
        need(config.mini_batch_size >= 0, f"mini_batch_size must be >= 0, got {config.mini_batch_size}")
        unknown = [k for k in config.source_instructions if k not in config.data]
        need(not unknown, f"source_instructions names {unknown[0] if unknown else ''!r}, which is not in data "
                          f"({', '.join(map(str, config.data))})")
        template = config.instruction_template
        need(template is None or "{instruction}" in template,
             f"instruction_template must contain {{instruction}}, got {template!r}")


def _check_matryoshka(config: EmbeddingConfig) -> None:
    dims, weights = config.matryoshka_dims, config.matryoshka_weights
    if not isinstance(dims, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in dims):
        raise Decoder2VecError(f"matryoshka_dims must be a list of integers >= 1, got {dims!r}")
    if len(set(dims)) != len(dims):
        raise Decoder2VecError(f"matryoshka_dims lists a dimension twice: {dims}")
    if weights is None:
        return
    if not dims:
        raise Decoder2VecError(f"matryoshka_weights {weights!r} given without matryoshka_dims")
    if (not isinstance(weights, list) or len(weights) != len(dims)
            or not all(isinstance(w, (int, float)) and not isinstance(w, bool) and w > 0 for w in weights)):
        raise Decoder2VecError(f"matryoshka_weights must be one number > 0 per matryoshka_dims entry ({dims}), "
                               f"got {weights!r}")


def parse_value(text: str):
    """A --set value: YAML scalars/lists (`3`, `1e-4`, `true`, `[a, b]`, `null`)."""
    return yaml.safe_load(text) if text.strip() else ""


def load_recipe(recipe: str | Path | dict, **overrides) -> StageConfig:
    """Read a YAML recipe (or a dict), apply overrides, validate; relative paths in the recipe
    stay relative to the working directory, like every CLI path."""
    if isinstance(recipe, dict):
        values, source = dict(recipe), None
    else:
        path = check_data_file(recipe, "recipe")
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError:
            raise not_utf8_error(path) from None
        except yaml.YAMLError as exc:
            raise Decoder2VecError(f"recipe {recipe} is not valid YAML: {' '.join(str(exc).split())}") from None
        if not isinstance(values, dict):
            raise Decoder2VecError(f"recipe {recipe} must be a mapping of key: value")
        source = str(path)
    values.update(overrides)
    values.setdefault("recipe", source)
    return make_config(values)


def help_table(stage: str) -> list[tuple[str, object, str]]:
    """(key, default, help) of every key a stage takes: for docs and `train --help-keys`."""
    rows = []
    for f in dataclasses.fields(STAGE_CONFIGS[stage]):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        rows.append((f.name, default, f.metadata.get("help", "")))
    return rows
