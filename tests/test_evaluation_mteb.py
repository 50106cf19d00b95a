"""The mteb adapter: a decoder2vec Encoder runs through `mteb.evaluate` offline, and mteb's STS
score equals ours on the same pairs (so our metrics follow MTEB's)."""

import numpy as np
import pytest
import torch
from tiny import tiny_encoder

mteb = pytest.importorskip("mteb")

from decoder2vec import Decoder2VecError  # noqa: E402
from decoder2vec.data import stsb  # noqa: E402
from decoder2vec.evaluation import metrics  # noqa: E402
from decoder2vec.evaluation.mteb_adapter import MtebEncoder, local_sts_task  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_encoder_satisfies_mteb_protocol_and_meta():
    from mteb.models import EncoderProtocol

    encoder = tiny_encoder("llama", base_model="tiny/llama")
    model = MtebEncoder(encoder)
    assert isinstance(model, EncoderProtocol)
    meta = model.mteb_model_meta
    assert meta.name == "decoder2vec/llama" and meta.embed_dim == encoder.dimension
    assert meta.n_parameters == sum(p.numel() for p in encoder.model.parameters())
    assert meta.use_instructions and meta.similarity_fn_name.value == "cosine"
    with pytest.raises(Decoder2VecError, match="not int"):
        MtebEncoder(3)


def test_mteb_evaluate_offline_matches_our_sts_metric(tmp_path):
    pairs = stsb("en", "dev")[:120]
    encoder = tiny_encoder("llama")
    instruction = "Retrieve semantically similar text:"
    task = local_sts_task(pairs, name="Decoder2VecSTSBDev")
    model = MtebEncoder(encoder, prompts_dict={"Decoder2VecSTSBDev": instruction})
    result = mteb.evaluate(model, task, cache=None, show_progress_bar=False)
    (task_result,) = result.task_results
    mteb_score = task_result.get_score()

    a = encoder.encode([p[0] for p in pairs], instruction=instruction)
    b = encoder.encode([p[1] for p in pairs], instruction=instruction)
    ours = metrics.sts_scores(a, b, [p[2] for p in pairs])["cosine_spearman"]
    assert np.isfinite(mteb_score)
    assert mteb_score == pytest.approx(ours, abs=1e-6)


def test_documents_get_no_instruction_by_default():
    from mteb.types import PromptType
    from torch.utils.data import DataLoader

    seen = []

    class Recording:  # stands in for a decoder2vec Encoder: records the instructions it gets
        def encode(self, texts, *, instruction=None, **kwargs):
            seen.append(instruction)
            return np.zeros((len(texts), 2))

    model = MtebEncoder.__new__(MtebEncoder)  # skip loading a model; encode() only needs these
    model.model, model.prompts_dict, model.apply_instruction_to_documents, model.batch_size = Recording(), None, False, 8
    task = local_sts_task([("a", "b", 1.0)])
    loader = DataLoader([{"text": "x"}], batch_size=1, collate_fn=lambda rows: {"text": [r["text"] for r in rows]})
    model.encode(loader, task_metadata=task.metadata, hf_split="test", hf_subset="default", prompt_type=PromptType.query)
    model.encode(loader, task_metadata=task.metadata, hf_split="test", hf_subset="default", prompt_type=PromptType.document)
    assert seen[0] == "Retrieve semantically similar text." and seen[1] is None
