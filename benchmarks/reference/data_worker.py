"""The reference's training data, from its own code: transformers 4.44's MNTP collator configured as
run_mntp.py configures it, and llm2vec 0.2.3's E5Data on a public-layout folder. Runs in the
reference venv (setup.sh); benchmarks/reference_training.py compares with decoder2vec.

    $(bash benchmarks/reference/setup.sh) benchmarks/reference/data_worker.py --model DIR --inputs in.json --output out.json

- collator: run_mntp.py's tokenizer set-up (mask_token_type "blank": mask token "_"; pad = EOS),
  its blocks (tokenize with special-token masks, group_texts over 1,000-text map batches), then
  DataCollatorForLanguageModeling(mlm_probability=p) after torch.manual_seed(seed); "all-mask"
  uses run_mntp.py's DataCollatorForLanguageModelingWithFullMasking (not in the wheel: its
  torch_mask_tokens is written out again below, as run_mntp.py has it).
- e5data: Accelerator() and transformers.set_seed(seed) (run_supervised.py does both before loading), then
  E5Data(split="train", file_path=FOLDER, effective_batch_size=B): its rows in training order.
"""

from __future__ import annotations


import torch
from accelerate import Accelerator
from llm2vec.dataset.E5Data import E5Data
from transformers import AutoTokenizer, DataCollatorForLanguageModeling, set_seed
from worker_io import grouped_features, read_request, write_response



class DataCollatorForLanguageModelingWithFullMasking(DataCollatorForLanguageModeling):
    def torch_mask_tokens(self, inputs, special_tokens_mask=None):
        labels = inputs.clone()
        probability_matrix = torch.full(labels.shape, self.mlm_probability)
        if special_tokens_mask is None:
            special_tokens_mask = torch.tensor(
                [self.tokenizer.get_special_tokens_mask(val, already_has_special_tokens=True)
                 for val in labels.tolist()], dtype=torch.bool)
        else:
            special_tokens_mask = special_tokens_mask.bool()
        probability_matrix.masked_fill_(special_tokens_mask, value=0.0)
        masked_indices = torch.bernoulli(probability_matrix).bool()
        labels[~masked_indices] = -100
        inputs[masked_indices] = self.tokenizer.convert_tokens_to_ids(self.tokenizer.mask_token)
        return inputs, labels


def main() -> None:
    args, inputs = read_request(__doc__)
    out = {}

    c = inputs["collator"]
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    if tokenizer.mask_token is None:
        tokenizer.mask_token = "_"  # run_mntp.py, mask_token_type "blank"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    features = grouped_features(tokenizer, c["texts"], c["length"])[:c["blocks"]]
    out["collator"] = []
    for case in c["cases"]:
        cls = DataCollatorForLanguageModelingWithFullMasking if case["policy"] == "all-mask" \
            else DataCollatorForLanguageModeling
        collator = cls(tokenizer=tokenizer, mlm_probability=case["probability"], pad_to_multiple_of=None)
        torch.manual_seed(case["seed"])
        batch = collator([dict(f) for f in features])
        out["collator"].append({"input_ids": batch["input_ids"].tolist(), "labels": batch["labels"].tolist(),
                                "mask_id": tokenizer.convert_tokens_to_ids(tokenizer.mask_token)})

    e = inputs["e5data"]
    out["e5data"] = {}
    Accelerator()  # run_supervised.py makes one before loading; E5Data logs through it
    for block in e["blocks"]:
        set_seed(e["seed"])
        data = E5Data(split="train", file_path=e["folder"], effective_batch_size=block)
        out["e5data"][str(block)] = [[s.query, s.positive, s.negative] for s in data.data]
    write_response(args.output, out)


if __name__ == "__main__":
    main()
