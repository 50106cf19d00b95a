"""Kill -9 a training run right after a checkpoint, run the same command again: it resumes and
ends where an uninterrupted run ends; the output folder never exists half-written."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

import pytest
import yaml
from safetensors.torch import load_file

from decoder2vec.training import train
from test_training_support import FAST, causal_lm_folder, corpus_file, encoder_folder

KILLER = textwrap.dedent("""
    import os, signal, sys
    from transformers import TrainerCallback
    from decoder2vec.training import train

    class KillAfterSave(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == int(sys.argv[2]):
                os.kill(os.getpid(), signal.SIGKILL)

    train(sys.argv[1], callbacks=[KillAfterSave()])
""")
CLI = "import sys; from decoder2vec.cli import main; sys.exit(main(['train', sys.argv[1]]))"


def _recipe(tmp_path, stage: str, output: str) -> dict:
    common = {**FAST, "max_steps": 6, "save_steps": 2, "lora_dropout": 0.1, "learning_rate": 3e-3,
              "output_dir": str(tmp_path / output)}
    if stage == "mntp":
        return {"stage": "mntp", "model": str(causal_lm_folder(tmp_path)), "data": [str(corpus_file(tmp_path))],
                "eval_examples": 4, **common}
    return {"stage": "simcse", "model": str(encoder_folder(tmp_path)), "data": [str(corpus_file(tmp_path))],
            "min_words": 3, **common}


# MNTP covers masking, LoRA dropout, data order and optimizer state. SimCSE (hidden-state dropout
# replay) passes too (`-m slow`); it is kept out of the default run for time: every subprocess
# imports torch/transformers/peft again.
@pytest.mark.parametrize("stage", ["mntp", pytest.param("simcse", marks=pytest.mark.slow)])
def test_killed_run_resumes_to_the_same_state(tmp_path, stage):
    reference = train(_recipe(tmp_path, stage, "reference"))

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(_recipe(tmp_path, stage, "resumed")))
    output = tmp_path / "resumed"
    killed = subprocess.run([sys.executable, "-c", KILLER, str(recipe), "4"], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not output.exists()  # killed mid-run: no output folder, only checkpoints
    assert (tmp_path / "resumed.checkpoints" / "checkpoint-4" / "trainer_state.json").is_file()

    again = subprocess.run([sys.executable, "-c", CLI, str(recipe)], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from checkpoint-4" in again.stdout

    def record(folder):
        return json.loads((folder / "decoder2vec_config.json").read_text())["stages"][-1]

    assert record(output)["steps"] == record(reference)["steps"] == 6
    assert record(output)["final_loss"] == pytest.approx(record(reference)["final_loss"], abs=1e-4)
    ours, theirs = (load_file(f / "adapter" / "adapter_model.safetensors") for f in (output, reference))
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert (ours[name] - theirs[name]).abs().max() < 1e-5, name
