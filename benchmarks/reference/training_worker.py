"""The reference llm2vec 0.2.3's training losses on given inputs. Runs inside the reference venv
(setup.sh); benchmarks/reference_training.py writes the inputs and compares.

    $(bash benchmarks/reference/setup.sh) benchmarks/reference/training_worker.py --model DIR --inputs in.json --output out.json

- MNTP: LlamaBiForMNTP (llm2vec's bidirectional Llama with its LM head) called with the given
  masked ids and labels; its loss is transformers 4.44's shifted cross-entropy, as run_mntp.py trains.
- SimCSE / supervised: LLM2Vec.tokenize + forward (mean pooling over the text after the
  separator) and llm2vec.loss.HardNegativeNLLLoss, as run_simcse.py / run_supervised.py call them
  (queries, positives and negatives encoded as three separate batches). Eval mode: no dropout.
- Blocks: run_mntp.py's preprocessing (tokenize every text with its special tokens, then
  group_texts over datasets.map's default batches of 1,000 texts) written out again here, since
  the script is not part of the package; the function itself is a few lines.
- Pooled tokens: the ids of the positions LLM2Vec pools (its embed_mask) for E5-formatted texts.
- Chat formats: the supervised loss and pooled tokens again with the model's name set to a hub id
  LLM2Vec wraps (prepare_for_tokenization picks the format by `config._name_or_path`), as
  run_supervised.py's collator calls it on every text.
"""

from __future__ import annotations


import torch
from llm2vec import LLM2Vec
from llm2vec.loss.HardNegativeNLLLoss import HardNegativeNLLLoss
from llm2vec.models import LlamaBiForMNTP
from transformers import AutoTokenizer
from worker_io import grouped_features, read_request, write_response



def main() -> None:
    args, inputs = read_request(__doc__)
    out = {}
    torch.manual_seed(0)

    if "mntp" in inputs:
        mntp = LlamaBiForMNTP.from_pretrained(args.model, torch_dtype=torch.float32, attn_implementation="sdpa").eval()
        with torch.no_grad():
            m = inputs["mntp"]
            result = mntp(input_ids=torch.tensor(m["masked"]), attention_mask=torch.tensor(m["attention"]),
                          labels=torch.tensor(m["labels"]))
        out["mntp"] = float(result.loss)
        del mntp
    if "blocks" in inputs:
        tokenizer = AutoTokenizer.from_pretrained(args.model)
        out["blocks"] = [f["input_ids"] for f in grouped_features(tokenizer, inputs["blocks"]["texts"],
                                                                   inputs["blocks"]["length"])]

    model = LLM2Vec.from_pretrained(args.model, enable_bidirectional=True, pooling_mode="mean",
                                    max_length=inputs["max_length"], torch_dtype=torch.float32,
                                    attn_implementation="sdpa")
    model.eval()

    def reps(texts: list[str]) -> torch.Tensor:
        features = model.tokenize([model.prepare_for_tokenization(t) for t in texts])
        return model(features)

    with torch.no_grad():
        if "simcse" in inputs:
            s = inputs["simcse"]
            vectors = reps(s["texts"])
            out["simcse"] = float(HardNegativeNLLLoss(scale=s["scale"])(vectors, vectors))
        if "supervised" in inputs:
            v = inputs["supervised"]
            out["supervised"] = float(HardNegativeNLLLoss(scale=v["scale"])(
                reps(v["queries"]), reps(v["positives"]), reps(v["negatives"])))
    def pooled(texts: list[str]) -> list[list[int]]:
        features = model.tokenize([model.prepare_for_tokenization(t) for t in texts])
        return [ids[mask.bool()].tolist() for ids, mask in zip(features["input_ids"], features["embed_mask"])]

    if "pooled" in inputs:
        out["pooled"] = pooled(inputs["pooled"]["texts"])
    if "chat" in inputs:
        v, name = inputs["supervised"], model.model.config._name_or_path
        out["chat"], out["pooled_chat"] = {}, {}
        for fmt, hub in inputs["chat"].items():
            model.model.config._name_or_path = hub
            with torch.no_grad():
                out["chat"][fmt] = float(HardNegativeNLLLoss(scale=v["scale"])(
                    reps(v["queries"]), reps(v["positives"]), reps(v["negatives"])))
            out["pooled_chat"][fmt] = pooled(inputs["pooled"]["texts"])
        model.model.config._name_or_path = name
    write_response(args.output, out)


if __name__ == "__main__":
    main()
