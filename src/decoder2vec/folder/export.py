"""Share an Encoder: a sentence-transformers folder, a model card, an optional upload to the hub.

The folder is an Encoder folder (backbone safetensors + tokenizer + decoder2vec_config.json) with
the sentence-transformers files beside it (sentence_transformers.py), so both loaders read the same weights:

    Encoder.from_pretrained(folder)      SentenceTransformer(folder)
"""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path

from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError, OfflineModeIsEnabled

from ..atomic import atomic_folder, check_output_folder
from ..encoder import Encoder
from ..errors import Decoder2VecError
from .model_card import model_card
from ..results import read_results
from .sentence_transformers import DEFAULT_INSTRUCTIONS, POOLING_TO_ST, check_exportable, st_prompts

log = logging.getLogger(__name__)

EXPORT_KIND = "sentence-transformers export"


def sentence_transformers_gaps(encoder, instructions: dict[str, str] | None = None) -> list[str]:
    """Where SentenceTransformer(folder) would not reproduce Encoder.encode exactly, in words.

    ST's Pooling cannot skip special tokens, and it drops a prompt by its length tokenized alone,
    while decoder2vec pools by character offsets; the two agree unless the tokenizer adds special
    tokens or merges the prompt's last characters with the text's first (e.g. a trailing space).
    """
    gaps = []
    # Neither can be written as an ST prompt (a prefix): the chat format also puts text after the
    # input, and llm2vec's pool span counts the text's tokens as if tokenized alone.
    if encoder.config.chat_format:
        gaps.append(f"chat_format {encoder.config.chat_format!r} wraps every input in a chat template, which a "
                    "sentence-transformers prompt cannot express (export with exact=True / --exact)")
    if encoder.config.pool_span != "offsets":
        gaps.append(f"pool_span {encoder.config.pool_span!r} pools the last n tokens (n = the text's count tokenized "
                    "alone), which sentence-transformers' prompt-length rule does not (export with exact=True / --exact)")
    mode, include_prompt = POOLING_TO_ST.get(encoder.pooling, (None, True))
    if include_prompt:
        return gaps  # last/first token: both pick the same position
    tok = encoder.tokenizer
    probe = "Hello world"
    with_special = tok(probe, add_special_tokens=True)["input_ids"]
    if with_special != tok(probe, add_special_tokens=False)["input_ids"]:
        gaps.append("the tokenizer adds special tokens, which sentence-transformers pools and decoder2vec does not")
    for name, prefix in st_prompts(encoder.config, instructions).items():
        if mode == "weightedmean":
            gaps.append(f"prompt {name!r}: ST keeps position weights counted from the prompt's first token")
            continue
        ids, masks, _ = encoder.tokenize([probe], [instructions_of(instructions)[name]])
        first_pooled = int(masks[0].argmax())
        alone = tok(prefix, add_special_tokens=True)["input_ids"]
        st_length = len(alone) - (1 if alone and alone[-1] in tok.all_special_ids else 0)
        if st_length != first_pooled:
            gaps.append(
                f"prompt {name!r}: tokenized alone it is {st_length} tokens but the text starts at token "
                f"{first_pooled} (the prompt's end merges with the text's first token)"
            )
    return gaps


def instructions_of(instructions: dict[str, str] | None) -> dict[str, str]:
    return DEFAULT_INSTRUCTIONS if instructions is None else instructions


def export_sentence_transformers(
    encoder_or_path,
    out_dir,
    results=None,
    *,
    instructions: dict[str, str] | None = None,
    model_name: str | None = None,
    exact: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write a folder that `SentenceTransformer(out_dir)` and `Encoder.from_pretrained(out_dir)` load,
    with a README.md model card. `results`: a results JSON path or dict for the card's table.
    exact=True: decoder2vec's own ST module (identical vectors; loading needs decoder2vec and
    trust_remote_code=True). Atomic: out_dir appears only when complete. An existing out_dir that is
    not an earlier export is refused unless overwrite=True, which replaces only decoder2vec's files
    (atomic.py). Returns out_dir."""
    source = None if isinstance(encoder_or_path, Encoder) else encoder_or_path
    # Checked before the (slow) load; again, with the loaded model's folder, by atomic_folder.
    out = check_output_folder(out_dir, kind=EXPORT_KIND, overwrite=overwrite,
                              sources=[source] if source and Path(source).exists() else [])
    encoder = encoder_or_path if isinstance(encoder_or_path, Encoder) else Encoder.from_pretrained(encoder_or_path)
    if isinstance(results, (str, os.PathLike)):
        results = read_results(results)
    if not exact:
        check_exportable(encoder.pooling)  # before the (slow) weight write
        if encoder.latent_attention is not None:
            raise Decoder2VecError(f"{encoder.path or 'this Encoder'} has a trained latent-attention pooling layer, which "
                                   "sentence-transformers' Pooling cannot run: export with exact=True (--exact)")
    gaps = [] if exact else sentence_transformers_gaps(encoder, instructions)
    for gap in gaps:
        log.warning("sentence-transformers export: %s", gap)
    with atomic_folder(out, kind=EXPORT_KIND, overwrite=overwrite, sources=[encoder.path]) as folder:
        encoder.write_files(folder, instructions=instructions, exact=exact)
        card = model_card(encoder, results=results, instructions=instructions_of(instructions),
                          model_name=model_name or out.name, gaps=gaps, exact=exact)
        (folder / "README.md").write_text(card, encoding="utf-8")
    return out


def push_to_hub(folder, repo_id: str, *, private: bool = False, token: str | None = None) -> str:
    """Upload an exported folder with huggingface_hub; returns the repo URL."""
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
    found = []
    for name in ("httpx2", "httpx"):
        try:
            found.append(importlib.import_module(name).TransportError)
        except (ImportError, AttributeError):
            pass
    return tuple(found)


__all__ = [
    "export_sentence_transformers", "sentence_transformers_gaps", "push_to_hub", "POOLING_TO_ST",
]
