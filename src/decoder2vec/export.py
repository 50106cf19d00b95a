"""Share an Encoder: a sentence-transformers folder, a model card, an optional upload to the hub.

The folder is an Encoder folder (backbone safetensors + tokenizer + decoder2vec_config.json) with
the sentence-transformers files added beside it, so both loaders read the same weights:

    Encoder.from_pretrained(folder)      SentenceTransformer(folder)

Only stock sentence-transformers modules are referenced (Transformer + Pooling): loading needs
neither decoder2vec nor `trust_remote_code`. Bidirectional attention travels in the backbone's
config.json (`is_causal: false`), which transformers >= 5.2 honours for every attention kernel
(it builds a padding-only mask and passes `is_causal=False` to SDPA); the folder declares that
requirement so an older transformers fails loudly instead of silently running causal.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from .atomic import atomic_folder
from .errors import Decoder2VecError

log = logging.getLogger(__name__)

ST_TRANSFORMER = "sentence_transformers.base.modules.Transformer"
ST_POOLING = "sentence_transformers.sentence_transformer.modules.Pooling"

# decoder2vec pooling -> (ST pooling_mode, include_prompt). decoder2vec never pools instruction
# tokens for the means; its first_token is the first real token (the instruction's, if any),
# which is ST's "cls" with the prompt included.
POOLING_TO_ST = {
    "mean": ("mean", False),
    "weighted_mean": ("weightedmean", False),
    "last_token": ("lasttoken", True),
    "first_token": ("cls", True),
}

# Instructions offered as sentence-transformers prompts (ST's `prompt_name=`) when none are given.
DEFAULT_INSTRUCTIONS = {
    "query": "Given a question, retrieve passages that answer the question:",
}


def _load(encoder_or_path):
    from .encoder import Encoder

    if isinstance(encoder_or_path, Encoder):
        return encoder_or_path
    return Encoder.from_pretrained(encoder_or_path)


def check_exportable(encoder) -> None:
    if encoder.pooling not in POOLING_TO_ST:
        raise Decoder2VecError(
            f"pooling {encoder.pooling!r} has no sentence-transformers equivalent; "
            f"exportable poolings: {', '.join(POOLING_TO_ST)}"
        )


def st_prompts(encoder, instructions: dict[str, str] | None = None) -> dict[str, str]:
    """ST prompts are literal prefixes: each instruction formatted with the encoder's template."""
    instructions = DEFAULT_INSTRUCTIONS if instructions is None else instructions
    template = encoder.config.instruction_template
    return {name: template.format(instruction=text.strip()) for name, text in instructions.items()}


def write_sentence_transformers_files(encoder, folder, instructions: dict[str, str] | None = None, *,
                                      exact: bool = False) -> Path:
    """Add modules.json, sentence_bert_config.json, 1_Pooling/config.json and
    config_sentence_transformers.json to an Encoder folder written by `save_pretrained`.

    exact=True references decoder2vec's own module instead (see st_module.py): identical vectors
    always, but loading needs decoder2vec and `trust_remote_code=True`."""
    from importlib.metadata import PackageNotFoundError, version

    import torch
    import transformers

    from .bidirectional import quirks_for

    try:
        st_version = version("sentence-transformers")
    except PackageNotFoundError:  # writing the files does not need it; loading them does
        st_version = "6.0.0"
    folder = Path(folder)
    if not exact:
        check_exportable(encoder)
    net_config = encoder._backbone().config
    causal = not encoder.config.bidirectional
    config_kwargs = {"is_causal": causal}
    if hasattr(net_config.get_text_config(), "use_bidirectional_attention"):
        config_kwargs["use_bidirectional_attention"] = not causal
    transformer_config = {
        "transformer_task": "feature-extraction",
        "max_seq_length": encoder.max_length,
        "do_lower_case": False,
        # Repeated here (config.json says it too) so a user's config edit cannot silently undo it.
        "config_kwargs": config_kwargs,
        # decoder2vec pads on the right and numbers positions from the first real token; ST passes no
        # position_ids, so left padding would shift them.
        "processor_kwargs": {"padding_side": "right"},
    }
    attn = quirks_for(net_config).get("attn_implementation")
    if attn:
        transformer_config["model_kwargs"] = {"attn_implementation": attn}
    st_config = {
        "model_type": "SentenceTransformer",
        "__version__": {
            "sentence_transformers": st_version,
            "transformers": transformers.__version__,
            "pytorch": torch.__version__,
        },
        "requirements": {
            "transformers": {
                "specifier": ">=5.2",
                "reason": "older versions ignore is_causal=false and would run this bidirectional model causally",
            }
        },
        "prompts": st_prompts(encoder, instructions),
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    }
    _write_json(folder / "config_sentence_transformers.json", st_config)
    if exact:
        from .st_module import CLASS_REF

        _write_json(folder / "modules.json", [{"idx": 0, "name": "0", "path": "", "type": CLASS_REF}])
        # Stock-module files a save_pretrained folder may already hold would only mislead.
        (folder / "sentence_bert_config.json").unlink(missing_ok=True)
        shutil.rmtree(folder / "1_Pooling", ignore_errors=True)
        return folder
    mode, include_prompt = POOLING_TO_ST[encoder.pooling]
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": ST_TRANSFORMER},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": ST_POOLING},
    ]
    pooling_config = {"embedding_dimension": encoder.dimension, "pooling_mode": mode, "include_prompt": include_prompt}
    (folder / "1_Pooling").mkdir(parents=True, exist_ok=True)
    _write_json(folder / "modules.json", modules)
    _write_json(folder / "sentence_bert_config.json", transformer_config)
    _write_json(folder / "1_Pooling" / "config.json", pooling_config)
    return folder


def sentence_transformers_gaps(encoder, instructions: dict[str, str] | None = None) -> list[str]:
    """Where SentenceTransformer(folder) would not reproduce Encoder.encode exactly, in words.

    ST's Pooling cannot skip special tokens, and it drops a prompt by its length tokenized alone,
    while decoder2vec pools by character offsets; the two agree unless the tokenizer adds special
    tokens or merges the prompt's last characters with the text's first (e.g. a trailing space).
    """
    mode, include_prompt = POOLING_TO_ST.get(encoder.pooling, (None, True))
    if include_prompt:
        return []  # last/first token: both pick the same position
    gaps = []
    tok = encoder.tokenizer
    probe = "Hello world"
    with_special = tok(probe, add_special_tokens=True)["input_ids"]
    if with_special != tok(probe, add_special_tokens=False)["input_ids"]:
        gaps.append("the tokenizer adds special tokens, which sentence-transformers pools and decoder2vec does not")
    for name, prefix in st_prompts(encoder, instructions).items():
        if mode == "weightedmean":
            gaps.append(f"prompt {name!r}: ST keeps position weights counted from the prompt's first token")
            continue
        ids, masks, _ = encoder.tokenize([probe], [instructions_of(encoder, instructions)[name]])
        first_pooled = int(masks[0].argmax())
        alone = tok(prefix, add_special_tokens=True)["input_ids"]
        st_length = len(alone) - (1 if alone and alone[-1] in tok.all_special_ids else 0)
        if st_length != first_pooled:
            gaps.append(
                f"prompt {name!r}: tokenized alone it is {st_length} tokens but the text starts at token "
                f"{first_pooled} (the prompt's end merges with the text's first token)"
            )
    return gaps


def instructions_of(encoder, instructions: dict[str, str] | None) -> dict[str, str]:
    return DEFAULT_INSTRUCTIONS if instructions is None else instructions


def export_sentence_transformers(
    encoder_or_path,
    out_dir,
    results=None,
    *,
    instructions: dict[str, str] | None = None,
    model_name: str | None = None,
    exact: bool = False,
) -> Path:
    """Write a folder that `SentenceTransformer(out_dir)` and `Encoder.from_pretrained(out_dir)` load,
    with a README.md model card. `results`: a results JSON path or dict for the card's table.
    exact=True: decoder2vec's own ST module (identical vectors; loading needs decoder2vec and
    trust_remote_code=True). Atomic: out_dir appears only when complete. Returns out_dir."""
    from .model_card import model_card

    encoder = _load(encoder_or_path)
    out = Path(out_dir)
    if isinstance(results, (str, os.PathLike)):
        from .evaluation.runner import read_results

        results = read_results(results)
    if not exact:
        check_exportable(encoder)  # before the (slow) weight write
    gaps = [] if exact else sentence_transformers_gaps(encoder, instructions)
    for gap in gaps:
        log.warning("sentence-transformers export: %s", gap)
    with atomic_folder(out) as folder:
        encoder.write_files(folder)
        write_sentence_transformers_files(encoder, folder, instructions, exact=exact)
        card = model_card(encoder, results=results, instructions=instructions_of(encoder, instructions),
                          model_name=model_name or out.name, gaps=gaps, exact=exact)
        (folder / "README.md").write_text(card, encoding="utf-8")
    return out


def push_to_hub(folder, repo_id: str, *, private: bool = False, token: str | None = None) -> str:
    """Upload an exported folder with huggingface_hub; returns the repo URL."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError, OfflineModeIsEnabled

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise Decoder2VecError(f"cannot push to {repo_id!r}: HF_HUB_OFFLINE is set; the folder is ready at {folder}")
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id,
                          commit_message="Upload decoder2vec encoder (sentence-transformers format)")
    except LocalTokenNotFoundError as exc:
        raise Decoder2VecError(f"pushing to {repo_id!r} needs a hub token: `huggingface-cli login` or $HF_TOKEN; "
                               f"the folder is ready at {folder}") from exc
    except (OfflineModeIsEnabled, OSError, *_transport_errors()) as exc:
        raise Decoder2VecError(
            f"cannot reach the Hugging Face hub to push {repo_id!r} ({type(exc).__name__}); "
            f"the folder is ready at {folder}: upload it later with `huggingface-cli upload {repo_id} {folder}`"
        ) from exc
    except HfHubHTTPError as exc:
        raise Decoder2VecError(f"the hub refused the push to {repo_id!r}: {exc}") from exc
    return f"https://huggingface.co/{repo_id}"


def _transport_errors() -> tuple:
    """Connection failures of whichever HTTP client huggingface_hub uses (httpx2, httpx; requests'
    are OSErrors already)."""
    import importlib

    found = []
    for name in ("httpx2", "httpx"):
        try:
            found.append(importlib.import_module(name).TransportError)
        except (ImportError, AttributeError):
            pass
    return tuple(found)


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


__all__ = [
    "export_sentence_transformers", "write_sentence_transformers_files", "sentence_transformers_gaps",
    "push_to_hub", "POOLING_TO_ST",
]
