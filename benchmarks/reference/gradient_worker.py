"""llm2vec 0.2.3's training losses and LoRA gradients with a given non-zero LoRA adapter. Runs in the
reference venv (setup.sh); benchmarks/reference_training.py writes the inputs and compares.

    $(bash benchmarks/reference/setup.sh) benchmarks/reference/gradient_worker.py --model DIR --inputs in.json --output out.json

The adapter is put where the reference scripts put it (peft's get_peft_model on the inner model:
`model.model` of the *BiForMNTP class in run_mntp.py, `LLM2Vec.model` in run_simcse.py and
run_supervised.py), with the LoRA weights decoder2vec used (a torch file of canonical names), the
models in the request's `dtype` (float32 or float64; with `float64_rope`, the RoPE angles too, by
float64_rope.py, as decoder2vec's side does), then one backward of each loss:
- mntp: *BiForMNTP(labels=...).loss, its LM head trainable (run_mntp.py leaves it so);
- simcse: LLM2Vec with attention_dropout (run_simcse.py's simcse_dropout), train mode, each view
  its own forward, HardNegativeNLLLoss; dropout masks replayed by replay_dropout.ReplayDropout;
- supervised: queries, positives, negatives as three forwards, HardNegativeNLLLoss.
Gradients are written as torch files {canonical name: gradient}; `float64_rope_calls`: per stage,
how many times the float64 rotary embeddings ran (0 without `float64_rope`). `bidirectional`: whether the
reference's bidirectional model really is (its first position's state differs from the causal
model's; llm2vec 0.2.3's Qwen2BiModel keeps Qwen2's causal mask, so it is not).
"""

from __future__ import annotations


import torch
from llm2vec import LLM2Vec
from llm2vec.loss.HardNegativeNLLLoss import HardNegativeNLLLoss
from float64_rope import float64_calls, float64_rope
from llm2vec.models import GemmaBiForMNTP, LlamaBiForMNTP, MistralBiForMNTP, Qwen2BiForMNTP
from peft import LoraConfig, get_peft_model
from replay_dropout import ReplayDropout
from transformers import AutoConfig, AutoModel
from worker_io import read_request, write_response

MNTP_CLASSES = {"llama": LlamaBiForMNTP, "mistral": MistralBiForMNTP, "qwen2": Qwen2BiForMNTP,
                "gemma": GemmaBiForMNTP}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def canonical(name: str) -> str:
    """'base_model.model.layers.0.self_attn.q_proj.lora_A.default.weight' -> 'layers.0.self_attn.q_proj.lora_A.weight'."""
    return name[name.index("layers."):].replace(".default", "")


def with_lora(module, weights: dict, r: int, alpha: float, dtype: torch.dtype):
    model = get_peft_model(module, LoraConfig(r=r, lora_alpha=alpha, target_modules=TARGETS, lora_dropout=0.0,
                                              bias="none")).to(dtype)
    left = {str(p.dtype) for p in model.parameters() if p.is_floating_point() and p.dtype != dtype}
    if left:  # a LoRA layer left in float32 would compute in float32 inside a float64 model
        raise SystemExit(f"parameters left in {sorted(left)} after casting to {dtype}")
    seen = set()
    for name, param in model.named_parameters():
        if "lora_" in name:
            key = canonical(name)
            param.data.copy_(weights[key])
            seen.add(key)
    if seen != set(weights):
        raise SystemExit(f"LoRA weights do not match the model: {sorted(set(weights) ^ seen)[:4]}")
    return model


def lora_grads(model) -> dict:
    return {canonical(n): p.grad.detach().clone() for n, p in model.named_parameters()
            if "lora_" in n and p.grad is not None}


def main() -> None:
    args, inputs = read_request(__doc__)
    weights = torch.load(inputs["lora"], weights_only=True)
    r, alpha = inputs["lora_r"], inputs["lora_alpha"]
    dtype = getattr(torch, inputs.get("dtype", "float32"))
    model_type = AutoConfig.from_pretrained(args.model).model_type
    exact_rope = inputs.get("float64_rope", False)
    out = {"float64_rope_calls": {}}

    ids = torch.tensor(inputs["mntp"]["masked"][:1])
    with torch.no_grad():
        causal = AutoModel.from_pretrained(args.model, torch_dtype=dtype, attn_implementation="sdpa")
        states = [model(input_ids=ids).last_hidden_state[0, 0] for model in (
            causal, LLM2Vec.from_pretrained(args.model, torch_dtype=dtype, attn_implementation="sdpa").model)]
    out["bidirectional"] = not torch.allclose(states[0], states[1], atol=1e-6)
    del causal

    m = inputs["mntp"]
    mntp = MNTP_CLASSES[model_type].from_pretrained(args.model, torch_dtype=dtype, attn_implementation="sdpa")
    mntp.model = with_lora(mntp.model, weights, r, alpha, dtype)
    if exact_rope:
        float64_rope(mntp)
    loss = mntp(input_ids=torch.tensor(m["masked"]), attention_mask=torch.tensor(m["attention"]),
                labels=torch.tensor(m["labels"])).loss
    loss.backward()
    grads = lora_grads(mntp.model)
    if mntp.lm_head.weight.grad is not None:  # an untied head: trainable in run_mntp.py
        grads["lm_head.weight"] = mntp.lm_head.weight.grad.detach().clone()
    out["mntp"], out["float64_rope_calls"]["mntp"] = float(loss), float64_calls(mntp)
    torch.save(grads, inputs["grads"]["mntp"])
    del mntp

    def llm2vec(dropout: float):
        model = LLM2Vec.from_pretrained(args.model, enable_bidirectional=True, pooling_mode="mean",
                                        max_length=inputs["max_length"], torch_dtype=dtype,
                                        attn_implementation="sdpa", attention_dropout=dropout)
        model.model = with_lora(model.model, weights, r, alpha, dtype)
        if exact_rope:
            float64_rope(model.model)
        return model

    def reps(model, texts: list[str]) -> torch.Tensor:
        return model(model.tokenize([model.prepare_for_tokenization(t) for t in texts]))

    s = inputs["simcse"]
    model = llm2vec(s["dropout"])
    model.train()
    layers = model.model.config.num_hidden_layers
    with ReplayDropout(texts=len(s["texts"]), layers=layers, views_in_rows=False, seed=s["seed"]) as replay:
        loss = HardNegativeNLLLoss(scale=s["scale"])(reps(model, s["texts"]), reps(model, s["texts"]))
    loss.backward()
    out["simcse"], out["dropout_calls"] = float(loss), replay.calls
    out["float64_rope_calls"]["simcse"] = float64_calls(model.model)
    torch.save(lora_grads(model.model), inputs["grads"]["simcse"])
    del model

    v = inputs["supervised"]
    model = llm2vec(0.0)
    loss = HardNegativeNLLLoss(scale=v["scale"])(reps(model, v["queries"]), reps(model, v["positives"]),
                                                reps(model, v["negatives"]))
    loss.backward()
    out["supervised"] = float(loss)
    out["float64_rope_calls"]["supervised"] = float64_calls(model.model)
    torch.save(lora_grads(model.model), inputs["grads"]["supervised"])
    write_response(args.output, out)


if __name__ == "__main__":
    main()
