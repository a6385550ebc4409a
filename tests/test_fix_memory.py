"""``--diff``/``--write`` free each file as they go: the cyclic collector does not run between
the files a pool worker is handed (no tracked object is allocated there while it is on), so a
file whose analyses were left in reference cycles would be kept until the chunk ends."""

from __future__ import annotations

import gc
import shutil
from pathlib import Path

import pytest
from test_golden import CASES, case_settings, module_name

from memsafe_fix.engine import Job, Mode, process

FIXED_CASES = [case for case in CASES if (case / "expected.py").read_bytes() != (case / "input.py").read_bytes()]


def _garbage_of_second_run(job: Job, restore: tuple[Path, bytes]) -> int:
    """The objects the cyclic collector finds unreachable after processing ``job`` again (its
    file first put back as it was): imported modules are loaded once per run and kept, so the
    first run's are not this file's garbage."""
    process(job)
    restore[0].write_bytes(restore[1])
    collecting = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        assert process(job).error is None
        return gc.collect()
    finally:
        if collecting:
            gc.enable()


@pytest.mark.parametrize("mode", [Mode.DIFF, Mode.WRITE], ids=["diff", "write"])
@pytest.mark.parametrize("case", FIXED_CASES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_fixing_frees_each_file_without_the_cyclic_collector(case: Path, mode: Mode, tmp_path: Path) -> None:
    """Both analyses of a fixed file (of its text, then of the fixed text) are released
    (``ModuleAnalysis.release``), and LibCST's trees hold no cycles: nothing is left for the
    collector. (A few cases fix nothing here, outside their fixture folder: their one analysis
    is released too.)"""
    path = tmp_path / f"{module_name(case)}.py"
    shutil.copyfile(case / "input.py", path)
    job = Job(path, str(path), case_settings(case), mode)
    assert _garbage_of_second_run(job, (path, (case / "input.py").read_bytes())) == 0
