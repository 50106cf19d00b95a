"""decoder2vec's side of the training and data comparisons in reference_training.py (see its
docstring): per architecture, the losses and LoRA gradients with a non-zero adapter (SimCSE with
replayed dropout); the MNTP masks against transformers 4.44's collator; read_e5 + e5_blocks
against llm2vec's E5Data. Not part of the library."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from common import REFERENCE, reference_python, scratch_dir

sys.path.insert(0, str(REFERENCE))
from float64_rope import float64_calls, float64_rope  # noqa: E402
from prepare_model import prepare  # noqa: E402
from replay_dropout import ReplayDropout  # noqa: E402

from decoder2vec.data.paper import E5_INSTRUCTIONS, e5_blocks, read_e5  # noqa: E402
from decoder2vec.training.config import make_config  # noqa: E402
from decoder2vec.training.lora import add_lora  # noqa: E402
from decoder2vec.training.mntp import MNTPStage, mask_batch  # noqa: E402
from decoder2vec.training.simcse import SimCSEStage  # noqa: E402
from decoder2vec.training.supervised import SupervisedStage  # noqa: E402

SEPARATOR = "!@#$%^&*()"
LORA_R, LORA_ALPHA = 4, 8
SIMCSE_DROPOUT, SEED = 0.3, 0
# (policy, probability): run_mntp.py's default collator at the paper's 0.2, Mistral's all-mask at 0.8.
COLLATOR_CASES = [("80-10-10", 0.2, 0), ("80-10-10", 0.2, 1), ("all-mask", 0.8, 0)]
E5_BLOCKS = [(2, 1), (2, 3), (4, 2)]  # (per-device batch, processes)


# ---------------------------------------------------------------- tiny models for 4.44
def tiny_model_dir(arch: str, tokenizer_source: str, root: Path) -> str:
    """A tiny random `arch` CausalLM with the SmolLM2 tokenizer (written by transformers 5), and its
    copy that transformers 4.44 reads (prepare_model.py); returns the source folder, the copy is
    reference_dir(source)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    source = root / f"tiny-{arch}"
    if not (source / "config.json").exists():
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
        extra = {"head_dim": 16} if arch == "gemma" else {}
        config = AutoConfig.for_model(
            arch, **extra, vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=False,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(config).save_pretrained(source)
        tokenizer.save_pretrained(source)
    return str(source)


def reference_dir(source: str) -> str:
    return str(prepare(Path(source), Path(source).parent / f"{Path(source).name}-4.44"))


# ---------------------------------------------------------------- LoRA weights and gradients
def canonical(name: str) -> str:
    return name[name.index("layers."):].replace(".default", "")


def random_lora(model, seed: int) -> dict:
    """Give every LoRA matrix of `model` seeded random values (B too, so the adapter changes the
    outputs and every matrix gets a gradient); returns them by canonical name."""
    generator = torch.Generator().manual_seed(seed)
    weights = {}
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * (0.05 if "lora_B" in name else 0.2))
                weights[canonical(name)] = param.detach().clone()
    return weights


def set_lora(model, weights: dict) -> None:
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.copy_(weights[canonical(name)])


def lora_grads(model) -> dict:
    return {canonical(n): p.grad.detach().clone() for n, p in model.named_parameters()
            if "lora_" in n and p.grad is not None}


def compare_grads(ours: dict, theirs: dict) -> dict:
    """{"ours": |g| total, "reference": |g| total, "rel_diff": max over tensors |g_o - g_r| / |g_r|}."""
    if set(ours) != set(theirs):
        missing = sorted(set(ours) ^ set(theirs))
        return {"ours": None, "reference": None, "rel_diff": float("inf"), "missing": missing[:4]}
    worst = max(float((ours[k] - theirs[k]).norm() / theirs[k].norm().clamp_min(1e-30)) for k in ours)
    total = lambda g: float(torch.sqrt(sum((t.double() ** 2).sum() for t in g.values())))  # noqa: E731
    return {"ours": round(total(ours), 7), "reference": round(total(theirs), 7), "rel_diff": float(f"{worst:.3g}")}


def compare(a: float, b: float) -> dict:
    return {"ours": round(a, 7), "reference": round(b, 7), "rel_diff": float(f"{abs(a - b) / max(abs(b), 1e-12):.3g}")}


def equal_length_sentences(tokenizer, texts: list[str], n: int) -> list[str]:
    """n distinct first sentences that tokenize to one length (no padding: the replayed dropout
    masks then line up row for row)."""
    sentences = list(dict.fromkeys(t.split(". ")[0].strip()[:200] for t in texts))
    by_length = collections.defaultdict(list)
    for s in sentences:
        by_length[len(tokenizer(s)["input_ids"])].append(s)
    fits = [group for length, group in by_length.items() if length >= 8 and len(group) >= n]
    if not fits:
        raise SystemExit(f"no {n} sentences of one token length (>= 8) among {len(sentences)}")
    return max(fits, key=len)[:n]


# ---------------------------------------------------------------- one architecture
def in_dtype(model, dtype: torch.dtype):
    """`model` (LoRA included) cast to `dtype`; stops if a floating parameter was left in another
    (a float32 LoRA layer on a float64 model would compute in float32 and hide what float64 shows)."""
    model.to(dtype)
    left = {str(p.dtype) for p in model.parameters() if p.is_floating_point() and p.dtype != dtype}
    if left:
        raise SystemExit(f"parameters left in {sorted(left)} after casting to {dtype}")
    return model


def ours_training(source: str, blocks: list[list[int]], sentences: list[str], rows: list, length: int, work: Path,
                  dtype: torch.dtype = torch.float32):
    """Our losses and gradients, the models in `dtype` (float64: RoPE angles too, float64_rope.py);
    writes the LoRA weights the reference uses; returns (results, grads, inputs for
    reference/gradient_worker.py)."""
    exact_rope = dtype == torch.float64
    rope_calls = {}
    base = dict(model=source, output_dir="unused", data=["unused"], train_max_length=length, lora_dropout=0.0,
                pool_span="llm2vec", lora_r=LORA_R, lora_alpha=LORA_ALPHA)
    results, grads = {}, {}

    from transformers import AutoConfig

    # run_mntp.py trains an untied head in full and leaves a tied one frozen (SmolLM2's is tied).
    tied = AutoConfig.from_pretrained(source).get_text_config().tie_word_embeddings
    mntp = MNTPStage(make_config({**base, "stage": "mntp", "packing": "blocks", "train_lm_head": not tied}))
    mntp.load()
    model = in_dtype(add_lora(mntp.net, r=LORA_R, alpha=LORA_ALPHA, dropout=0.0), dtype)
    weights = random_lora(model, SEED)
    if exact_rope:
        float64_rope(model)
    mntp.attach(model)
    for module in mntp.extra_modules().values():  # the engine trains them (train_lm_head)
        module.requires_grad_(True)
    batch = torch.tensor(blocks[:4])
    attention = torch.ones_like(batch)
    masked, labels = mask_batch(batch, attention, mask_id=mntp.mask_id, vocab_size=len(mntp.tokenizer),
                                probability=0.2, policy="80-10-10", generator=torch.Generator().manual_seed(0),
                                special_ids=mntp.special_ids)
    logits, target = mntp.predict(model, masked, attention, labels)
    loss = F.cross_entropy(logits, target)
    loss.backward()
    grads["mntp"] = lora_grads(model)
    if mntp.lm_head.weight.grad is not None:
        grads["mntp"]["lm_head.weight"] = mntp.lm_head.weight.grad
    results["mntp"], rope_calls["mntp"] = float(loss.detach()), float64_calls(model)
    del mntp, model

    common = dict(base, hidden_dropout=0.0)
    simcse = SimCSEStage(make_config({**common, "stage": "simcse", "scale": 20.0, "attention_dropout": SIMCSE_DROPOUT}))
    simcse.load()
    model = in_dtype(add_lora(simcse.net, r=LORA_R, alpha=LORA_ALPHA, dropout=0.0), dtype)
    set_lora(model, weights)
    if exact_rope:
        float64_rope(model)
    model.train()
    layers = simcse.net.config.get_text_config().num_hidden_layers
    with ReplayDropout(texts=len(sentences), layers=layers, views_in_rows=True, seed=SEED) as replay:
        loss = simcse.loss(model, simcse.collate(sentences))[0]
    loss.backward()
    results["simcse"], grads["simcse"] = float(loss), lora_grads(model)
    rope_calls["simcse"] = float64_calls(model)
    # Dropout calls: one forward of both views here, one per view in the reference.
    results["dropout_layers"] = replay.calls * 2
    del simcse, model

    supervised = SupervisedStage(make_config({**common, "stage": "supervised", "scale": 50.0, "attention_dropout": 0.0,
                                              "batch_per_task": False, "instruction_template": "{instruction}; "}))
    supervised.load()
    model = in_dtype(add_lora(supervised.net, r=LORA_R, alpha=LORA_ALPHA, dropout=0.0), dtype)
    set_lora(model, weights)
    if exact_rope:
        float64_rope(model)
    loss = supervised.loss(model, supervised.collate(rows))[0]
    loss.backward()
    results["supervised"], grads["supervised"] = float(loss), lora_grads(model)
    rope_calls["supervised"] = float64_calls(model)
    results["float64_rope_calls"] = rope_calls

    torch.save(weights, work / "lora.pt")
    inputs = {"lora": str(work / "lora.pt"), "dtype": str(dtype).removeprefix("torch."), "float64_rope": exact_rope,
              "lora_r": LORA_R, "lora_alpha": LORA_ALPHA, "max_length": length,
              "mntp": {"masked": masked.tolist(), "attention": attention.tolist(), "labels": labels.tolist()},
              "simcse": {"texts": [SEPARATOR + s for s in sentences], "scale": 20.0, "dropout": SIMCSE_DROPOUT,
                         "seed": SEED},
              "grads": {k: str(work / f"reference-{k}.pt") for k in ("mntp", "simcse", "supervised")}}
    return results, grads, inputs


def run_worker(script: str, model_dir: str, inputs: dict, work: Path) -> dict:
    (work / f"{script}.inputs.json").write_text(json.dumps(inputs), encoding="utf-8")
    output = work / f"{script}.output.json"
    proc = subprocess.run([reference_python(), str(REFERENCE / script), "--model", model_dir,
                           "--inputs", str(work / f"{script}.inputs.json"), "--output", str(output)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{script} failed:\n{proc.stderr[-3000:]}")
    return json.loads(output.read_text(encoding="utf-8"))


STAGES = ("mntp", "simcse", "supervised")
# Architectures whose llm2vec 0.2.3 class is not bidirectional: reported, without a target.
NO_TARGET = {"qwen2": "llm2vec 0.2.3's Qwen2BiModel sets is_causal=False on its attention modules but keeps "
                      "Qwen2Model's causal mask, so the reference is causal; decoder2vec's Qwen2 is bidirectional"}


def training_run(source: str, reference_model: str, blocks, sentences, rows, supervised_inputs: dict, length: int,
                 dtype: torch.dtype) -> dict:
    """Both sides' losses and LoRA gradients with the models in `dtype`."""
    work = scratch_dir()
    mine, grads, inputs = ours_training(source, blocks, sentences, rows, length, work, dtype)
    theirs = run_worker("gradient_worker.py", reference_model, {**inputs, "supervised": supervised_inputs}, work)
    return {"losses": {k: compare(mine[k], theirs[k]) for k in STAGES},
            "gradients": {k: compare_grads(grads[k], torch.load(inputs["grads"][k], weights_only=True))
                          for k in STAGES},
            "bidirectional": theirs["bidirectional"],
            # float64 runs: every stage computed its RoPE angles in float64 on both sides.
            "float64_rope": all(mine["float64_rope_calls"][k] > 0 and theirs["float64_rope_calls"][k] > 0
                                for k in STAGES),
            # Every layer dropped attention on both sides (an undropped run would also give equal losses).
            "dropout_layers_equal": mine["dropout_layers"] == theirs["dropout_calls"] > 0}


def architecture_report(arch: str, source: str, reference_model: str, blocks, sentences, rows,
                        supervised_inputs: dict, length: int) -> dict:
    """One model, two runs: float32 (the losses, as training computes them) and float64 (the
    gradients: float32's rounding over a long backward is ~1e-4 of a gradient, the size of the
    target, so a real difference could hide in it). The float64 run computes the RoPE angles in
    float64 too (float64_rope.py: llm2vec left-pads, decoder2vec right-pads, and float32 angles at
    other absolute positions alone moved SmolLM2's supervised LoRA gradients by 1.05e-4); what is
    left is the float32 casts the implementations keep: transformers' MNTP logits (both sides),
    decoder2vec's pooling and contrastive scores (up to ~1e-5 of a gradient)."""
    fp32 = training_run(source, reference_model, blocks, sentences, rows, supervised_inputs, length, torch.float32)
    fp64 = training_run(source, reference_model, blocks, sentences, rows, supervised_inputs, length, torch.float64)
    report = {"target": arch not in NO_TARGET, **({"no_target": NO_TARGET[arch]} if arch in NO_TARGET else {}),
              "dtypes": {"losses": "float32", "gradients": "float64", "float64_losses": "float64",
                         "float32_gradients": "float32 (reported, not a target)"},
              **fp32["losses"],
              "gradients": fp64["gradients"],
              "float64_losses": fp64["losses"],
              "float32_gradients": fp32["gradients"],
              "reference_bidirectional": fp32["bidirectional"] and fp64["bidirectional"],
              "simcse_dropout_layers_equal": fp32["dropout_layers_equal"] and fp64["dropout_layers_equal"],
              "float64_rope_equal": fp64["float64_rope"]}
    return report


# ---------------------------------------------------------------- data: collator masks, E5Data
def public_e5_folder(root: Path) -> Path:
    """Every file of the public archive, with its fields: 3 + 5k rows for the k-th dataset, and 4
    rows in each of the split files the archive also holds (0.2.3 never opens them)."""
    folder = root / "echo-data"
    folder.mkdir(parents=True, exist_ok=True)
    names = [*E5_INSTRUCTIONS, "allnli_split1", "allnli_split2", "quora_duplicates_split1", "quora_duplicates_split2"]
    for k, name in enumerate(names):
        with open(folder / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for i in range(3 + 5 * k if name in E5_INSTRUCTIONS else 4):
                f.write(json.dumps({"query": f"{name} question {i}?", "positive": f"The {name} answer {i}.",
                                    "negative": f"An unrelated {name} text {i}."}) + "\n")
    return folder


def data_report(source: str, reference_model: str, texts: list[str], length: int) -> dict:
    work = scratch_dir()
    folder = public_e5_folder(work)
    inputs = {"collator": {"texts": texts, "length": length, "blocks": 4,
                           "cases": [{"policy": p, "probability": q, "seed": s} for p, q, s in COLLATOR_CASES]},
              "e5data": {"folder": str(folder), "seed": 42, "blocks": [per * size for per, size in E5_BLOCKS]}}
    theirs = run_worker("data_worker.py", reference_model, inputs, work)

    mntp = MNTPStage(make_config({"stage": "mntp", "model": source, "output_dir": "unused", "data": ["unused"],
                                  "train_max_length": length}))
    mntp.load()
    from decoder2vec.training.mntp import pack_blocks

    batch = torch.tensor(pack_blocks(mntp.tokenizer, texts, length)[:4])
    diffs, masked_counts = [], []
    for (policy, probability, seed), ref in zip(COLLATOR_CASES, theirs["collator"]):
        masked, labels = mask_batch(batch, torch.ones_like(batch), mask_id=mntp.mask_id,
                                    vocab_size=len(mntp.tokenizer), probability=probability, policy=policy,
                                    generator=torch.Generator().manual_seed(seed), special_ids=mntp.special_ids)
        want_ids, want_labels = torch.tensor(ref["input_ids"]), torch.tensor(ref["labels"])
        masked_counts.append(int((labels != -100).sum()))
        if mntp.mask_id != ref["mask_id"]:
            diffs.append({"case": f"{policy} {probability} seed {seed}", "mask_id": [mntp.mask_id, ref["mask_id"]]})
        for row, col in ((masked != want_ids) | (labels != want_labels)).nonzero().tolist():
            diffs.append({"case": f"{policy} {probability} seed {seed}", "row": row, "position": col,
                          "ours": [int(masked[row, col]), int(labels[row, col])],
                          "reference": [int(want_ids[row, col]), int(want_labels[row, col])]})

    pairs = read_e5(folder)
    e5_equal = {}
    for per, size in E5_BLOCKS:
        blocks, _ = e5_blocks(pairs, per * size, 42)
        ours = [[f"{p.instruction}; {SEPARATOR}{p.query}", SEPARATOR + p.positive, SEPARATOR + p.negatives[0]]
                for b in blocks for p in b]
        e5_equal[f"{per}x{size}"] = ours == theirs["e5data"][str(per * size)]
    return {"collator_masks_equal": not diffs, "collator_mask_diffs": diffs[:20],
            "collator_masked_tokens": masked_counts, "e5data_rows_equal": all(e5_equal.values()),
            "e5data_orders": e5_equal, "e5data_rows": len(pairs)}
