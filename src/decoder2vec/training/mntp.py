"""MNTP (masked next-token prediction, LLM2Vec): with bidirectional attention, mask tokens and
predict the token at position i from the output at position i-1, so the LM head keeps the job it
was pre-trained for (next-token prediction) while the model learns to use future context.
"""

from __future__ import annotations

import inspect
import random

import torch
import torch.nn.functional as F

from ..model import loading
from ..model.bidirectional import make_bidirectional
from ..folder.config import EncoderConfig, apply_recipe_keys, read_config
from ..errors import Decoder2VecError
from ..data.corpora import load_texts
from ..data.paper import is_paper_source, paper_texts
from .config import MNTPConfig
from .stage import Stage, check_enough

MIN_CHUNK_TOKENS = 8
# LLM2Vec packs with datasets' map(batched=True): 1,000 texts at a time, each group's remainder
# (under one block) dropped. Packing in the same groups gives the very same blocks.
PACK_GROUP = 1000


def mask_token_id(tokenizer, choice: str) -> tuple[int, bool]:
    """(id of the mask token, whether a new token was added to the vocabulary)."""
    if choice == "auto":
        if tokenizer.mask_token_id is not None:
            return tokenizer.mask_token_id, False
        choice = "underscore"
    if choice == "eos":
        if tokenizer.eos_token_id is None:
            raise Decoder2VecError("mask_token=eos but the tokenizer has no EOS token; use underscore or add")
        return tokenizer.eos_token_id, False
    if choice == "underscore":
        # LLM2Vec's choice for Llama/Mistral ("blank"): the vocabulary's "_" token, looked up as a
        # token (sentencepiece would tokenize the string "_" as "▁" + "_").
        token = tokenizer.convert_tokens_to_ids("_")
        if isinstance(token, int) and token != tokenizer.unk_token_id:
            return token, False
        ids = tokenizer("_", add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise Decoder2VecError("mask_token=underscore: '_' is not a single token here; use eos or add")
        return ids[0], False
    if choice == "add":
        if tokenizer.mask_token_id is None:
            tokenizer.add_special_tokens({"mask_token": "<mask>"})
        return tokenizer.mask_token_id, True
    raise Decoder2VecError(f"unknown mask_token {choice!r}")


def chunk_texts(tokenizer, texts: list[str], max_length: int) -> list[list[int]]:
    """Cut every text into windows of at most max_length tokens (texts are never joined)."""
    chunks = []
    for ids in tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]:
        for start in range(0, len(ids), max_length):
            window = ids[start:start + max_length]
            if len(window) >= MIN_CHUNK_TOKENS:
                chunks.append(window)
    return chunks


def pack_blocks(tokenizer, texts: list[str], length: int, group: int = PACK_GROUP) -> list[list[int]]:
    """LLM2Vec's group_texts: tokenize every text with its special tokens (BOS), join each group of
    `group` texts end to end and cut full blocks of `length` tokens; a group's tail is dropped."""
    blocks = []
    for start in range(0, len(texts), group):
        ids = [t for row in tokenizer(texts[start:start + group], verbose=False)["input_ids"] for t in row]
        blocks += [ids[i:i + length] for i in range(0, len(ids) - length + 1, length)]
    return blocks


def pad_chunks(chunks: list[list[int]], pad_id: int) -> dict:
    width = max(len(c) for c in chunks)
    input_ids = torch.full((len(chunks), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(chunks), width), dtype=torch.long)
    for row, chunk in enumerate(chunks):
        input_ids[row, :len(chunk)] = torch.tensor(chunk)
        attention[row, :len(chunk)] = 1
    return {"input_ids": input_ids, "attention_mask": attention}


def mask_batch(input_ids: torch.Tensor, attention: torch.Tensor, *, mask_id: int, vocab_size: int,
               probability: float, policy: str, generator: torch.Generator,
               special_ids: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(masked input ids, labels), drawn exactly as transformers' DataCollatorForLanguageModeling
    (run_mntp.py's collator; its full-masking subclass for all-mask) draws them from the torch
    RNG, here from `generator`: the same seed gives the same masks (benchmarks/reference_training.py
    compares them with transformers 4.44's collator). labels[i] is the original token where
    position i was masked, -100 elsewhere. Special tokens (BOS in packed blocks) and padding are
    never masked. Position 0 may be masked, as in the reference: the loss shifts, so nothing
    predicts it and its label is never used."""
    input_ids, attention = input_ids.cpu(), attention.cpu()
    special = ~attention.bool()
    if special_ids:
        special |= torch.isin(input_ids, torch.tensor(special_ids))
    probabilities = torch.full(input_ids.shape, probability)
    probabilities.masked_fill_(special, 0.0)
    chosen = torch.bernoulli(probabilities, generator=generator).bool()
    if not chosen[:, 1:].any():  # a tiny batch can draw no usable mask; mask one token so the loss exists
        maskable = ~special
        maskable[:, 0] = False
        rows, cols = maskable.nonzero(as_tuple=True)
        if not len(rows):
            raise Decoder2VecError("mntp: a batch has no token that can be masked (all special or padding)")
        pick = int(torch.randint(len(rows), (1,), generator=generator))
        chosen[rows[pick], cols[pick]] = True
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
    masked = input_ids.clone()
    if policy == "all-mask":
        masked[chosen] = mask_id
        return masked, labels
    # 80-10-10: mask; then half of the rest a random token, the other half unchanged.
    replaced = torch.bernoulli(torch.full(input_ids.shape, 0.8), generator=generator).bool() & chosen
    masked[replaced] = mask_id
    swapped = torch.bernoulli(torch.full(input_ids.shape, 0.5), generator=generator).bool() & chosen & ~replaced
    random_words = torch.randint(vocab_size, input_ids.shape, dtype=torch.long, generator=generator)
    masked[swapped] = random_words[swapped]
    return masked, labels


class MNTPStage(Stage):
    config_class = MNTPConfig
    config: MNTPConfig

    def load(self) -> None:
        cfg = self.config
        source = loading.resolve_model(cfg.model)
        self.net, self.tokenizer = loading.load_model(source, with_lm_head=True, dtype=cfg.dtype)
        make_bidirectional(self.net)
        previous = read_config(source)  # None unless source is an Encoder folder (a previous stage's)
        if previous is not None and not getattr(self.net.config.get_text_config(), "tie_word_embeddings", False):
            # Encoder folders keep the backbone only; an untied LM head would start out random.
            raise Decoder2VecError(
                f"mntp: {cfg.model} is an Encoder folder without the LM head MNTP needs; start MNTP from the base model")
        if cfg.train_lm_head and _head_is_tied(self.net):
            raise Decoder2VecError(
                f"mntp: train_lm_head: the LM head of {cfg.model} is tied to its input embeddings, so training it would "
                "change the Encoder's embeddings too (LLM2Vec leaves a tied head frozen); set train_lm_head: false")
        self.mask_id, added = mask_token_id(self.tokenizer, cfg.mask_token)
        if added:
            # A new row in the embedding matrix; LoRA alone would leave it untrained, so peft
            # trains exactly that row (trainable_token_indices).
            self.net.resize_token_embeddings(len(self.tokenizer))
            self.trainable_token_indices = [self.mask_id]
        self.encoder_config = previous or EncoderConfig(
            base_model=str(cfg.model) if cfg.model else loading.DEFAULT_MODEL)
        self.encoder_config.bidirectional = True
        # Recorded for the Encoder (MNTP itself reads raw text: no instruction, no chat markup).
        apply_recipe_keys(self.encoder_config, pool_span=cfg.pool_span, chat_format=cfg.chat_format)
        self.special_ids = sorted(set(self.tokenizer.all_special_ids) - {self.mask_id})

    def attach(self, peft_model) -> None:
        base = peft_model.get_base_model()
        self.lm_head = base.get_output_embeddings()
        self.softcap = getattr(base.config.get_text_config(), "final_logit_softcapping", None)
        backbone = getattr(base, base.base_model_prefix)
        takes = "logits_to_keep" in inspect.signature(base.forward).parameters
        # use_cache=False: a training forward must not build a KV cache it never reads.
        self.forward_kwargs = {"logits_to_keep": 1, "use_cache": False} if takes else {"use_cache": False}
        # The CausalLM is asked for the last position's logits only (logits_to_keep=1); the
        # backbone's states are caught here and the LM head runs on the masked positions alone,
        # which saves a (tokens x vocabulary) matmul.
        backbone.register_forward_hook(self._keep_states)

    def _keep_states(self, module, args, output):
        self._states = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]

    def dataset(self) -> list:
        cfg = self.config
        texts = [t for source in cfg.data for t in (
            paper_texts(source) if is_paper_source(source) else load_texts(source, text_column=cfg.text_column))]
        if cfg.packing == "blocks":
            chunks = pack_blocks(self.tokenizer, texts, cfg.train_max_length)
            if not chunks:
                raise Decoder2VecError(f"mntp: {cfg.data} holds fewer than train_max_length={cfg.train_max_length} "
                                       "tokens per 1,000 texts: no full block to train on (or use packing: per-text)")
        else:
            chunks = chunk_texts(self.tokenizer, texts, cfg.train_max_length)
        random.Random(cfg.seed).shuffle(chunks)
        held = min(cfg.eval_examples, len(chunks) // 10)  # never more than a tenth of a small corpus
        self.eval_chunks, train = chunks[:held], chunks[held:]
        if cfg.data_limit:
            train = train[:cfg.data_limit]
        return check_enough(train, cfg, "text chunks")

    def collate(self, items: list) -> dict:
        return pad_chunks(items, self.tokenizer.pad_token_id)

    def _logits_and_labels(self, model, inputs, generator: torch.Generator):
        # Masking happens here, not in the collator: the generator is seeded from the step number
        # (engine), so a resumed run masks exactly like an uninterrupted one, whatever the data
        # loader prefetched.
        masked, labels = mask_batch(
            inputs["input_ids"], inputs["attention_mask"], mask_id=self.mask_id, vocab_size=len(self.tokenizer),
            probability=self.config.mask_probability, policy=self.config.mask_policy, generator=generator,
            special_ids=self.special_ids)
        return self.predict(model, masked, inputs["attention_mask"], labels)

    def predict(self, model, masked: torch.Tensor, attention: torch.Tensor, labels: torch.Tensor):
        """(logits, targets) of the masked positions: position i-1 predicts the token at position i.
        The loss is their cross-entropy (benchmarks/reference_training.py compares it with LLM2Vec's)."""
        device = attention.device
        model(input_ids=masked.to(device), attention_mask=attention, **self.forward_kwargs)
        states, labels = self._states, labels.to(self._states.device)
        self._states = None
        target = labels[:, 1:]
        chosen = target != -100
        logits = self.lm_head(states[:, :-1][chosen])
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits.float(), target[chosen]

    def loss(self, model, inputs):
        self.tokens_seen += int(inputs["attention_mask"].sum())
        logits, target = self._logits_and_labels(model, inputs, torch.Generator().manual_seed(self.step_seed))
        return F.cross_entropy(logits, target), {}

    @torch.no_grad()
    def evaluate(self, model) -> dict:
        """MNTP accuracy on the held-out chunks: the same masks every time (fixed seed)."""
        if not self.eval_chunks:
            return {}
        was_training = model.training
        model.eval()
        generator = torch.Generator().manual_seed(1234)
        correct = total = 0
        loss_sum = 0.0
        size = self.config.per_device_train_batch_size
        device = next(model.parameters()).device
        for start in range(0, len(self.eval_chunks), size):
            batch = {k: v.to(device) for k, v in self.collate(self.eval_chunks[start:start + size]).items()}
            logits, target = self._logits_and_labels(model, batch, generator)
            correct += int((logits.argmax(-1) == target).sum())
            total += int(target.numel())
            loss_sum += float(F.cross_entropy(logits, target, reduction="sum"))
        model.train(was_training)
        return {"mntp_accuracy": round(correct / total, 4), "mntp_eval_loss": round(loss_sum / total, 4),
                "mntp_eval_tokens": total}

    def extra_modules(self) -> dict:
        # run_mntp.py puts LoRA on the backbone only, so the (untied) head trains in full; the
        # engine adds it to the optimizer, checkpoints it and reloads it on resume.
        if self.config.train_lm_head and getattr(self, "lm_head", None) is not None:
            return {"mntp_lm_head": self.lm_head}
        return {}

    def backbone(self, merged):
        return getattr(merged, merged.base_model_prefix)


def _head_is_tied(net) -> bool:
    head, embeddings = net.get_output_embeddings(), net.get_input_embeddings()
    return head is not None and embeddings is not None and head.weight.data_ptr() == embeddings.weight.data_ptr()
