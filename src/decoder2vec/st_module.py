"""decoder2vec's own sentence-transformers module, for exports that must match `Encoder.encode`
bit for bit (`decoder2vec export --exact`).

The stock Transformer + Pooling export needs no decoder2vec, but ST pools special tokens (a
BOS) and drops a prompt by its stand-alone token count. This module tokenizes, attends and pools
with the Encoder itself. The price: loading needs decoder2vec installed and, in
sentence-transformers >= 6, `SentenceTransformer(folder, trust_remote_code=True)` because the
class lives outside the sentence_transformers package.
"""

from __future__ import annotations

from sentence_transformers.base.modules.input_module import InputModule

from .encoder import Batch, Encoder
from .errors import Decoder2VecError
from .folder.sentence_transformers import EXACT_MODULE as CLASS_REF


class EncoderModule(InputModule):
    """A whole Encoder as one sentence-transformers module: text in, sentence_embedding out."""

    config_keys: list[str] = []  # the folder's decoder2vec_config.json is the configuration
    save_in_root = True

    def __init__(self, encoder: Encoder):
        super().__init__()
        self.encoder = encoder
        self.model = encoder.model  # a registered submodule, so ST's .to(device) moves the weights

    @property
    def tokenizer(self):
        return self.encoder.tokenizer

    @property
    def max_seq_length(self) -> int:
        return self.encoder.max_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        self.encoder.config.max_length = value

    def get_embedding_dimension(self) -> int:
        return self.encoder.dimension

    def instruction_from_prompt(self, prompt: str | None) -> str | None:
        """ST prompts hold the formatted prefix; the Encoder wants the bare instruction back."""
        if not prompt:
            return None
        head, _, tail = self.encoder.config.instruction_template.partition("{instruction}")
        if prompt.startswith(head) and prompt.endswith(tail) and len(prompt) >= len(head) + len(tail):
            return prompt[len(head):len(prompt) - len(tail)] or None
        return prompt  # a prompt the user typed: treat it as the instruction itself

    def preprocess(self, inputs, prompt: str | None = None, **kwargs) -> dict:
        texts = list(inputs)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise Decoder2VecError(f"inputs[{i}] is {type(text).__name__}; decoder2vec encoders take text only")
        instruction = self.instruction_from_prompt(prompt)
        ids, masks, _ = self.encoder.tokenize(texts, [instruction] * len(texts))
        batch = self.encoder.collate(ids, masks)
        return {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask, "pool_mask": batch.pool_mask}

    def forward(self, features: dict, **kwargs) -> dict:
        batch = Batch(features["input_ids"], features["attention_mask"], features["pool_mask"])
        features["sentence_embedding"] = self.encoder.embed(batch).float()
        return features

    def save(self, output_path: str, *args, safe_serialization: bool = True, **kwargs) -> None:
        # Not Encoder.save_pretrained: ST owns this folder and writes its own files into it.
        self.encoder.write_model_files(output_path)

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", token=None, cache_folder=None, revision=None,
             local_files_only: bool = False, trust_remote_code: bool = False, model_kwargs=None, **kwargs):
        folder = cls.load_dir_path(model_name_or_path, subfolder=subfolder, token=token, cache_folder=cache_folder,
                                   revision=revision, local_files_only=local_files_only)
        dtype = (model_kwargs or {}).get("dtype") or (model_kwargs or {}).get("torch_dtype")
        encoder = Encoder.from_pretrained(folder, device="cpu", dtype=dtype, trust_remote_code=trust_remote_code)
        return cls(encoder)


__all__ = ["EncoderModule", "CLASS_REF"]
