"""The paper recipe on the paper's data: the public E5 archive read as llm2vec 0.2.3's E5Data
reads it, MNTP's fully trained LM head, llm2vec 0.2.3's MTEB instruction table, and MNTP masks
drawn as transformers' DataCollatorForLanguageModeling draws them."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from mteb.types import PromptType
from torch.utils.data import DataLoader
from transformers import DataCollatorForLanguageModeling

from test_training_support import FAST, causal_lm_folder, corpus_file, encoder_folder
from tiny import tiny_encoder, tiny_tokenizer

from decoder2vec import Encoder
from decoder2vec.data import paper
from decoder2vec.errors import Decoder2VecError
from decoder2vec.evaluation import llm2vec_protocol
from decoder2vec.evaluation.mteb_adapter import MtebEncoder, local_sts_task
from decoder2vec.training import train
from decoder2vec.training.config import load_recipe, make_config
from decoder2vec.training.mntp import MNTPStage, mask_batch
from decoder2vec.training.supervised import SupervisedStage

DATA = Path(__file__).parent / "data"
RECIPES = Path(__file__).parent.parent / "src" / "decoder2vec" / "recipes" / "paper"
NLI = paper.E5_INSTRUCTIONS["allnli"]
QUORA = paper.E5_INSTRUCTIONS["quora_duplicates"]


def public_e5_folder(root: Path, rows: dict[str, int]) -> Path:
    """A folder laid out like the public archive (its file names, its fields), `rows[name]` rows each."""
    folder = root / "echo-data"
    folder.mkdir(parents=True, exist_ok=True)
    for name, count in rows.items():
        with open(folder / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for i in range(count):
                f.write(json.dumps({"query": f"{name} query {i}", "positive": f"{name} positive {i}",
                                    "negative": f"{name} negative {i}"}) + "\n")
    return folder


# ------------------------------------------------------------------ the public E5 layout
def test_public_layout_alternates_nli_and_quora_instructions_by_line_and_gives_documents_none(tmp_path):
    folder = public_e5_folder(tmp_path, {"allnli": 4, "quora_duplicates": 3, "msmarco_passage": 2, "nq": 1})
    pairs = paper.read_e5(folder)
    # E5Data's file order (allnli, ..., msmarco_passage, ..., nq, quora_duplicates), not alphabetical.
    assert [p.task for p in pairs] == ["allnli"] * 4 + ["msmarco_passage"] * 2 + ["nq"] + ["quora_duplicates"] * 3
    assert [p.instruction for p in pairs if p.task == "allnli"] == [NLI[0], NLI[1], NLI[0], NLI[1]]
    assert [p.instruction for p in pairs if p.task == "quora_duplicates"] == [QUORA[0], QUORA[1], QUORA[0]]
    assert pairs[4].instruction == "Given a web search query, retrieve relevant passages that answer the query"
    assert pairs[6].instruction == "Given a question, retrieve Wikipedia passages that answer the question"
    assert all(p.document_instruction is None for p in pairs)  # 0.2.3: documents never get one
    assert (pairs[1].query, pairs[1].positive, pairs[1].negatives) == (
        "allnli query 1", "allnli positive 1", ["allnli negative 1"])


def test_split_files_are_ignored_next_to_the_public_ones_and_read_on_request(tmp_path):
    # The archive holds allnli.jsonl and allnli_split1/2.jsonl; 0.2.3 opens only the former.
    folder = public_e5_folder(tmp_path, {"allnli": 2, "allnli_split1": 1, "allnli_split2": 1,
                                         "quora_duplicates_split1": 1, "quora_duplicates_split2": 1})
    assert [p.query for p in paper.read_e5(folder)] == ["allnli query 0", "allnli query 1"]
    pairs = paper.paper_pairs(f"e5-split:{folder}")
    assert [(p.task, p.instruction) for p in pairs] == [
        ("allnli", NLI[0]), ("allnli", NLI[1]), ("quora_duplicates", QUORA[0]), ("quora_duplicates", QUORA[1])]
    # The split layout's E5Data gave the symmetric halves' documents their instruction.
    assert [p.document_instruction for p in pairs] == [None, NLI[1], QUORA[0], QUORA[1]]
    assert paper.is_paper_source(f"e5-split:{folder}")
    # A folder of split files only is read as split files.
    for name in ("allnli", "quora_duplicates_split2"):
        (folder / f"{name}.jsonl").unlink()
    assert [p.instruction for p in paper.read_e5(folder)] == [NLI[0], NLI[1], QUORA[0]]
    with pytest.raises(Decoder2VecError, match=r"has no split files \(allnli_split1.jsonl"):
        paper.paper_pairs(f"e5-split:{public_e5_folder(tmp_path / 'public', {'allnli': 1, 'nq': 1})}")


def test_unknown_file_in_the_public_layout_names_the_known_datasets(tmp_path):
    folder = public_e5_folder(tmp_path, {"allnli": 1, "mine": 1})
    with pytest.raises(Decoder2VecError, match=r"mine.jsonl is not an E5 dataset \(known: allnli, dureader"):
        paper.read_e5(folder)


def _e5data_order(folder: Path, block: int, seed: int) -> list[tuple[str, str]]:
    """llm2vec 0.2.3's E5Data.load_data, transcribed (ids, the global `random` after set_seed,
    per-task shuffles, full blocks, shuffled blocks) as the specification our loader must meet;
    benchmarks/reference_training.py runs the real E5Data on the same kind of folder."""
    random.seed(seed)
    data_map, samples = {}, []
    for dataset, prompt in paper.E5_INSTRUCTIONS.items():
        data_map[dataset] = []
        lines = (folder / f"{dataset}.jsonl").read_text().splitlines()
        for i, line in enumerate(lines):
            instruction = prompt if isinstance(prompt, str) else prompt[i % 2]
            data_map[dataset].append(len(samples))
            samples.append((f"{instruction}; " + json.loads(line)["query"], json.loads(line)["positive"]))
    for ids in data_map.values():
        random.shuffle(ids)
    batches = [ids[i:i + block] for ids in data_map.values() for i in range(0, len(ids), block)
               if len(ids[i:i + block]) == block]
    random.shuffle(batches)
    return [samples[i] for batch in batches for i in batch]


@pytest.mark.parametrize("per_device, world", [(2, 1), (2, 3), (4, 2)])
def test_e5_blocks_are_e5datas_order_for_the_seed_and_world_size(tmp_path, per_device, world):
    counts = {name: 3 + 5 * k for k, name in enumerate(paper.E5_INSTRUCTIONS)}  # every file, uneven sizes
    folder = public_e5_folder(tmp_path, counts)
    blocks, left_out = paper.e5_blocks(paper.read_e5(folder), per_device * world, seed=42)
    got = [(f"{p.instruction}; {p.query}", p.positive) for b in blocks for p in b]
    assert got == _e5data_order(folder, per_device * world, seed=42)
    assert len(got) + len(left_out) == sum(counts.values()) and not {p.query for p in left_out} & {q for q, _ in got}


def test_supervised_stage_trains_on_a_public_layout_folder_in_e5data_order(tmp_path, monkeypatch):
    folder = public_e5_folder(tmp_path, {"allnli": 9, "quora_duplicates": 5, "msmarco_passage": 6})
    values = {"stage": "supervised", "model": str(encoder_folder(tmp_path)), "data": [f"e5:{folder}"],
              "output_dir": str(tmp_path / "out"), "eval_examples": 4, "instruction_template": "{instruction}; ",
              **FAST, "per_device_train_batch_size": 2}
    monkeypatch.setattr("decoder2vec.training.supervised.world", lambda: (0, 2))  # as process 0 of 2
    stage = SupervisedStage(make_config(values))
    stage.load()
    items = stage.dataset()
    blocks, left_out = paper.e5_blocks(paper.read_e5(folder), 4, seed=42)
    # Each block dealt out in two per-process halves, in E5Data's block order.
    assert items == [half for b in blocks for half in (b[:2], b[2:])]
    assert len(stage.eval_items) == 4 and all(p in left_out for p in stage.eval_items)
    monkeypatch.undo()
    assert train(values, max_steps=2).is_dir()


# ------------------------------------------------------------------ MNTP: the LM head trained in full
def test_train_lm_head_trains_the_untied_head_and_the_encoder_folder_still_loads(tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    source = causal_lm_folder(tmp_path)
    before = AutoModelForCausalLM.from_pretrained(source).lm_head.weight.detach().clone()
    recipe = {"stage": "mntp", "model": str(source), "data": [str(corpus_file(tmp_path))], "output_dir": "",
              "eval_examples": 0, "learning_rate": 1e-2, "packing": "per-text", **FAST}
    seen, finish = {}, MNTPStage.finish

    def watch(self):  # the head the engine trained, read back before the stage ends
        seen["head"] = self.lm_head.weight.detach().clone()
        seen["trainable"] = self.lm_head.weight.requires_grad
        finish(self)

    monkeypatch.setattr(MNTPStage, "finish", watch)
    out = train({**recipe, "output_dir": str(tmp_path / "head"), "train_lm_head": True}, max_steps=3)
    trained_head = seen.pop("head")
    assert seen.pop("trainable") is True
    train({**recipe, "output_dir": str(tmp_path / "lora"), "train_lm_head": False}, max_steps=3)
    frozen_head = seen.pop("head")
    assert (trained_head - before).abs().max() > 1e-3  # three AdamW steps at lr 1e-2 move every row
    assert torch.equal(frozen_head, before)
    encoder = Encoder.from_pretrained(out)
    assert encoder.encode(["a sentence"]).shape == (1, 32)
    record = json.loads((out / "decoder2vec_config.json").read_text())["stages"][-1]
    assert record["hyperparameters"]["train_lm_head"] is True


def test_train_lm_head_refuses_a_tied_head(tmp_path):
    from transformers import AutoModelForCausalLM

    from tiny import tiny_config

    folder = tmp_path / "tied"
    config = tiny_config("llama")
    config.tie_word_embeddings = True
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    stage = MNTPStage(make_config({"stage": "mntp", "model": str(folder), "data": ["x"], "output_dir": "o",
                                   "train_lm_head": True}))
    with pytest.raises(Decoder2VecError, match="train_lm_head: the LM head of .* is tied to its input embeddings"):
        stage.load()


# The paper models whose LM head is untied (run_mntp.py trains it in full) and the tied ones.
UNTIED = {"sheared-llama-1.3b", "llama-2-7b-chat", "mistral-7b-instruct-v0.2", "meta-llama-3-8b-instruct"}
TIED = {"gemma-3-1b-it", "qwen3-1.7b"}


def test_paper_mntp_recipes_train_the_untied_heads():
    got = {folder.name: load_recipe(folder / "mntp.yaml").train_lm_head for folder in RECIPES.iterdir()}
    assert got == {**{m: True for m in UNTIED}, **{m: False for m in TIED}}
    assert all("train_lm_head" in yaml.safe_load((RECIPES / m / "mntp.yaml").read_text()) for m in got)


# ------------------------------------------------------------------ MNTP masks: transformers' collator
@pytest.mark.parametrize("seed", [0, 7])
def test_mask_batch_draws_the_masks_of_transformers_collator(seed):
    tokenizer = tiny_tokenizer()
    tokenizer.mask_token = "_"  # run_mntp.py's mask_token_type "blank"
    mask_id = tokenizer.convert_tokens_to_ids("_")
    ids = torch.randint(3, len(tokenizer), (4, 48), generator=torch.Generator().manual_seed(99))
    ids[:, 0] = tokenizer.bos_token_id
    ids[2, 20] = tokenizer.bos_token_id  # a packed block: a second text starts inside it
    special = (ids == tokenizer.bos_token_id).long()
    collator = DataCollatorForLanguageModeling(tokenizer=tokenizer, mlm_probability=0.2)
    torch.manual_seed(seed)
    reference = collator([{"input_ids": row, "special_tokens_mask": s} for row, s in zip(ids, special)])
    masked, labels = mask_batch(ids, torch.ones_like(ids), mask_id=mask_id, vocab_size=len(tokenizer),
                                probability=0.2, policy="80-10-10", generator=torch.Generator().manual_seed(seed),
                                special_ids=[tokenizer.bos_token_id])
    assert torch.equal(labels, reference["labels"])
    assert torch.equal(masked, reference["input_ids"])
    assert (labels != -100).sum() > 20 and (masked == mask_id).sum() > 10


# ------------------------------------------------------------------ MTEB: llm2vec 0.2.3's table, unwrapped
def test_shipped_instruction_table_is_llm2vec_023s():
    reference = json.loads((DATA / "llm2vec_task_to_instructions.json").read_text(encoding="utf-8"))
    shipped = llm2vec_protocol.task_instructions()
    assert list(shipped.items()) == list(reference.items())
    assert shipped["AmazonCounterfactualClassification"] == (
        "Classify a given Amazon customer review text as either counterfactual or notcounterfactual:")


def _loader(texts):
    return DataLoader([{"text": t} for t in texts], batch_size=8,
                      collate_fn=lambda rows: {"text": [r["text"] for r in rows]})


def test_mteb_run_encodes_unwrapped_by_default_as_llm2vecs_evaluation():
    """A paper-trained folder names its chat format; llm2vec scored the released models without
    it (their base is the -mntp repository, whose name matches no format)."""
    encoder = tiny_encoder("llama", base_model="meta-llama/Meta-Llama-3-8B-Instruct")
    encoder.config.chat_format = "llama-3"
    task = local_sts_task([("a", "b", 1.0)], name="STS16")
    got = MtebEncoder(encoder, instructions="llm2vec").encode(
        _loader(["A cat sits."]), task_metadata=task.metadata, hf_split="test", hf_subset="default",
        prompt_type=PromptType.query)
    assert encoder.config.chat_format == "llama-3"  # put back after the call
    encoder.config.chat_format = None
    unwrapped = encoder.encode(["A cat sits."], instruction="Retrieve semantically similar text:")
    np.testing.assert_allclose(got, unwrapped, rtol=1e-5, atol=1e-6)
    encoder.config.chat_format = "llama-3"
    wrapped = MtebEncoder(encoder, instructions="llm2vec", wrap_in_chat_format=True).encode(
        _loader(["A cat sits."]), task_metadata=task.metadata, hf_split="test", hf_subset="default",
        prompt_type=PromptType.query)
    assert np.abs(wrapped - unwrapped).max() > 1e-3
