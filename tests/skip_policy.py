"""The suite's skip policy (issue 23): a skipped test is a check that did not run.

A missing optional package or tool would otherwise let the suite pass with whole files unchecked
(a module-level importorskip hides every test in it). So every skip fails the run - at collection
or in a test - unless the test carries `@pytest.mark.allow_skip(reason=...)` saying why skipping
there is right. The tests that carry it today (all skip only on a machine that has CUDA):

- tests/test_backends.py::test_bad_backend_arguments_are_one_line_errors (the device='cuda:0' case)
- tests/test_loading.py::test_load_errors_are_one_line (the "cuda without CUDA" case)
- tests/test_errors.py::test_cli_errors_are_one_line (the "cuda without CUDA" case)
- tests/test_cpu_fast.py::test_fast_training_uses_bf16_autocast_only_where_the_table_says (CPU training)

DECODER2VEC_ALLOW_SKIPS=1 turns the policy off for a local run without the optional extras; CI and
`make test` never set it. Loaded by tests/conftest.py; tests/test_suite_policy.py runs it with `-p`.
"""

from __future__ import annotations

import os

import pytest

ALLOW_ENV = "DECODER2VEC_ALLOW_SKIPS"
MARKER = "allow_skip"
HOW_TO_ALLOW = (f"install what is missing, or give the test @pytest.mark.{MARKER}(reason=...) "
                f"(or set {ALLOW_ENV}=1 for a local run)")


def pytest_configure(config):
    config.addinivalue_line("markers", f"{MARKER}(reason): this test may skip (why, in reason); any other skip "
                                       "fails the run (tests/skip_policy.py)")


def _policy_off() -> bool:
    return os.environ.get(ALLOW_ENV) == "1"


def _skip_reason(report) -> str:
    # A skip's longrepr is (path, line, "Skipped: reason").
    if isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
        path, line, message = report.longrepr
        return f"{message.removeprefix('Skipped: ')} ({path}:{line + 1 if isinstance(line, int) else line})"
    return str(report.longrepr)


def _fail(report, what: str) -> None:
    report.outcome = "failed"
    report.longrepr = f"{what}: {_skip_reason(report)}; skips are not allowed here: {HOW_TO_ALLOW}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if not report.skipped or hasattr(report, "wasxfail") or _policy_off():
        return report
    marker = item.get_closest_marker(MARKER)
    if marker is None:
        _fail(report, "skipped")
    elif not (marker.kwargs.get("reason") or marker.args):
        _fail(report, f"skipped under @pytest.mark.{MARKER} without a reason")
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    # A module-level importorskip / skip(allow_module_level=True) skips every test in the file;
    # no marker can allow that (the module never finished importing).
    report = yield
    if report.skipped and not _policy_off():
        _fail(report, f"{collector.nodeid} skipped at collection")
    return report
