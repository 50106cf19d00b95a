"""Are decoder2vec's training losses and data those of the reference llm2vec 0.2.3?

    .venv/bin/python benchmarks/reference_training.py --json runs/bench/reference_training.json

On the packaged SmolLM2-135M (a Llama: llm2vec's LlamaBiModel / LlamaBiForMNTP), for identical
inputs, in eval mode (no dropout), fp32:
- mntp: the same packed blocks, the same masked positions and labels -> MNTPStage.predict + cross
  entropy vs LlamaBiForMNTP(labels=...).loss
- simcse: the same sentences (dropout off, so both copies are equal) -> SimCSEStage.loss vs
  HardNegativeNLLLoss(scale 20) on LLM2Vec's pooled vectors. The sentences carry llm2vec's separator
  so it pools the sentence: run_simcse.py passes none, and LLM2Vec then averages every position of
  the left-padded batch, padding included (docs/training.md, "where ours differs")
- supervised: E5-formatted (query, positive, negative) rows, instructions joined as
  "instruction; text" -> SupervisedStage.loss (scale 50) vs HardNegativeNLLLoss(scale 50), with
  `pool_span: llm2vec` (the paper recipes' setting); `supervised_offsets` is the same loss with
  decoder2vec's default `pool_span: offsets`, for how far that default is from the reference
- supervised_chat: the same rows through each chat format (`chat_format`) vs the reference with its
  model's name set to the hub id it wraps that way (LLM2Vec chooses the format by that name)
- mntp_blocks_equal: our pack_blocks vs run_mntp.py's tokenize + group_texts
- e5_pool_tokens_equal: the token ids each side pools for E5-formatted queries and documents, with
  and without chat formats. LLM2Vec marks the last n positions, n = the text's token count
  tokenized alone; where a tokenizer merges differently at the boundary (SmolLM2's BPE: "; Someone"
  vs "Someone") that includes a token of the instruction, and `pool_span: llm2vec` does the same

Target: every rel_diff <= 1e-4 and both equalities true. The reference runs in its own venv
(benchmarks/reference/setup.sh, ~2 minutes the first time).
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import torch
import torch.nn.functional as F

from common import REFERENCE, reference_model_dir, reference_python, scratch_dir, wiki_texts

from decoder2vec.chat_format import FORMATS, HUB_FORMATS
from decoder2vec.data.paper import E5_INSTRUCTIONS, E5_SYMMETRIC, E5Pair
from decoder2vec.training.config import make_config
from decoder2vec.training.lora import add_lora
from decoder2vec.training.mntp import MNTPStage, mask_batch, pack_blocks
from decoder2vec.training.simcse import SimCSEStage
from decoder2vec.training.supervised import SupervisedStage

SEPARATOR = "!@#$%^&*()"  # llm2vec's instruction/text separator
E5_ROWS = [  # (dataset, query, positive, negative): short, distinct, like the E5 mix
    ("msmarco_passage", "what is rotary position embedding", "RoPE rotates query and key vectors by position.",
     "A rope is a bundle of twisted fibres."),
    ("nq", "who wrote the origin of species", "Charles Darwin published On the Origin of Species in 1859.",
     "The species of finches differ in beak shape."),
    ("allnli_split2", "A man is playing a guitar on stage.", "Someone performs music for an audience.",
     "A woman is sleeping at home."),
    ("quora_duplicates_split1", "How do I learn Python fast?", "What is the quickest way to learn Python?",
     "How do snakes shed their skin?"),
    ("fever", "The Eiffel Tower is in Berlin.", "The Eiffel Tower is a wrought-iron tower in Paris, France.",
     "Berlin is the capital of Germany."),
    ("hotpot_qa", "Which river flows through the city where Mozart was born?",
     "Salzburg, Mozart's birthplace, lies on the Salzach river.", "Vienna is on the Danube."),
]


def reference_format(dataset: str, text: str, *, query: bool) -> str:
    """E5Data.py's strings: 'instruction; ' + separator + text for queries (and both sides of the
    symmetric datasets), separator + text for documents."""
    if query or dataset in E5_SYMMETRIC:
        return f"{E5_INSTRUCTIONS[dataset]}; {SEPARATOR}{text}"
    return SEPARATOR + text


# One hub id per chat format: the reference wraps by the model's name.
CHAT_HUBS = {name: next(hub for hub, n in HUB_FORMATS.items() if n == name) for name in FORMATS}


def ours(model_source: str, sentences: list[str], block_texts: list[str], length: int) -> tuple[dict, dict]:
    """Our losses (and the inputs the reference needs to compute its own on the same data)."""
    base = dict(model=model_source, output_dir="unused", data=["unused"], train_max_length=length, lora_dropout=0.0,
                pool_span="llm2vec")
    common = dict(base, attention_dropout=0.0, hidden_dropout=0.0)  # the contrastive stages' dropout: off
    inputs, results = {"max_length": length}, {}

    mntp = MNTPStage(make_config({**base, "stage": "mntp", "packing": "blocks"}))
    mntp.load()
    model = add_lora(mntp.net, r=4, alpha=8, dropout=0.0)  # B = 0: the base model's outputs, as training starts
    mntp.attach(model)
    model.eval()
    blocks = pack_blocks(mntp.tokenizer, block_texts, length)
    inputs["blocks"] = {"texts": block_texts, "length": length}
    results["blocks"] = blocks
    batch = torch.tensor(blocks[:4])
    attention = torch.ones_like(batch)
    masked, labels = mask_batch(batch, attention, mask_id=mntp.mask_id, vocab_size=len(mntp.tokenizer),
                                probability=0.2, policy="80-10-10", generator=torch.Generator().manual_seed(0),
                                special_ids=mntp.special_ids)
    with torch.no_grad():
        logits, target = mntp.predict(model, masked, attention, labels)
    results["mntp"] = float(F.cross_entropy(logits, target))
    inputs["mntp"] = {"masked": masked.tolist(), "attention": attention.tolist(), "labels": labels.tolist()}
    del mntp, model

    simcse = SimCSEStage(make_config({**common, "stage": "simcse", "scale": 20.0}))
    simcse.load()
    simcse.net.eval()
    with torch.no_grad():
        results["simcse"] = float(simcse.loss(simcse.net, simcse.collate(sentences))[0])
    inputs["simcse"] = {"texts": [SEPARATOR + s for s in sentences], "scale": 20.0}

    rows = [E5Pair(q, p, [n], d, E5_INSTRUCTIONS[d], E5_INSTRUCTIONS[d] if d in E5_SYMMETRIC else None)
            for d, q, p, n in E5_ROWS]
    inputs["supervised"] = {
        "queries": [reference_format(d, q, query=True) for d, q, _, _ in E5_ROWS],
        "positives": [reference_format(d, p, query=False) for d, _, p, _ in E5_ROWS],
        "negatives": [reference_format(d, n, query=False) for d, _, _, n in E5_ROWS],
        "scale": 50.0}
    texts = inputs["supervised"]["queries"] + inputs["supervised"]["positives"] + inputs["supervised"]["negatives"]
    inputs["pooled"] = {"texts": texts}
    inputs["chat"] = CHAT_HUBS
    results["chat"], results["pooled_chat"] = {}, {}
    for key, changes in [("supervised", {}), ("supervised_offsets", {"pool_span": "offsets"}),
                         *[(name, {"chat_format": name}) for name in CHAT_HUBS]]:
        supervised = SupervisedStage(make_config({**common, "stage": "supervised", "scale": 50.0,
                                                  "batch_per_task": False, "instruction_template": "{instruction}; ",
                                                  **changes}))
        supervised.load()
        supervised.net.eval()
        batch = supervised.collate(rows)
        with torch.no_grad():
            loss = float(supervised.loss(supervised.net, batch)[0])
        pooled = [[t for t, m in zip(ids, mask) if m] for ids, mask in zip(batch["ids"], batch["masks"])]
        if key in CHAT_HUBS:
            results["chat"][key], results["pooled_chat"][key] = loss, pooled
        else:
            results[key] = loss
            if key == "supervised":
                results["pooled"] = pooled
        del supervised
    return results, inputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--sentences", type=int, default=16, help="SimCSE batch size")
    parser.add_argument("--length", type=int, default=128, help="MNTP block / training length")
    parser.add_argument("--target", type=float, default=1e-4)
    args = parser.parse_args()

    from decoder2vec.loading import resolve_model

    source = str(resolve_model(None))
    texts = wiki_texts(60)
    sentences = [t.split(". ")[0][:200] for t in texts[: args.sentences]]
    mine, inputs = ours(source, sentences, texts, args.length)

    theirs = reference(inputs)

    report = {}
    pairs = [(key, mine[key], theirs[key]) for key in ("mntp", "simcse", "supervised")]
    pairs.append(("supervised_offsets", mine["supervised_offsets"], theirs["supervised"]))
    pairs += [(f"supervised_chat_{name}", mine["chat"][name], theirs["chat"][name]) for name in CHAT_HUBS]
    for key, a, b in pairs:
        diff = abs(a - b) / max(abs(b), 1e-12)
        report[key] = {"ours": round(a, 7), "reference": round(b, 7), "rel_diff": float(f"{diff:.3g}")}
    report["mntp_blocks_equal"] = mine["blocks"] == theirs["blocks"]
    report["mntp_blocks"] = len(mine["blocks"])
    report["e5_pool_tokens_equal"] = mine["pooled"] == theirs["pooled"] and all(
        mine["pooled_chat"][name] == theirs["pooled_chat"][name] for name in CHAT_HUBS)
    from decoder2vec.loading import load_tokenizer

    tokenizer = load_tokenizer(None)
    report["e5_pool_token_diffs"] = [
        {"format": name, "text": i, "ours": tokenizer.decode(a), "reference": tokenizer.decode(b)}
        for name, got, want in [(None, mine["pooled"], theirs["pooled"]),
                                *[(n, mine["pooled_chat"][n], theirs["pooled_chat"][n]) for n in CHAT_HUBS]]
        for i, (a, b) in enumerate(zip(got, want)) if a != b]
    checked = [k for k, _, _ in pairs if k != "supervised_offsets"]  # offsets: informative, not the target
    report["passed"] = all(report[k]["rel_diff"] <= args.target for k in checked) and \
        report["mntp_blocks_equal"] and report["e5_pool_tokens_equal"]

    print(f"{'loss':<26}{'decoder2vec':>14}{'llm2vec 0.2.3':>16}{'rel diff':>12}")
    for key, _, _ in pairs:
        r = report[key]
        print(f"{key:<26}{r['ours']:>14.6f}{r['reference']:>16.6f}{r['rel_diff']:>12.2e}")
    print(f"MNTP blocks equal: {report['mntp_blocks_equal']} ({report['mntp_blocks']} blocks of {args.length})")
    print(f"E5 pooled tokens equal (plain and every chat format): {report['e5_pool_tokens_equal']}")
    for d in report["e5_pool_token_diffs"]:
        print(f"  {d['format'] or 'plain'} text {d['text']}: ours {d['ours']!r}  reference {d['reference']!r}")
    print("PASS" if report["passed"] else "FAIL", f"(rel_diff <= {args.target}, both equalities)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def reference(inputs: dict) -> dict:
    """Run the reference worker in its venv on `inputs`; its results."""
    work = scratch_dir()
    (work / "inputs.json").write_text(json.dumps(inputs), encoding="utf-8")
    proc = subprocess.run([reference_python(), str(REFERENCE / "training_worker.py"), "--model", reference_model_dir(),
                           "--inputs", str(work / "inputs.json"), "--output", str(work / "reference.json")],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"reference worker failed:\n{proc.stderr[-3000:]}")
    return json.loads((work / "reference.json").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
