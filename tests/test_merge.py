"""Weight merging (issue 17): the weighted average of compatible models as an Encoder folder."""

import argparse

import numpy as np
import pytest
import torch
from tiny import COMMON, tiny_encoder, tiny_model, tiny_tokenizer
from transformers import AutoConfig, AutoModel

from decoder2vec import Decoder2VecError, Encoder, EncoderConfig
from decoder2vec.cli.merge import add_arguments, run
from decoder2vec.folder.config import last_stage, read_config
from decoder2vec.training.merge import merge

TEXTS = ["The quick brown fox jumps over the lazy dog.", "A dog.", "Paris is the capital of France."]


def saved(tmp_path, name, family="llama", seed=0):
    encoder = Encoder(tiny_model(family, seed=seed), tiny_tokenizer(), EncoderConfig(max_length=128))
    return encoder.save_pretrained(tmp_path / name)


def test_merging_a_folder_with_itself_gives_its_vectors(tmp_path):
    a = saved(tmp_path, "a")
    out = merge([a, a], output_dir=tmp_path / "merged")
    np.testing.assert_allclose(Encoder.from_pretrained(out).encode(TEXTS), Encoder.from_pretrained(a).encode(TEXTS),
                               atol=1e-6)


def test_half_and_half_is_the_average_of_the_state_dicts(tmp_path):
    a, b = saved(tmp_path, "a"), saved(tmp_path, "b", seed=1)
    out = merge([a, b], [0.5, 0.5], output_dir=tmp_path / "merged")
    first, second = (Encoder.from_pretrained(x)._backbone().state_dict() for x in (a, b))
    assert not torch.equal(first["layers.0.mlp.up_proj.weight"], second["layers.0.mlp.up_proj.weight"])
    merged = Encoder.from_pretrained(out)._backbone().state_dict()
    assert set(merged) == set(first)
    for key, tensor in merged.items():
        torch.testing.assert_close(tensor, (first[key] + second[key]) / 2, rtol=0, atol=1e-7)
    record = last_stage(out)
    assert record == {"stage": "merge", "sources": [str(a.resolve()), str(b.resolve())], "weights": [0.5, 0.5]}


def test_weights_weigh(tmp_path):
    a, b = saved(tmp_path, "a"), saved(tmp_path, "b", seed=1)
    out = merge([a, b], [0.25, 0.75], output_dir=tmp_path / "merged")
    first, second = (Encoder.from_pretrained(x)._backbone().state_dict() for x in (a, b))
    key = "layers.1.self_attn.q_proj.weight"
    torch.testing.assert_close(Encoder.from_pretrained(out)._backbone().state_dict()[key],
                               0.25 * first[key] + 0.75 * second[key], rtol=0, atol=1e-7)


def test_the_first_model_keeps_its_history_and_pooling(tmp_path):
    encoder = tiny_encoder("llama", pooling="last_token")
    encoder.config.stages = [{"stage": "mntp", "recipe": "x.yaml"}]
    a = encoder.save_pretrained(tmp_path / "a")
    b = saved(tmp_path, "b", seed=1)
    config = read_config(merge([a, b], output_dir=tmp_path / "merged"))
    assert config.pooling == "last_token"
    assert [s["stage"] for s in config.stages] == ["mntp", "merge"]


def test_a_different_shape_names_the_first_mismatching_tensor(tmp_path):
    a = saved(tmp_path, "a")
    config = AutoConfig.for_model("llama", **{**COMMON, "intermediate_size": 48})
    wide = Encoder(AutoModel.from_config(config), tiny_tokenizer(), EncoderConfig()).save_pretrained(tmp_path / "b")
    with pytest.raises(Decoder2VecError, match=r"tensor 'layers\.0\.mlp\.gate_proj\.weight' is \(64, 32\) in .* "
                                               r"but \(48, 32\) in"):
        merge([a, wide], output_dir=tmp_path / "merged")
    assert not (tmp_path / "merged").exists()


def test_a_different_family_is_refused(tmp_path):
    a, b = saved(tmp_path, "a"), saved(tmp_path, "b", family="qwen2")
    with pytest.raises(Decoder2VecError, match=r"\(qwen2\) into .* \(llama\): different architectures"):
        merge([a, b], output_dir=tmp_path / "merged")


@pytest.mark.parametrize("weights, message", [
    ([0.7, 0.7], r"must sum to 1, got 1\.4 .*did you mean 0\.5 0\.5"),
    ([0.5], r"1 weights for 2 models"),
    ([1.5, -0.5], r"weight 1 is 1\.5; each weight must be in \[0, 1\]"),
])
def test_bad_weights_are_one_line_errors(tmp_path, weights, message):
    with pytest.raises(Decoder2VecError, match=message):
        merge(["x", "y"], weights, output_dir=tmp_path / "merged")


def test_the_output_may_not_be_a_source(tmp_path):
    a, b = saved(tmp_path, "a"), saved(tmp_path, "b", seed=1)
    with pytest.raises(Decoder2VecError, match="holds the model being written"):
        merge([a, b], output_dir=b, overwrite=True)


def test_cli(tmp_path, capsys):
    a, b = saved(tmp_path, "a"), saved(tmp_path, "b", seed=1)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([str(a), str(b), "--weights", "0.25", "0.75", "--output-dir", str(tmp_path / "m")])
    run(args)
    assert last_stage(tmp_path / "m")["weights"] == [0.25, 0.75]
    args = parser.parse_args([str(a), str(b), "--weights", "0.7", "0.7", "--output-dir", str(tmp_path / "n")])
    with pytest.raises(Decoder2VecError, match="must sum to 1"):
        run(args)


# ------------------------------------------------------------------ merge_with: merging after a stage
def _simcse(root, name, **recipe):
    from decoder2vec.training import train
    from test_training_support import FAST, corpus_file, encoder_folder

    return train({"stage": "simcse", "model": str(encoder_folder(root)), "data": [str(corpus_file(root))],
                  "output_dir": str(root / name), "min_words": 3, "learning_rate": 1e-2, **FAST, "max_steps": 2,
                  **recipe})


def test_merge_with_averages_the_finished_stage_with_its_input(tmp_path):
    from test_training_support import encoder_folder

    weights = lambda folder: Encoder.from_pretrained(folder)._backbone().state_dict()  # noqa: E731
    trained = weights(_simcse(tmp_path, "plain"))
    start = weights(encoder_folder(tmp_path))
    half_folder = _simcse(tmp_path, "half", merge_with="input", merge_weight=0.5)
    half = weights(half_folder)
    moved = [k for k in start if not torch.allclose(start[k], trained[k])]
    assert moved  # training changed some weights, so the average is a different model from both
    for key in start:
        assert torch.allclose(half[key], (start[key] + trained[key]) / 2, atol=1e-5), key
    record = last_stage(half_folder)
    assert record["stage"] == "simcse"
    assert record["merge"] == {"with": str(encoder_folder(tmp_path).resolve()), "merge_with": "input", "weight": 0.5}
    assert (half_folder / "adapter").is_dir()  # the unmerged LoRA stays
    undone = weights(_simcse(tmp_path, "all-input", merge_with=str(encoder_folder(tmp_path)), merge_weight=1.0))
    for key in start:
        assert torch.equal(undone[key], start[key]), key


def test_merge_with_an_incompatible_model_names_the_mismatch(tmp_path):
    other = saved(tmp_path, "other", family="qwen3")
    with pytest.raises(Decoder2VecError, match="cannot merge"):
        _simcse(tmp_path, "bad", merge_with=str(other))


def test_a_missing_merge_with_folder_is_refused_before_training(tmp_path):
    with pytest.raises(Decoder2VecError, match="merge_with .*missing' not found"):
        _simcse(tmp_path, "never", merge_with=str(tmp_path / "missing"))
    assert not (tmp_path / "never.checkpoints").exists()


def with_latent_attention(tmp_path, name, seed, latents=8):
    from decoder2vec.model.pooling import LatentAttention

    torch.manual_seed(seed)
    encoder = Encoder(tiny_model("llama", seed=seed), tiny_tokenizer(), EncoderConfig(max_length=128))
    encoder.latent_attention = LatentAttention(32, latents=latents, heads=4)
    with torch.no_grad():
        for p in encoder.latent_attention.parameters():
            p.normal_(std=0.2)
    return encoder.save_pretrained(tmp_path / name)


def test_latent_attention_layers_are_averaged_with_the_weights(tmp_path):
    """Issue 23, case 4: merge kept the first source's layer (or none) whatever the others had."""
    import json

    from decoder2vec.folder.latent_attention import load_latent_attention

    a, b = with_latent_attention(tmp_path, "a", 0), with_latent_attention(tmp_path, "b", 1)
    out = merge([a, b], [0.25, 0.75], output_dir=tmp_path / "merged")
    first, second, merged = (load_latent_attention(x).state_dict() for x in (a, b, out))
    assert not torch.equal(first["latents"], second["latents"])
    for key, tensor in merged.items():
        torch.testing.assert_close(tensor, 0.25 * first[key] + 0.75 * second[key], rtol=0, atol=1e-6)
    # the merged folder runs the layer, through both doors
    assert json.loads((out / "modules.json").read_text())[0]["type"] == "decoder2vec.st_module.EncoderModule"
    assert Encoder.from_pretrained(out).latent_attention is not None


def test_merging_with_and_without_a_latent_attention_layer_is_refused(tmp_path):
    a, plain = with_latent_attention(tmp_path, "a", 0), saved(tmp_path, "plain", seed=1)
    for sources in ([plain, a], [a, plain]):
        with pytest.raises(Decoder2VecError, match=rf"cannot merge: {a.resolve()} has a trained latent-attention "
                                                   rf"layer and {plain.resolve()} has none"):
            merge(sources, output_dir=tmp_path / "merged")
    assert not (tmp_path / "merged").exists()


def test_latent_attention_layers_of_other_sizes_are_refused(tmp_path):
    a, b = with_latent_attention(tmp_path, "a", 0), with_latent_attention(tmp_path, "b", 1, latents=16)
    with pytest.raises(Decoder2VecError, match=r"latent-attention layer of .*b is \(dim, latents, heads\) = "
                                               r"\(32, 16, 4\), of .*a \(32, 8, 4\)"):
        merge([a, b], output_dir=tmp_path / "merged")
