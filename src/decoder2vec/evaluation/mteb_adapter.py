"""Run MTEB on a decoder2vec Encoder: the Encoder behind mteb 2.x's `EncoderProtocol`.

>>> import mteb
>>> from decoder2vec.evaluation.mteb_adapter import MtebEncoder
>>> model = MtebEncoder("smollm2-135m")                       # or MtebEncoder(an_encoder)
>>> mteb.evaluate(model, mteb.get_tasks(tasks=["STSBenchmark"]))   # needs the hub for the data

How instructions arrive: mteb gives `encode()` the task's metadata and a prompt type (query or
document). The instruction is mteb's (`get_instruction`: a per-task `prompts_dict` entry first,
then the task's own prompt, then mteb's default for its type), passed to the Encoder as
`instruction=` (never pooled). Documents of retrieval tasks get no instruction, as in LLM2Vec and
E5; `apply_instruction_to_documents=True` changes that.

`instructions="llm2vec"` runs the LLM2Vec paper's protocol instead (llm2vec_protocol.py): llm2vec
0.2.3's 67 per-task instructions, "instruction text" joined by a space, queries only, so scores
compare with the paper's table. A dict {mteb task name: instruction} uses your own table.

Chat format: texts are encoded unwrapped by default, even when the folder names a chat_format
(the paper recipes record one, and training wraps with it). That is what llm2vec's own MTEB
evaluation does: its scripts load the released `...-mntp` repositories as the base model, and
`prepare_for_tokenization` wraps only when the model's name is exactly an instruct hub id, so
the published scores are unwrapped (llm2vec issue #103). `wrap_in_chat_format=True` wraps as
the Encoder does elsewhere: the folder's chat_format, and in the llm2vec protocol also the format
llm2vec keys to a base model's hub id (Llama-3-8B-Instruct, Mistral-7B-Instruct-v0.2, ...).

>>> model = MtebEncoder("runs/llama3/supervised", instructions="llm2vec")
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
from datasets import Dataset
from mteb.abstasks.sts import AbsTaskSTS
from mteb.abstasks.task_metadata import TaskMetadata
from mteb.models.abs_encoder import AbsEncoder
from mteb.models.model_meta import ModelMeta, ScoringFunction
from mteb.types import PromptType

from ..encoder import Encoder
from ..errors import Decoder2VecError
from . import llm2vec_protocol
from .settings import encoder_settings


class MtebEncoder(AbsEncoder):
    """A decoder2vec Encoder as an mteb encoder (`isinstance(x, mteb.models.EncoderProtocol)`)."""

    def __init__(self, model_name=None, revision: str | None = None, *, device: str | None = None,
                 name: str | None = None, prompts_dict: dict[str, str] | None = None,
                 instructions: str | dict[str, str] | None = None,
                 apply_instruction_to_documents: bool = False, wrap_in_chat_format: bool = False,
                 batch_size: int = 32, **encoder_kwargs: Any):
        if isinstance(model_name, Encoder):
            self.model = model_name
        elif model_name is None or isinstance(model_name, str):
            self.model = Encoder.from_pretrained(model_name, device=device, **encoder_kwargs)
        else:
            raise Decoder2VecError(f"MtebEncoder wraps a decoder2vec Encoder or a model name, not {type(model_name).__name__}")
        if instructions is not None and instructions != "llm2vec" and not isinstance(instructions, dict):
            raise Decoder2VecError(f"instructions must be None, 'llm2vec' or a dict of task name -> instruction; "
                                   f"got {instructions!r}")
        self.prompts_dict = prompts_dict
        self.instructions = instructions
        self.apply_instruction_to_documents = apply_instruction_to_documents
        self.wrap_in_chat_format = wrap_in_chat_format
        self.batch_size = batch_size
        self.mteb_model_meta = model_meta(self.model, name=name, revision=revision)

    def task_instruction(self, task_metadata, prompt_type: PromptType | None) -> str | None:
        """The instruction a task's texts get (None for documents unless asked)."""
        if prompt_type == PromptType.document and not self.apply_instruction_to_documents:
            return None
        if self.instructions == "llm2vec":
            table = llm2vec_protocol.task_instructions()
            if task_metadata.name in table:
                return table[task_metadata.name]
            return llm2vec_protocol.llm2vec_instruction(self.get_instruction(task_metadata, prompt_type)) or None
        if isinstance(self.instructions, dict) and task_metadata.name in self.instructions:
            return self.instructions[task_metadata.name] or None
        return self.get_instruction(task_metadata, prompt_type) or None

    def encode(self, inputs, *, task_metadata, hf_split: str, hf_subset: str,
               prompt_type: PromptType | None = None, **kwargs: Any) -> np.ndarray:
        texts = [text for batch in inputs for text in batch["text"]]
        instruction = self.task_instruction(task_metadata, prompt_type)
        # The Encoder wraps in the chat format itself (Encoder.tokenize), so the format is set on its
        # config for this call: none by default (llm2vec's evaluation, see the module docstring).
        chat = None
        if getattr(self, "wrap_in_chat_format", False):
            chat = (llm2vec_protocol.chat_format_name(self.model.config) if self.instructions == "llm2vec"
                    else self.model.config.chat_format)
        template = "{instruction} " if self.instructions == "llm2vec" else None
        with encoder_settings(self.model, instruction_template=template), _chat_format(self.model, chat):
            return self.model.encode(
                texts, instruction=instruction, batch_size=kwargs.get("batch_size", self.batch_size),
                normalize_embeddings=False, show_progress_bar=kwargs.get("show_progress_bar", False),
            )


@contextlib.contextmanager
def _chat_format(encoder, name: str | None):
    """The Encoder's chat_format set to `name` (None: unwrapped) for the block, then put back."""
    config = getattr(encoder, "config", None)
    if not hasattr(config, "chat_format"):  # an encoder without a chat format to set
        yield
        return
    before = config.chat_format
    config.chat_format = name
    try:
        yield
    finally:
        config.chat_format = before


def model_meta(encoder, *, name: str | None = None, revision: str | None = None) -> ModelMeta:
    """mteb's description of an Encoder: name (`decoder2vec/<base model>` unless given), size,
    dimension, max tokens, cosine similarity, and that it takes instructions."""
    config = encoder.config
    base = str(config.base_model or "model").rstrip("/").split("/")[-1]
    stages = "-".join(str(s.get("stage")) for s in config.stages if isinstance(s, dict))
    name = name or f"decoder2vec/{base}" + (f"-{stages}" if stages else "")
    if "/" not in name:
        name = f"decoder2vec/{name}"  # mteb requires "organisation/model"
    # An exported backend (onnx, openvino) holds no torch module: its size is not known here.
    weights = list(encoder.model.parameters()) if encoder.model is not None else []
    n_params = sum(p.numel() for p in weights) or None
    bytes_per = weights[0].element_size() if weights else None
    return ModelMeta(
        loader=MtebEncoder,
        name=name,
        revision=revision,
        release_date=None,
        languages=None,
        n_parameters=n_params,
        memory_usage_mb=round(n_params * bytes_per / 2**20, 1) if n_params else None,
        max_tokens=config.max_length,
        embed_dim=encoder.dimension,
        license=None,
        open_weights=True,
        public_training_code=None,
        public_training_data=None,
        framework=["PyTorch"],
        similarity_fn_name=ScoringFunction.COSINE,
        use_instructions=True,
        training_datasets=set(),
        adapted_from=str(config.base_model) if config.base_model else None,
    )


def local_sts_task(pairs, *, name: str = "Decoder2VecLocalSTS", language: str = "eng-Latn"):
    """An mteb STS task whose data is given here (list of (sentence1, sentence2, score 0..5)), so
    `mteb.evaluate` runs without the hub. Used by the tests; handy for private STS data too."""
    rows = list(pairs)
    if not rows:
        raise Decoder2VecError("local_sts_task needs at least one (sentence1, sentence2, score) pair")

    class LocalSTS(AbsTaskSTS):
        min_score = 0
        max_score = 5
        metadata = TaskMetadata(
            name=name,
            dataset={"path": f"local/{name}", "revision": "local"},
            description="STS pairs supplied in memory by decoder2vec (no download).",
            reference=None,
            type="STS",
            category="t2t",
            modalities=["text"],
            eval_splits=["test"],
            eval_langs=[language],
            main_score="cosine_spearman",
            date=None,
            domains=None,
            task_subtypes=None,
            license=None,
            annotations_creators=None,
            dialect=None,
            sample_creation=None,
            bibtex_citation=None,
        )

        def load_data(self, num_proc=None, **kwargs):
            # Replaces the hub download: the dataset is the pairs given above.
            self.dataset = {"test": Dataset.from_dict({
                "sentence1": [a for a, _, _ in rows], "sentence2": [b for _, b, _ in rows],
                "score": [float(s) for _, _, s in rows],
            })}
            self.data_loaded = True

    return LocalSTS()
