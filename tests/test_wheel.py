"""The built wheel carries its recipes and suites: build it, install it (no dependencies) into a
fresh venv, and use it from outside the repository.

Offline and quick: the wheel is built from a copy of the sources with this venv's setuptools
(no build isolation), and the fresh venv reaches the dependencies already installed here through
a .pth line (a path line adds the folder to sys.path without running its .pth files, so the
editable install of the checkout stays out and `decoder2vec` comes from the wheel).
"""

from __future__ import annotations

import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list, cwd: Path, timeout: int = 300) -> str:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv python, venv bin folder, the wheel) with decoder2vec installed from its wheel."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
          "-w", tmp / "dist", source], cwd=tmp)
    wheel = next((tmp / "dist").glob("decoder2vec-*.whl"))

    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp)
    python = venv / "bin" / "python"
    venv_site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp).strip())
    (venv_site / "deps-from-test-venv.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", wheel], cwd=tmp)
    return python, venv / "bin", wheel


def test_wheel_holds_every_recipe_and_suite(installed):
    _, _, wheel = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("recipes", "suites"):
        shipped = {p.relative_to(ROOT / "src").as_posix() for p in (ROOT / "src" / "decoder2vec" / folder).rglob("*.yaml")}
        assert shipped and shipped <= names, sorted(shipped - names)
    assert "decoder2vec/folder/model_card_template.md" in names  # the model card's text (folder/model_card.py)


def test_installed_wheel_finds_its_recipes_and_suites_outside_the_repository(installed, tmp_path):
    python, bin_dir, _ = installed
    assert "usage: decoder2vec info" in _run([bin_dir / "decoder2vec", "info", "--help"], cwd=tmp_path)
    script = (
        "import decoder2vec\n"
        "from decoder2vec.cli import main\n"
        "from decoder2vec.evaluation import load_tasks, suite_names\n"
        "print(decoder2vec.__file__)\n"
        "print(sorted(suite_names()))\n"
        "print([t.name for t in load_tasks('quick')])\n"
        "raise SystemExit(main(['run', 'smollm2-135m/quick', '--dry-run']))\n"  # = decoder2vec run ...
    )
    out = _run([python, "-c", script], cwd=tmp_path).splitlines()
    installed_at = Path(out[0]).resolve()
    assert installed_at.is_relative_to(python.parent.parent.resolve()), installed_at  # the wheel, not the checkout
    assert {"default", "quick", "da", "de", "en"} <= set(eval(out[1]))
    assert eval(out[2]) == ["stsb-en", "stsb-de", "bbc-clustering", "help-retrieval-da", "help-bitext-en-de"]
    plan = out[3:6]
    assert [line.split()[0] for line in plan] == ["mntp", "simcse", "supervised"]
    recipes = installed_at.parent / "recipes" / "smollm2-135m" / "quick"
    assert plan[0].split()[1] == str(recipes / "mntp.yaml")
    assert plan[2].endswith("runs/smollm2-135m-quick/simcse -> runs/smollm2-135m-quick/supervised")
