"""The mteb adapter: a decoder2vec Encoder runs through `mteb.evaluate` offline, and mteb's STS
score equals ours on the same pairs (so our metrics follow MTEB's)."""

import numpy as np
import pytest
import torch
from tiny import tiny_encoder

import mteb  # a dev extra: missing, the suite fails here rather than skipping the file
from decoder2vec import Decoder2VecError
from decoder2vec.data import stsb
from decoder2vec.evaluation import metrics
from decoder2vec.evaluation import llm2vec_protocol
from decoder2vec.evaluation.mteb_adapter import MtebEncoder, local_sts_task  # noqa: E402
from mteb.types import PromptType  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402


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
    model.instructions = None
    task = local_sts_task([("a", "b", 1.0)])
    loader = DataLoader([{"text": "x"}], batch_size=1, collate_fn=lambda rows: {"text": [r["text"] for r in rows]})
    model.encode(loader, task_metadata=task.metadata, hf_split="test", hf_subset="default", prompt_type=PromptType.query)
    model.encode(loader, task_metadata=task.metadata, hf_split="test", hf_subset="default", prompt_type=PromptType.document)
    assert seen[0] == "Retrieve semantically similar text." and seen[1] is None


# ---------------------------------------------------------------- the LLM2Vec paper's protocol
def _loader(texts):
    return DataLoader([{"text": t} for t in texts], batch_size=2,
                      collate_fn=lambda rows: {"text": [r["text"] for r in rows]})


def _reference_string(instruction, text, fmt):
    """What llm2vec 0.2.3 feeds the model: `_convert_to_str`, then `prepare_for_tokenization`,
    with the "!@#$%^&*()" separator removed by `tokenize`; and the part it pools."""
    joined = f"{instruction.strip()} !@#$%^&*(){text}" if instruction else f"!@#$%^&*(){text}"
    before, after = fmt
    wrapped = before + joined.strip() + after
    head, pooled = wrapped.split("!@#$%^&*()")
    return head + pooled, pooled


def test_llm2vec_task_instructions_are_the_references():
    table = llm2vec_protocol.task_instructions()
    assert len(table) == 67  # llm2vec 0.2.3 (tests/test_paper_data.py compares every entry with its file)
    assert table["SciFact"] == "Given a scientific claim, retrieve documents that support or refute the claim:"
    assert table["STS16"] == "Retrieve semantically similar text:"
    assert llm2vec_protocol.llm2vec_instruction("Retrieve semantically similar text.") == "Retrieve semantically similar text:"
    assert llm2vec_protocol.llm2vec_instruction("Classify:") == "Classify:"


@pytest.mark.parametrize("base", sorted(llm2vec_protocol.CHAT_FORMATS))
@pytest.mark.parametrize("instruction", ["Given a claim, find documents that refute the claim:", None])
def test_chat_wrapping_reads_and_pools_what_the_reference_does(base, instruction):
    """The Encoder gets (texts, instruction, template) whose full string and pooled text equal the
    reference's, for every chat family and with and without an instruction."""
    fmt = llm2vec_protocol.CHAT_FORMATS[base]
    texts = ["  The first text. ", "second\n"]
    wrapped, ins, template = llm2vec_protocol.wrap(texts, instruction, fmt)
    for text, ours in zip(texts, wrapped):
        prefix = template.format(instruction=ins.strip())  # what Encoder.tokenize puts before the text
        full, pooled = _reference_string(instruction, text, fmt)
        assert prefix + ours == full
        assert ours == pooled


def test_mteb_encoder_llm2vec_mode_wraps_instruct_models_when_asked_and_restores_the_template():
    encoder = tiny_encoder("llama", base_model="mistralai/Mistral-7B-Instruct-v0.2")
    template = encoder.config.instruction_template
    model = MtebEncoder(encoder, instructions="llm2vec", wrap_in_chat_format=True)
    task = local_sts_task([("a", "b", 1.0)], name="STS16")
    got = model.encode(_loader(["A cat sits.", "Dogs bark."]), task_metadata=task.metadata, hf_split="test",
                       hf_subset="default", prompt_type=None)
    assert encoder.config.instruction_template == template
    encoder.config.instruction_template = "{instruction} "
    expected = encoder.encode(["A cat sits. [/INST]", "Dogs bark. [/INST]"],
                              instruction="[INST] Retrieve semantically similar text:")
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # Documents get no instruction but still the chat format.
    docs = model.encode(_loader(["A cat sits."]), task_metadata=task.metadata, hf_split="test",
                        hf_subset="default", prompt_type=PromptType.document)
    np.testing.assert_allclose(docs, encoder.encode(["A cat sits. [/INST]"], instruction="[INST]"), rtol=1e-5, atol=1e-6)


def test_a_folder_with_its_own_chat_format_is_wrapped_once():
    """A paper-trained folder says chat_format itself and has the instruct model's hub id: the
    adapter must not wrap on top of the Encoder's own wrapping."""
    encoder = tiny_encoder("llama", base_model="mistralai/Mistral-7B-Instruct-v0.2")
    encoder.config.chat_format = "mistral"
    task = local_sts_task([("a", "b", 1.0)], name="STS16")
    got = MtebEncoder(encoder, instructions="llm2vec", wrap_in_chat_format=True).encode(
        _loader(["A cat sits."]), task_metadata=task.metadata, hf_split="test", hf_subset="default", prompt_type=None)
    assert encoder.config.chat_format == "mistral"
    encoder.config.chat_format, encoder.config.instruction_template = None, "{instruction} "
    expected = encoder.encode(["A cat sits. [/INST]"], instruction="[INST] Retrieve semantically similar text:")
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_mteb_encoder_llm2vec_mode_leaves_other_models_unwrapped():
    encoder = tiny_encoder("llama", base_model="HuggingFaceTB/SmolLM2-135M")
    model = MtebEncoder(encoder, instructions="llm2vec")
    task = local_sts_task([("a", "b", 1.0)], name="SciFact")
    got = model.encode(_loader(["A claim."]), task_metadata=task.metadata, hf_split="test", hf_subset="default",
                       prompt_type=PromptType.query)
    expected = encoder.encode(["A claim."], instruction=llm2vec_protocol.task_instructions()["SciFact"])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # A task outside the table: mteb's instruction with the reference's ending.
    other = local_sts_task([("a", "b", 1.0)], name="Decoder2VecOther")
    assert model.task_instruction(other.metadata, None) == "Retrieve semantically similar text:"
    assert MtebEncoder(encoder, instructions={"SciFact": "Mine:"}).task_instruction(task.metadata, None) == "Mine:"
    with pytest.raises(Decoder2VecError, match="instructions must be"):
        MtebEncoder(encoder, instructions="paper")
