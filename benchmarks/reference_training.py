"""Are decoder2vec's training losses, gradients and data those of the reference llm2vec 0.2.3?

    .venv/bin/python benchmarks/reference_training.py --json runs/bench/reference_training.json

One forward, eval mode, fp32, on the packaged SmolLM2-135M (a Llama: llm2vec's LlamaBiModel /
LlamaBiForMNTP), for identical inputs (the fields kept from the first version of this check):
- mntp: the same packed blocks, masked positions and labels -> MNTPStage.predict + cross entropy
  vs LlamaBiForMNTP(labels=...).loss (LoRA B = 0)
- simcse: the same sentences, dropout off, so both copies are equal and the loss is ~0.03: float
  noise dominates its rel_diff, which is reported but not a target (simcse_dropout is the check)
- supervised: E5 rows as llm2vec 0.2.3's E5Data writes them ("instruction; " + separator + query,
  separator + document) -> SupervisedStage.loss (scale 50, `pool_span: llm2vec`) vs
  HardNegativeNLLLoss(scale 50); `supervised_offsets`: decoder2vec's default `pool_span: offsets`,
  informative, not a target
- supervised_chat_*: the same rows through each chat format vs the reference with its model's name
  set to the hub id it wraps that way
- mntp_blocks_equal: pack_blocks vs run_mntp.py's tokenize + group_texts
- e5_pool_tokens_equal: the token ids each side pools, plain and in every chat format

Training, on four architectures (`architectures`: llama = SmolLM2-135M; mistral, gemma and qwen2 =
tiny random models written by transformers 5 and copied for 4.44 by reference/prepare_model.py), the
same non-zero LoRA adapter on both sides (random A and B, r 4, alpha 8, every projection, where
each reference script puts it) and one backward of each loss (reference_training_checks.py):
- mntp: loss and the gradients of every LoRA matrix and, where it is untied (the tiny models; not
  SmolLM2's), of the LM head (run_mntp.py trains an untied head in full: decoder2vec's
  train_lm_head; a tied one stays frozen on both sides)
- simcse: attention dropout 0.3 (run_simcse.py's simcse_dropout), train mode, so the views differ;
  the same dropout masks on both sides (reference/replay_dropout.py draws each text's mask per view
  and layer from a seeded generator); sentences of one token length, so no row is padded
- supervised: the E5 rows above, with gradients
- gradients: `ours`/`reference` are total gradient norms, rel_diff the largest
  |g_ours - g_ref| / |g_ref| over the LoRA matrices (and the LM head for mntp)
Each architecture runs twice, with both models (LoRA included) in float32 and in float64 (`dtypes`):
`mntp`, `simcse`, `supervised` are the float32 losses; `gradients` are float64's, because
float32's rounding over a 30-layer backward reaches ~1e-4 of a gradient (SmolLM2's supervised
LoRA gradients: 1.66e-4), the size of the target, where a real difference would hide. The float64
run computes the RoPE angles in float64 on both sides too (reference/float64_rope.py;
`float64_rope_equal`: it ran in every stage on both sides): transformers computes them in float32
whatever the model's dtype, llm2vec left-pads where decoder2vec right-pads, and the same text at
other absolute positions alone left 1.05e-4 in those gradients. What is left in float64 is the
float32 casts the implementations keep (transformers casts the MNTP logits to float32 on both
sides; decoder2vec pools and scores its contrastive losses in float32, llm2vec in the model's
dtype). `float64_losses` (targets) and `float32_gradients` (reported, not targets) complete the pair.
`simcse_dropout` and `gradients` repeat the llama entry at the top level.
Data, from the reference's own code (reference/data_worker.py):
- collator_masks_equal: transformers 4.44's DataCollatorForLanguageModeling (and run_mntp.py's
  full-masking subclass: Mistral's all-mask at 0.8) set up as run_mntp.py sets it up, after
  torch.manual_seed(s), vs mask_batch with a generator seeded s: masked ids and labels of the
  first packed blocks (collator_mask_diffs lists every position that differs)
- e5data_rows_equal: llm2vec's E5Data on a folder laid out like the public archive (all 14 files,
  uneven sizes, and the 4 split files it also holds) vs read_e5 + e5_blocks: the same (query,
  positive, negative) strings in the same order, for effective batches 2 x 1, 2 x 3 and 4 x 2 (per device x processes), seed 42

`reference_bidirectional` says whether the reference's model is bidirectional at all: llm2vec
0.2.3's Qwen2BiModel sets is_causal=False on its attention modules but keeps Qwen2Model's causal
mask (unlike its Llama, Mistral and Gemma classes), so its first position equals the causal
model's. Its qwen2 entry says `"target": false` and why (`no_target`): it is reported, and shows
how far a causal model is; llama, mistral and gemma say `"target": true`.

Target: every rel_diff <= 1e-4 (simcse in eval mode, supervised_offsets and float32_gradients
excepted) and every equality true, on every architecture with `"target": true`; and the
architectures without a target are exactly those whose reference is causal (`passed`). The
reference runs in its own venv (benchmarks/reference/setup.sh, a few minutes the first time).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
from pathlib import Path

import torch
import torch.nn.functional as F

from common import REFERENCE, reference_model_dir, reference_python, scratch_dir, wiki_texts
from reference_training_checks import (architecture_report, data_report, equal_length_sentences, reference_dir,
                                       tiny_model_dir)

from decoder2vec.model.chat_format import FORMATS, HUB_FORMATS
from decoder2vec.data.paper import E5_INSTRUCTIONS, E5Pair
from decoder2vec.training.config import make_config
from decoder2vec.training.lora import add_lora
from decoder2vec.training.mntp import MNTPStage, mask_batch, pack_blocks
from decoder2vec.training.simcse import SimCSEStage
from decoder2vec.training.supervised import SupervisedStage

SEPARATOR = "!@#$%^&*()"  # llm2vec's instruction/text separator
E5_ROWS = [  # (dataset, line parity, query, positive, negative): short, distinct, like the E5 mix
    ("msmarco_passage", 0, "what is rotary position embedding", "RoPE rotates query and key vectors by position.",
     "A rope is a bundle of twisted fibres."),
    ("nq", 0, "who wrote the origin of species", "Charles Darwin published On the Origin of Species in 1859.",
     "The species of finches differ in beak shape."),
    ("allnli", 1, "A man is playing a guitar on stage.", "Someone performs music for an audience.",
     "A woman is sleeping at home."),
    ("quora_duplicates", 0, "How do I learn Python fast?", "What is the quickest way to learn Python?",
     "How do snakes shed their skin?"),
    ("fever", 0, "The Eiffel Tower is in Berlin.", "The Eiffel Tower is a wrought-iron tower in Paris, France.",
     "Berlin is the capital of Germany."),
    ("hotpot_qa", 0, "Which river flows through the city where Mozart was born?",
     "Salzburg, Mozart's birthplace, lies on the Salzach river.", "Vienna is on the Danube."),
]
ARCHITECTURES = ("llama", "mistral", "gemma", "qwen2")


def instruction(dataset: str, parity: int) -> str:
    """llm2vec 0.2.3's instruction of a row: allnli and quora_duplicates alternate two by line."""
    table = E5_INSTRUCTIONS[dataset]
    return table if isinstance(table, str) else table[parity]


def reference_format(dataset: str, parity: int, text: str, *, query: bool) -> str:
    """E5Data.py's strings: 'instruction; ' + separator + text for queries, separator + text for
    documents (0.2.3 gives documents no instruction)."""
    return f"{instruction(dataset, parity)}; {SEPARATOR}{text}" if query else SEPARATOR + text


def e5_rows() -> list[E5Pair]:
    return [E5Pair(q, p, [n], d, instruction(d, k)) for d, k, q, p, n in E5_ROWS]


def supervised_inputs() -> dict:
    return {"queries": [reference_format(d, k, q, query=True) for d, k, q, _, _ in E5_ROWS],
            "positives": [reference_format(d, k, p, query=False) for d, k, _, p, _ in E5_ROWS],
            "negatives": [reference_format(d, k, n, query=False) for d, k, _, _, n in E5_ROWS], "scale": 50.0}


# One hub id per chat format: the reference wraps by the model's name.
CHAT_HUBS = {name: next(hub for hub, n in HUB_FORMATS.items() if n == name) for name in FORMATS}


def ours(model_source: str, sentences: list[str], block_texts: list[str], length: int) -> tuple[dict, dict]:
    """Our one-forward losses (and the inputs the reference needs to compute its own on the same data)."""
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

    rows = e5_rows()
    inputs["supervised"] = supervised_inputs()
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

    from decoder2vec.model.loading import cache_dir, load_tokenizer, resolve_model

    torch.manual_seed(0)
    source = str(resolve_model(None))
    tokenizer = load_tokenizer(None)
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
    report["e5_pool_token_diffs"] = [
        {"format": name, "text": i, "ours": tokenizer.decode(a), "reference": tokenizer.decode(b)}
        for name, got, want in [(None, mine["pooled"], theirs["pooled"]),
                                *[(n, mine["pooled_chat"][n], theirs["pooled_chat"][n]) for n in CHAT_HUBS]]
        for i, (a, b) in enumerate(zip(got, want)) if a != b]

    # Training on every architecture, with the same LoRA adapter, dropout masks and gradients.
    blocks = pack_blocks(tokenizer, texts, args.length)
    simcse_sentences = equal_length_sentences(tokenizer, wiki_texts(400, seed=1), args.sentences)
    root = cache_dir() / "llm2vec-models"
    models = {"llama": (source, reference_model_dir())}
    for arch in ARCHITECTURES[1:]:
        folder = tiny_model_dir(arch, source, root)
        models[arch] = (folder, reference_dir(folder))
    report["architectures"] = {
        arch: architecture_report(arch, src, ref, blocks, simcse_sentences, e5_rows(), supervised_inputs(),
                                  args.length)
        for arch, (src, ref) in models.items()}
    report["simcse_dropout"] = report["architectures"]["llama"]["simcse"]
    report["gradients"] = report["architectures"]["llama"]["gradients"]
    report.update(data_report(source, reference_model_dir(), texts, args.length))

    report["passed"] = passed(report, [k for k, _, _ in pairs], args.target)
    report["machine"] = {"cpu": cpu_model(), "load_average": os.getloadavg()[0], "torch": torch.__version__}
    print_table(report, pairs, args)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


INFORMATIVE = {"simcse", "supervised_offsets"}  # see the docstring: reported, not targets


def passed(report: dict, forward_keys: list[str], target: float) -> bool:
    """Every targeted rel_diff <= target and every equality true. Targeted: the one-forward fields
    but INFORMATIVE, and on each architecture with `"target": true` its float32 losses, float64
    gradients and float64 losses (its float32 gradients are reported only)."""
    checked = [report[k] for k in forward_keys if k not in INFORMATIVE]
    targeted = [e for e in report["architectures"].values() if e["target"]]
    for entry in targeted:
        checked += [entry["mntp"], entry["simcse"], entry["supervised"], *entry["gradients"].values(),
                    *entry["float64_losses"].values()]
    equalities = [v for k, v in report.items() if k.endswith("_equal")]
    equalities += [e[k] for e in targeted for k in e if k.endswith("_equal")]
    # An architecture without a target is one whose reference is causal, and only that one: a
    # bidirectional reference marked "no target", or a causal one with a target, fails.
    equalities += [e["target"] == e["reference_bidirectional"] for e in report["architectures"].values()]
    return all(c["rel_diff"] <= target for c in checked) and all(equalities)


def cpu_model() -> str:
    """lscpu's "Model name" (from /proc/cpuinfo), the CPU line docs give beside a figure."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def print_table(report: dict, pairs: list, args) -> None:
    print(f"{'one forward (SmolLM2, eval)':<30}{'decoder2vec':>14}{'llm2vec 0.2.3':>16}{'rel diff':>12}")
    for key, _, _ in pairs:
        r = report[key]
        print(f"{key:<30}{r['ours']:>14.6f}{r['reference']:>16.6f}{r['rel_diff']:>12.2e}")
    print(f"\n{'training (LoRA A, B random)':<34}{'decoder2vec':>14}{'llm2vec 0.2.3':>16}{'rel diff':>12}")
    for arch, entry in report["architectures"].items():
        if not entry["target"]:
            print(f"{arch}: no target: {entry['no_target']}")
        if entry["target"] != entry["reference_bidirectional"]:
            print(f"{arch}: reference_bidirectional is {entry['reference_bidirectional']}, target {entry['target']}")
        for key in ("mntp", "simcse", "supervised"):
            for label, r in ((f"{arch} {key} loss fp32", entry[key]),
                             (f"{arch} {key} loss fp64", entry["float64_losses"][key]),
                             (f"{arch} {key} grads fp64", entry["gradients"][key]),
                             (f"{arch} {key} grads fp32 (info)", entry["float32_gradients"][key])):
                print(f"{label:<34}{r['ours']:>14.6f}{r['reference']:>16.6f}{r['rel_diff']:>12.2e}")
        print(f"{arch}: " + ", ".join(f"{k} {v}" for k, v in entry.items() if k.endswith("_equal")))
    print(f"\nMNTP blocks equal: {report['mntp_blocks_equal']} ({report['mntp_blocks']} blocks of {args.length})")
    print(f"E5 pooled tokens equal (plain and every chat format): {report['e5_pool_tokens_equal']}")
    for d in report["e5_pool_token_diffs"]:
        print(f"  {d['format'] or 'plain'} text {d['text']}: ours {d['ours']!r}  reference {d['reference']!r}")
    print(f"MNTP masks equal to transformers 4.44's collator: {report['collator_masks_equal']} "
          f"({report['collator_masked_tokens']} masked tokens per case)")
    for d in report["collator_mask_diffs"]:
        print(f"  {d}")
    print(f"E5Data rows equal: {report['e5data_rows_equal']} ({report['e5data_orders']}, {report['e5data_rows']} rows)")
    m = report["machine"]
    print(f"{'PASS' if report['passed'] else 'FAIL'} (rel_diff <= {args.target}, every equality); "
          f"{m['cpu']}, load average {m['load_average']:.2f}, torch {m['torch']}")


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
