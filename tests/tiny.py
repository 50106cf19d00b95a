"""Tiny randomly initialised models of every supported family, built from configs (no downloads),
and a tiny byte-level BPE tokenizer trained in memory."""

from __future__ import annotations

import functools

import numpy as np
import torch

# model_type -> config overrides that make it tiny. Every family decoder2vec supports is here.
FAMILIES = {
    "llama": {},
    "mistral": {},
    "qwen2": {},
    "qwen3": {"head_dim": 8},
    "gemma": {"head_dim": 8},
    "gemma2": {"head_dim": 8, "sliding_window": 4},
    "gemma3_text": {"head_dim": 8, "sliding_window": 4, "layer_types": ["sliding_attention", "full_attention"]},
    "phi3": {},
    "gpt2": {"n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 128},
    "gpt_neox": {},
    "opt": {"word_embed_proj_dim": 32, "ffn_dim": 64},
}
COMMON = dict(
    vocab_size=320, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0, bos_token_id=1, eos_token_id=2,
)

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A decoder-only language model predicts the next token.",
    "Bidirectional attention lets every token see every other token.",
    "Embeddings map texts to vectors; similar texts get similar vectors.",
    "Paris is the capital of France, Berlin the capital of Germany, Copenhagen of Denmark.",
    "Retrieve passages that answer the question: what is a transformer?",
] * 4


@functools.lru_cache(maxsize=1)
def tiny_tokenizer_files():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer)
    return tok.to_str()


def tiny_tokenizer():
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(tiny_tokenizer_files()),
        pad_token="<pad>", bos_token="<s>", eos_token="</s>",
    )


def tiny_config(family: str):
    from transformers import AutoConfig

    overrides = {**COMMON, **FAMILIES[family]}
    if family == "gpt2":
        for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "max_position_embeddings"):
            overrides.pop(key)
    return AutoConfig.for_model(family, **overrides)


def tiny_model(family: str, seed: int = 0):
    from transformers import AutoModel

    from decoder2vec.model.bidirectional import quirks_for

    torch.manual_seed(seed)
    config = tiny_config(family)
    attn = quirks_for(config).get("attn_implementation", "sdpa")
    model = AutoModel.from_config(config, attn_implementation=attn)
    return model.eval()


def tiny_encoder(family: str = "llama", **config):
    from decoder2vec import Encoder, EncoderConfig

    config.setdefault("max_length", COMMON["max_position_embeddings"])  # GPT-2/OPT have no positions past it
    return Encoder(tiny_model(family), tiny_tokenizer(), EncoderConfig(**config))


def assert_batch_invariant(encoder, texts, bound: float = 1e-4) -> np.ndarray:
    """A text's normalised vector is the same alone, in its batch, and in another order and
    batch size next to a long text that pads every other row (within `bound`); returns the batch's
    vectors."""
    batched = encoder.encode(texts, normalize_embeddings=True)
    alone = np.stack([encoder.encode(text, normalize_embeddings=True) for text in texts])
    reordered = encoder.encode(list(texts[::-1]) + ["a much longer text that pads every other row " * 3],
                               normalize_embeddings=True, batch_size=7)[:len(texts)][::-1]
    assert np.abs(batched - alone).max() <= bound
    assert np.abs(batched - reordered).max() <= bound
    return batched
