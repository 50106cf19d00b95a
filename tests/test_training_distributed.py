"""Two CPU processes (torchrun, gloo) train the supervised stage: every query sees the documents of
both processes as negatives, with gradient. Logged negatives per query: 2 x batch - 1."""

from __future__ import annotations

import subprocess
import sys

import yaml

from decoder2vec import Encoder
from test_training_support import FAST, csv_rows, encoder_folder, pairs_file

LAUNCHED = "import sys; from decoder2vec.cli import main; sys.exit(main(['train', sys.argv[1]]))"


def test_two_processes_share_negatives(tmp_path):
    batch = FAST["per_device_train_batch_size"]
    recipe = {"stage": "supervised", "model": str(encoder_folder(tmp_path)),
              "data": [str(pairs_file(tmp_path, negatives=False))], "output_dir": str(tmp_path / "out"),
              **FAST, "max_steps": 3}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    script = tmp_path / "launch.py"
    script.write_text(LAUNCHED)
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script), str(path)],
        capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    rows = [r for r in csv_rows(tmp_path / "out" / "logs" / "log.csv") if r.get("negatives")]
    assert len(rows) == 3
    assert {int(float(r["negatives"])) for r in rows} == {2 * batch - 1}
    assert Encoder.from_pretrained(tmp_path / "out").encode(["a text"]).shape == (1, 32)
