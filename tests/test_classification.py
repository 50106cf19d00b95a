"""Classification heads on converted models (issue 18): an Encoder folder loads as a transformers
sequence/token classifier whose attention stays bidirectional, on every tiny family."""

import pytest
import torch
from tiny import FAMILIES, tiny_encoder, tiny_model
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

from decoder2vec import Decoder2VecError, Encoder
from decoder2vec.model.bidirectional import make_causal
from decoder2vec.classification import load_for_classification

AUTO = {"sequence": AutoModelForSequenceClassification, "token": AutoModelForTokenClassification}
# (family, task) pairs transformers has no class for: load_for_classification's generic head.
NO_TRANSFORMERS_CLASS = {("gemma3_text", "token"), ("opt", "token")}
IDS = torch.tensor([[5, 6, 7, 8, 9, 10]])


def first_position(model, ids):
    """The classifier's view of the first token: its logits (token task) or last hidden state."""
    with torch.no_grad():
        out = model(input_ids=ids, output_hidden_states=True)
    return out.logits[0, 0] if out.logits.dim() == 3 else out.hidden_states[-1][0, 0]


def sees_the_last_token(model) -> bool:
    changed = IDS.clone()
    changed[0, -1] = 11
    return not torch.allclose(first_position(model, IDS), first_position(model, changed))


@pytest.fixture(scope="module", params=list(FAMILIES))
def folder(request, tmp_path_factory):
    return request.param, tiny_encoder(request.param).save_pretrained(tmp_path_factory.mktemp("f") / "encoder")


@pytest.mark.parametrize("task", ["sequence", "token"])
def test_transformers_loads_the_folder_bidirectional(folder, task):
    family, folder = folder
    if (family, task) in NO_TRANSFORMERS_CLASS:
        with pytest.raises(ValueError, match="Unrecognized configuration class"):
            AUTO[task].from_pretrained(folder, num_labels=3)
        return
    model = AUTO[task].from_pretrained(folder, num_labels=3).eval()
    assert model.config.is_causal is False
    assert sees_the_last_token(model)
    # The check can fail: the same classifier made causal does not see the last token at position 0.
    assert not sees_the_last_token(make_causal(model))


@pytest.mark.parametrize("task", ["sequence", "token"])
def test_load_for_classification_is_bidirectional_on_every_family(folder, task):
    _, folder = folder
    model = load_for_classification(folder, task, num_labels=3).eval()
    assert model.config.num_labels == 3
    # The trained weights came along (not a fresh body under the head): the Encoder's hidden states.
    with torch.no_grad():
        ours = model(input_ids=IDS, output_hidden_states=True).hidden_states[-1]
        encoder = Encoder.from_pretrained(folder)
        torch.testing.assert_close(ours, encoder.model(input_ids=IDS).last_hidden_state, rtol=0, atol=1e-5)
    assert sees_the_last_token(model)
    assert not sees_the_last_token(load_for_classification(folder, task, num_labels=3, bidirectional=False).eval())


@pytest.mark.parametrize("family, task", [("llama", "sequence"), ("llama", "token"), ("opt", "token"),
                                          ("gemma3_text", "token"), ("gemma2", "sequence")])
def test_predictions_equal_after_save_and_load(family, task, tmp_path):
    encoder_folder = tiny_encoder(family).save_pretrained(tmp_path / "encoder")
    model = load_for_classification(encoder_folder, task, num_labels=3).eval()
    torch.manual_seed(0)
    with torch.no_grad():  # a "fine-tuned" head: not the freshly initialised one
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    batch = torch.tensor([[5, 6, 7, 8, 9, 10], [12, 13, 14, 0, 0, 0]])
    mask = (batch != 0).long()
    with torch.no_grad():
        before = model(input_ids=batch, attention_mask=mask).logits
    model.save_pretrained(tmp_path / "classifier")
    again = load_for_classification(tmp_path / "classifier", task, num_labels=3).eval()
    with torch.no_grad():
        after = again(input_ids=batch, attention_mask=mask).logits
    torch.testing.assert_close(after, before, rtol=0, atol=1e-6)
    assert sees_the_last_token(again)  # config.json's is_causal: false came along
    if (family, task) not in NO_TRANSFORMERS_CLASS:
        with torch.no_grad():
            auto = AUTO[task].from_pretrained(tmp_path / "classifier").eval()
            torch.testing.assert_close(auto(input_ids=batch, attention_mask=mask).logits, before, rtol=0, atol=1e-6)


def test_a_plain_model_folder_is_bidirectional_unless_its_config_says_causal(tmp_path):
    """Like Encoder.from_pretrained: a decoder's own folder (no is_causal) loads bidirectional."""
    plain = tiny_model("llama")
    plain.save_pretrained(tmp_path / "plain")
    assert sees_the_last_token(load_for_classification(tmp_path / "plain", "token", num_labels=3).eval())
    plain.config.is_causal = True
    plain.save_pretrained(tmp_path / "causal")
    assert not sees_the_last_token(load_for_classification(tmp_path / "causal", "token", num_labels=3).eval())


def test_a_padded_batch_classifies_each_text_as_alone(tmp_path):
    folder = tiny_encoder("llama").save_pretrained(tmp_path / "encoder")
    model = load_for_classification(folder, "sequence", num_labels=3).eval()
    batch = torch.tensor([[5, 6, 7, 8, 9, 10], [12, 13, 14, 0, 0, 0]])
    with torch.no_grad():
        together = model(input_ids=batch, attention_mask=(batch != 0).long()).logits
        alone = model(input_ids=batch[1:, :3]).logits
    torch.testing.assert_close(together[1:], alone, rtol=0, atol=1e-5)


def test_bad_arguments_are_one_line_errors(tmp_path):
    folder = tiny_encoder("llama").save_pretrained(tmp_path / "encoder")
    with pytest.raises(Decoder2VecError, match="task must be one of sequence, token, got 'span'"):
        load_for_classification(folder, "span", num_labels=3)
    with pytest.raises(Decoder2VecError, match="num_labels must be >= 1"):
        load_for_classification(folder, "token", num_labels=0)
