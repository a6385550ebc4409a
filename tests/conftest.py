"""Shared test set-up."""

from __future__ import annotations

import pytest

# A pytest started by a test must not inherit how this one runs: pytest-xdist tells its workers
# who they are through the environment (a child would believe it is a worker too, and MSF003's
# skips fire), and CI / BUILD_NUMBER make pytest print whole messages in its short summary.
INHERITED_VARIABLES = (
    "PYTEST_XDIST_WORKER",
    "PYTEST_XDIST_WORKER_COUNT",
    "PYTEST_XDIST_TESTRUNUID",
    "CI",
    "BUILD_NUMBER",
)


@pytest.fixture(autouse=True)
def _child_pytest_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in INHERITED_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _private_result_cache(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every test's runs of memsafe-fix share a result cache of their own (in-process and in
    subprocesses), never one in the repository or a fixture folder, nor one of another test."""
    monkeypatch.setenv("MEMSAFE_FIX_CACHE_DIR", str(tmp_path_factory.mktemp("memsafe_fix_cache")))
