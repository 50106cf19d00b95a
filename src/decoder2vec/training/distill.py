"""Distillation: the student (the Encoder being trained) learns a teacher embedding model's vectors.

Examples are a text alone (sentence sources) or a (query, positive) pair (pair sources, e.g. the
LibreOffice en-da/en-de translations): every student text of an example has the teacher's vector
of its first text as its target, so a translation is pulled to the teacher's vector of the English
(Reimers & Gurevych 2020, multilingual knowledge distillation). The teacher runs once, before
training (teacher.py caches its vectors in <output_dir>.checkpoints, so a resume reads them).

Losses (`distill_loss`):
- mse: squared Euclidean distance between the unit-length student vector and the teacher's,
  summed over dimensions and averaged over texts (= 2 - 2 cos). When the dimensions differ the
  student vector goes through a linear projection to the teacher's size first, trained with the
  LoRA parameters. The saved Encoder never uses it (its vectors are the student's own); it is
  written to the folder as distill_projection.safetensors for inspection (`save_projection`).
- similarity_kl: each text's softmax over its cosine similarities to the batch's other texts
  (divided by `temperature`), teacher's (of the targets) against student's: KL(teacher || student).
  No projection: only similarities are compared. A translation's teacher similarity to its English
  is 1, so the pair is pulled together.

With matryoshka_dims the loss is summed over the vector's prefixes (each renormalised; mse gets
one projection per prefix length that differs from the teacher's dimension).

Hard negatives (`num_negatives` > 0, `add_hard_negatives`): after the teacher has run, each query
of a query -> document source gets the documents of the same source's training split that the
teacher ranks closest to it, other than its positive, as extra texts learning their own teacher
vectors; both losses then see the confusable documents in the query's batch. A candidate scoring
above positive - |positive| x relative_margin (the positive's teacher score) is skipped as a likely
false negative (NV-Retriever's TopK-PercPos, Moreira et al. 2024): the names, defaults' meaning and
rule of `decoder2vec mine` (mining.py). Held-out documents are never candidates.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..cpu import trains_in_bf16
from ..data import registry
from ..data.corpora import LOCAL_FORMATS, load_sentences, load_table
from ..data.pairs import POSITIVE_COLUMNS, QUERY_COLUMNS, load_pairs
from ..folder.distill_projection import save_projection
from .config import DistillConfig
from .contrastive import EncoderStage, poolable
from .losses import world
from .matryoshka import check_dims, matryoshka_weights
from .mining import relative_margin_limit
from .stage import check_enough
from .teacher import teacher_vectors



def is_pair_source(source: str) -> bool:
    """Packaged pair sets, and local tables with a query and a positive column, are pairs; every
    other source is read as sentences."""
    if source in registry.PAIRS or any(source.startswith(p) for p in registry.PAIR_PREFIXES):
        return True
    path = Path(source).expanduser()
    if path.suffix.lower() in LOCAL_FORMATS and path.suffix.lower() != ".txt" and path.is_file():
        columns = load_table(source).column_names
        return any(c in columns for c in QUERY_COLUMNS) and any(c in columns for c in POSITIVE_COLUMNS)
    return False


@dataclass(frozen=True)
class Example:
    """Student texts, each learning the teacher's vector of its target (text, side)."""

    texts: tuple[str, ...]
    targets: tuple[tuple[str, str], ...]
    queries: tuple[bool, ...] = ()  # which texts are queries of a query -> document pair (get `instruction`)
    instruction: str | None = None  # the queries' instruction: the pair's own, else the recipe's query_instruction
    # The data source it came from: hard negatives are mined within one. Not part of equality, so an
    # example found in two sources is still kept once.
    source: str = field(default="", compare=False)


def student_texts(items: list[Example]) -> tuple[list[str], list[tuple[str, str]], list[str | None]]:
    """The student's texts of these examples, in order, each with its teacher target and its
    instruction (a query's; None for every other text): what one training batch encodes."""
    texts, targets, instructions = [], [], []
    for example in items:
        queries = example.queries or (False,) * len(example.texts)
        for text, target, is_query in zip(example.texts, example.targets, queries):
            texts.append(text)
            targets.append(target)
            instructions.append(example.instruction if is_query else None)
    return texts, targets, instructions


def distill_examples(config: DistillConfig) -> list[Example]:
    """One Example per sentence and per pair, without duplicates, in source order. A translation
    pair: both texts learn the teacher's vector of the first (Reimers & Gurevych). A pair source in
    registry.PAIR_SIDES (e.g. title -> page, STS sentence pairs): each text learns its own teacher
    vector on its side, and the query of a query -> document pair gets the pair's own instruction
    (e.g. a man page summary's), else query_instruction. STS-B pairs: those scoring at least
    min_score, each pair once."""
    examples: list[Example] = []
    for source in config.data:
        if source in registry.PAIR_SIDES:
            first, second = registry.PAIR_SIDES[source]
            queries = (first == "query" and second == "document", False)
            found = [Example((p.query, p.positive), ((p.query, first), (p.positive, second)), queries,
                             p.instruction or config.query_instruction, source)
                     for p in load_pairs(source, min_score=config.min_score)]
            if first == second:  # two sentences of one kind (STS-B, listed both ways round): each pair once
                firsts = {}
                for example in found:
                    firsts.setdefault(frozenset(example.texts), example)
                found = list(firsts.values())
        elif is_pair_source(source):
            found = [Example((p.query, p.positive), ((p.query, "query"),) * 2, source=source)
                     for p in load_pairs(source)]
        else:
            found = [Example((s,), ((s, "query"),), source=source)
                     for s in load_sentences(source, text_column=config.text_column,
                                             min_words=config.min_words, max_words=config.max_words)]
        if config.source_limit and len(found) > config.source_limit:
            # A seeded sample, so a large source does not drown a small one in the shuffled mix.
            found = random.Random(config.seed).sample(found, config.source_limit)
        examples.extend(found)
    return list(dict.fromkeys(examples))


# Queries scored per matrix product when mining: a source of 12,000 pairs (package-descriptions-de
# without source_limit) would need a 600 MB score matrix in one product.
SCORE_ROWS = 1024


def add_hard_negatives(items: list[Example], held_out: list[Example], teacher: np.ndarray, target_row: dict,
                        num_negatives: int, relative_margin: float) -> tuple[list[Example], int, int]:
    """`items` with up to `num_negatives` hard negatives added to each example of a query -> document source
    (registry.PAIR_SIDES): the documents of the same source among `items` that the teacher ranks
    closest to its query (`teacher`: unit rows, indexed by `target_row`), in that order, its own
    positive left out, every document of `held_out` never a candidate, and a candidate scoring above
    positive - |positive| x relative_margin skipped (a likely false negative; mining.py's rule).
    Returns (items, negatives added, candidates the margin skipped)."""
    held = {target for example in held_out for target in example.targets if target[1] == "document"}
    items = list(items)
    added = skipped = 0
    for source in dict.fromkeys(example.source for example in items):
        if registry.PAIR_SIDES.get(source) != ("query", "document"):
            continue  # translations, STS pairs and sentences have no documents to confuse
        members = [i for i, example in enumerate(items) if example.source == source]
        documents = [d for d in dict.fromkeys(items[i].targets[1] for i in members) if d not in held]
        column = {document: j for j, document in enumerate(documents)}
        queries = teacher[[target_row[items[i].targets[0]] for i in members]]
        positives = teacher[[target_row[items[i].targets[1]] for i in members]]
        matrix = teacher[[target_row[d] for d in documents]]
        limits = relative_margin_limit((queries * positives).sum(axis=1), relative_margin)
        for row, i in enumerate(members):
            if row % SCORE_ROWS == 0:  # every query x document, SCORE_ROWS queries at a time
                scores = queries[row:row + SCORE_ROWS] @ matrix.T
            ranked = scores[row % SCORE_ROWS]
            example, own, picked = items[i], column.get(items[i].targets[1]), []
            for j in np.argsort(-ranked, kind="stable"):  # ties: the source's order
                if len(picked) == num_negatives:
                    break
                if j == own:
                    continue
                if ranked[j] > limits[row]:
                    skipped += 1
                    continue
                picked.append(documents[j])
            if picked:
                added += len(picked)
                items[i] = replace(example, texts=example.texts + tuple(text for text, _ in picked),
                                   targets=example.targets + tuple(picked),
                                   queries=example.queries + (False,) * len(picked))
    return items, added, skipped


def similarity_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) of each row's softmax over its similarities to the other rows (the
    diagonal, a text with itself, is left out)."""
    n = student.shape[0]
    off = ~torch.eye(n, dtype=torch.bool, device=student.device)
    with torch.autocast(student.device.type, enabled=False):  # fp32 scores under bf16 autocast too
        s = F.normalize(student.float(), dim=-1)
        t = F.normalize(teacher.float(), dim=-1)
        s_scores = (s @ s.T / temperature)[off].view(n, n - 1)
        t_scores = (t @ t.T / temperature)[off].view(n, n - 1)
    return F.kl_div(F.log_softmax(s_scores, dim=-1), F.log_softmax(t_scores, dim=-1), log_target=True,
                    reduction="batchmean")


def projected_mse(student: torch.Tensor, teacher: torch.Tensor, projection: nn.Module | None) -> torch.Tensor:
    if projection is not None:
        student = projection(student)
    return (F.normalize(student, dim=-1) - F.normalize(teacher, dim=-1)).pow(2).sum(-1).mean()


class DistillStage(EncoderStage):
    config_class = DistillConfig
    config: DistillConfig
    handles_matryoshka = True  # the loss sums over prefixes itself (projections per prefix length)

    def load(self) -> None:
        super().load()
        # Only a query of a query -> document pair is trained with an instruction; the saved folder
        # says so, and evaluation gives the student no instruction on its sentences and documents.
        self.encoder_config.instructions = "queries"

    def dataset(self) -> list:
        cfg = self.config
        examples = distill_examples(cfg)
        random.Random(cfg.seed).shuffle(examples)
        if cfg.data_limit:
            examples = examples[:cfg.data_limit]
        items = check_enough(self.hold_out(examples, "texts"), cfg, "texts")
        targets = list(dict.fromkeys(t for example in [*self.eval_items, *items] for t in example.targets))
        cache = Path(f"{cfg.output_dir}.checkpoints")
        # Where the student trains under CPU bf16 autocast, the teacher's forward does too: labelling
        # thousands of texts is a large part of a CPU recipe's wall time.
        bf16 = trains_in_bf16(cfg.stage, cfg.fast)
        vectors = teacher_vectors(cfg.teacher, [text for text, _ in targets], cache,
                                  batch_size=cfg.teacher_batch_size, write=world()[0] == 0,
                                  sides=[side for _, side in targets], precision="bf16" if bf16 else "fp32")
        self.teacher = torch.from_numpy(vectors)
        self.target_row = {target: i for i, target in enumerate(targets)}
        if cfg.num_negatives:
            # Mined among the training items only (hold_out ran above): a held-out document is never a negative.
            items, added, skipped = add_hard_negatives(items, self.eval_items, vectors, self.target_row,
                                                        cfg.num_negatives, cfg.relative_margin)
            if world()[0] == 0:
                print(f"distill: {added} hard negatives added to query -> document examples (up to "
                      f"{cfg.num_negatives} each); {skipped} candidates skipped as above positive - |positive| x "
                      f"relative_margin={cfg.relative_margin} (the positive's teacher score)")
        self.projection = self._projections(self.encoder.dimension, self.teacher.shape[1])
        if not cfg.batch_per_task:
            return items
        return self.source_batches(items, random.Random(cfg.seed), "examples", key=lambda example: example.source)

    def _projections(self, student_dim: int, teacher_dim: int) -> nn.ModuleDict:
        """One Linear(prefix, teacher dim) per trained length that differs from the teacher's (mse)."""
        cfg = self.config
        dims = cfg.matryoshka_dims or [student_dim]
        check_dims(dims, student_dim, cfg.stage)
        if cfg.distill_loss != "mse":
            return nn.ModuleDict()
        torch.manual_seed(cfg.seed)
        return nn.ModuleDict({str(d): nn.Linear(d, teacher_dim, bias=False) for d in dims if d != teacher_dim})

    def extra_modules(self) -> dict:
        return {"distill_projection": self.projection} if len(self.projection) else {}

    def example_key(self, example):
        return example.texts[0]  # a held-out English is never trained on, through any of its translations

    def collate(self, items: list) -> dict:
        if self.ordered:
            items = items[0]  # one item: a whole batch of one source
        texts, targets, instructions = student_texts(items)
        rows = [self.target_row[target] for target in targets]
        ids, masks = self.tokenize(texts, instructions if any(instructions) else None)
        keep = poolable(masks)
        self.note_dropped(keep.count(False), "texts")
        kept = [j for j, k in enumerate(keep) if k]
        return {"batch": self.view.collate([ids[j] for j in kept], [masks[j] for j in kept]),
                "rows": torch.tensor([rows[j] for j in kept], dtype=torch.long)}

    def loss(self, model, inputs):
        vectors = self.embed(model, inputs["batch"])
        targets = self.teacher[inputs["rows"]].to(vectors.device)
        cfg = self.config
        dims = cfg.matryoshka_dims or [vectors.shape[1]]
        total, logs = 0.0, {}
        for dim, weight in zip(dims, matryoshka_weights(cfg)):
            prefix = vectors[:, :dim]
            if cfg.distill_loss == "mse":
                projection = self.projection[str(dim)] if str(dim) in self.projection else None
                value = projected_mse(prefix, targets, projection)
                if cfg.similarity_weight:
                    # The projection lets the student's own space drift from the teacher's; the
                    # in-batch similarities of its own vectors keep it the teacher's geometry.
                    value = value + cfg.similarity_weight * similarity_kl(prefix, targets, cfg.temperature)
            else:
                value = similarity_kl(prefix, targets, cfg.temperature)
            total = total + weight * value
            if len(dims) > 1:
                logs[f"loss_dim_{dim}"] = round(float(value.detach()), 4)
        return total, {**logs, **self.counts()}

    def write_extras(self, folder: Path) -> None:
        if self.config.save_projection and len(self.projection):
            save_projection(self.projection, folder)
