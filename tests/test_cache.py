"""The result cache (``cache.py``): a warm run prints exactly what a cold one does, and any
change a file's results depend on (its bytes, the settings, the memsafe-fix version, a project
module it patches, a conftest) means it is analysed again."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import pytest
from cli_runner import invoke

import memsafe_fix
import memsafe_fix.cache as cache
import memsafe_fix.engine as engine

ROOT = Path(__file__).parent.parent
CLIENT = "class Client:\n    def send(self):\n        return 1\n"
TEST = """\
from unittest.mock import patch


def test_send():
    with patch("pkg.client.Client.send") as send:
        send.return_value = 2


def test_other():
    with patch("pkg.other.Other.run"):
        pass
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project whose test patches a method of a project module, and the example suite."""
    root = tmp_path / "project"
    (root / "pkg").mkdir(parents=True)
    (root / "pyproject.toml").write_text('[project]\nname = "demo"\n')
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "client.py").write_text(CLIENT)
    (root / "tests").mkdir()
    (root / "tests" / "test_client.py").write_text(TEST)
    (root / "tests" / "test_plain.py").write_text("def test_sum():\n    assert sum([1, 2]) == 3\n")
    shutil.copytree(ROOT / "examples" / "notifier", root / "notifier")
    shutil.copytree(ROOT / "examples" / "tests", root / "tests" / "notifier")
    monkeypatch.chdir(root)
    monkeypatch.delenv(cache.CACHE_DIR_ENV)  # the default folder, next to the configuration
    return root


@pytest.fixture
def analysed(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The files the engine analyses (rather than takes from the cache), by name."""
    seen: list[str] = []
    process = engine._process

    def counting(job: engine.Job, data: object) -> engine.FileResult:
        seen.append(job.path.name)
        return process(job, data)  # type: ignore[arg-type]

    monkeypatch.setattr(engine, "_process", counting)
    yield seen


def run(*args: str) -> tuple[int, str]:
    result = invoke(*args)
    return result.exit_code, result.everything


def shards(root: Path) -> list[Path]:
    return sorted((root / ".memsafe_fix_cache").glob("*/*.json"))


ALL = sorted(["test_client.py", "conftest.py", "test_notifier.py", "test_legacy.py", "test_plain.py"])


def test_warm_run_prints_what_the_cold_run_does(project: Path, analysed: list[str]) -> None:
    for args in (["--check", "."], ["--check", "--output-format", "json", "."], ["--diff", "."]):
        cold = run(*args, "--no-cache")
        assert run(*args) == cold  # this one writes the cache
        analysed.clear()
        assert run(*args) == cold
        # --diff takes only the files with nothing to fix from the cache.
        assert sorted(analysed) == ([] if args[0] == "--check" else [n for n in ALL if n != "test_plain.py"])
    analysed.clear()
    run("--check", ".")
    assert analysed == []
    folder = project / ".memsafe_fix_cache"
    assert (folder / "CACHEDIR.TAG").read_text().startswith("Signature: 8a477f597d28d172789f06886806bc55")
    assert (folder / ".gitignore").read_text().splitlines()[-1] == "*"
    assert len(shards(project)) == 1


def test_write_then_check_from_the_cache(project: Path, analysed: list[str]) -> None:
    run("--write", ".")
    expected = run("--check", ".", "--no-cache")
    run("--check", ".")
    analysed.clear()
    assert run("--check", ".") == expected
    assert analysed == []


def test_changed_file_is_analysed_again(project: Path, analysed: list[str]) -> None:
    run("--check", ".")
    test = project / "tests" / "test_client.py"
    test.write_text(TEST.replace("def test_other", "def test_renamed"))
    analysed.clear()
    code, output = run("--check", ".")
    assert analysed == ["test_client.py"]
    assert (code, output) == run("--check", ".", "--no-cache")
    assert "test_renamed" in output


def test_changed_settings_analyse_everything_again(project: Path, analysed: list[str]) -> None:
    run("--check", ".")
    with (project / "pyproject.toml").open("a") as handle:
        handle.write('\n[tool.memsafe-fix]\nfunction-gc = "off"\n')
    analysed.clear()
    code, output = run("--check", ".")
    assert sorted(analysed) == ALL
    assert (code, output) == run("--check", ".", "--no-cache")
    analysed.clear()
    run("--check", ".", "--select", "MSF004")  # the command line's settings count too
    assert sorted(analysed) == ALL


def test_new_version_analyses_everything_again(
    project: Path, analysed: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run("--check", ".")
    monkeypatch.setattr(cache, "__version__", "999.0")
    analysed.clear()
    run("--check", ".")
    assert sorted(analysed) == ALL
    assert {shard.parent.name for shard in shards(project)} == {"999.0", memsafe_fix.__version__}


@pytest.mark.parametrize("change", ["edit module", "add module", "add conftest"])
def test_a_changed_dependency_analyses_its_importers_again(project: Path, analysed: list[str], change: str) -> None:
    finding = "tests/test_client.py:5:10: MSF004"
    assert finding not in run("--check", ".")[1]
    if change == "edit module":  # the patched method becomes a coroutine function
        (project / "pkg" / "client.py").write_text(CLIENT.replace("def send", "async def send"))
    elif change == "add module":  # a target that was not found now is
        (project / "pkg" / "other.py").write_text("class Other:\n    async def run(self):\n        pass\n")
    else:  # a conftest that was not there
        (project / "tests" / "conftest.py").write_text("import pytest\n")
    analysed.clear()
    after = run("--check", ".")
    again = set(analysed)
    assert after == run("--check", ".", "--no-cache")
    # Only the files whose analysis read the module, or looked for that conftest (and the new
    # conftest itself), are analysed again.
    assert again == ({"conftest.py", "test_notifier.py"} if change == "add conftest" else {"test_client.py"})
    if change == "edit module":
        assert finding in after[1]
    if change == "add module":
        assert "tests/test_client.py:10:10: MSF004" in after[1]


def test_a_module_shared_by_many_folders_invalidates_every_importer(project: Path, analysed: list[str]) -> None:
    # Importers in two folders look the module up once per folder; the probes of the project
    # root below them are shared (asked once per run), and a module that is gone must still
    # send both back to analysis.
    (project / "tests" / "sub").mkdir()
    (project / "tests" / "sub" / "test_again.py").write_text(TEST)
    (project / "pkg" / "client.py").write_text(CLIENT.replace("def send", "async def send"))
    cold = run("--check", ".")
    assert "tests/test_client.py:5:10: MSF004" in cold[1]
    assert "tests/sub/test_again.py:5:10: MSF004" in cold[1]
    (project / "pkg" / "client.py").unlink()
    analysed.clear()
    after = run("--check", ".")
    assert sorted(analysed) == ["test_again.py", "test_client.py"]
    assert after == run("--check", ".", "--no-cache")
    assert "tests/test_client.py:5:10: MSF004" not in after[1]
    assert "tests/sub/test_again.py:5:10: MSF004" not in after[1]


def test_no_cache_writes_nothing(project: Path) -> None:
    before = sorted(os.listdir(project))
    for mode in ("--check", "--diff", "--write"):
        run(mode, "--no-cache", ".")
    assert sorted(os.listdir(project)) == before
    assert not (project / ".memsafe_fix_cache").exists()


def test_cache_dir_option_setting_and_environment(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run("--check", "--cache-dir", str(tmp_path / "option"), ".")
    monkeypatch.setenv(cache.CACHE_DIR_ENV, str(tmp_path / "environment"))
    run("--check", ".")
    monkeypatch.delenv(cache.CACHE_DIR_ENV)
    with (project / "pyproject.toml").open("a") as handle:
        handle.write('\n[tool.memsafe-fix]\ncache-dir = "build/memsafe"\n')
    run("--check", ".")
    for folder in (tmp_path / "option", tmp_path / "environment", project / "build" / "memsafe"):
        assert (folder / "CACHEDIR.TAG").is_file()
        assert len(list(folder.glob("*/*.json"))) == 1
    assert not (project / ".memsafe_fix_cache").exists()


@pytest.mark.parametrize(
    "damage",
    [
        b"{not json",
        b"",
        b"\x00\xff" * 50,
        b"[1, 2, 3]",
        json.dumps({"format": 1, "entries": {"x": 1}}).encode(),
        "an entry whose fix names something that is not an edit",
    ],
)
def test_a_damaged_or_foreign_cache_is_ignored(project: Path, analysed: list[str], damage: object) -> None:
    expected = run("--check", ".")
    (shard,) = shards(project)
    if isinstance(damage, str):
        data = json.loads(shard.read_text())
        for entry in data["entries"].values():
            for finding in entry["findings"]:
                finding["fix"] = {"edits": [{"type": "system", "command": "touch pwned"}], "imports": []}
        shard.write_text(json.dumps(data))
    else:
        shard.write_bytes(damage)  # type: ignore[arg-type]
    analysed.clear()
    assert run("--check", ".") == expected
    assert analysed  # analysed again, not taken from the damaged file
    assert not (project / "pwned").exists()
    json.loads(shard.read_text())  # and the cache is whole again
    analysed.clear()
    assert run("--check", ".") == expected
    assert analysed == []


def _settle(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Date every file an hour back, and let the runs take place an hour later (a change time
    cannot be dated back): a file modified just before a run is compared by its bytes next
    time (``cache.RACY_NANOSECONDS``), one modified long before by its status."""
    hour_ago = time.time() - 3600
    for path in root.rglob("*"):
        os.utime(path, (hour_ago, hour_ago))
    now_ns = time.time_ns
    monkeypatch.setattr(cache, "time", SimpleNamespace(time_ns=lambda: now_ns() + 3600 * 10**9))


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Path]]:
    """The files read with ``Path.read_bytes`` (the engine, the naming's text scan and the
    cache's SHA-256 comparisons all read that way)."""
    seen: list[Path] = []
    read_bytes = Path.read_bytes

    def counting(self: Path) -> bytes:
        seen.append(self.absolute())
        return read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", counting)
    yield seen


def test_an_unchanged_file_is_not_read_again(
    project: Path, analysed: list[str], reads: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _settle(project, monkeypatch)
    expected = run("--check", ".", "--no-cache")
    assert run("--check", ".") == expected
    reads.clear()
    analysed.clear()
    assert run("--check", ".") == expected
    assert analysed == []
    # Neither hashed nor scanned for class names; the modules their analysis read (the one a
    # test patches, the conftest whose fixtures the tests use) are still compared by content.
    names = {path.name for path in reads}
    assert names & set(ALL) == {"conftest.py"}
    assert "client.py" in names


def test_a_file_touched_or_changed_within_the_timestamp_granularity(
    project: Path, analysed: list[str], reads: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _settle(project, monkeypatch)
    test = project / "tests" / "test_client.py"
    expected = run("--check", ".", "--no-cache")
    run("--check", ".")
    # Touched: the same bytes are found by their SHA-256, and the new status kept.
    os.utime(test)
    os.utime(test, ns=(test.stat().st_atime_ns, test.stat().st_mtime_ns - cache.RACY_NANOSECONDS))
    analysed.clear()
    reads.clear()
    assert run("--check", ".") == expected
    assert analysed == [] and test in reads
    reads.clear()
    assert run("--check", ".") == expected
    assert test not in reads
    # Other bytes of the same size with the old modification time (a tool restoring it, or a
    # change within the same tick): the change time still differs, so the bytes are compared.
    status = test.stat()
    changed = TEST.replace("def test_other", "def test_otter")
    assert len(changed) == len(TEST)
    test.write_text(changed)
    os.utime(test, ns=(status.st_atime_ns, status.st_mtime_ns))
    analysed.clear()
    code, output = run("--check", ".")
    assert analysed == ["test_client.py"]
    assert (code, output) == run("--check", ".", "--no-cache")
    assert "test_otter" in output


def test_a_file_saved_just_before_the_run_keeps_no_status(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run("--check", ".")  # the fixture wrote these two just now (and copied the others, dates kept)
    (shard,) = shards(project)
    entries = json.loads(shard.read_text())["entries"]
    fresh = [str(project / "tests" / name) for name in ("test_client.py", "test_plain.py")]
    assert [entries[path]["stat"] for path in fresh] == [None, None]
    # The copies' modification times are old, their change times not: another copy within
    # the same tick would keep both, so the copies keep no status either.
    copied = [key for key in entries if "notifier" in Path(key).parts]
    assert copied and all(entries[key]["stat"] is None for key in copied)
    _settle(project, monkeypatch)
    run("--check", ".")  # the same bytes: the entries now keep the settled status
    entries = json.loads(shard.read_text())["entries"]
    assert all(isinstance(entry["stat"], list) for entry in entries.values())


def test_group_names_from_the_cache_are_those_read_from_the_files(
    project: Path, analysed: list[str], reads: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The class names and markers the naming takes from the cache for unchanged files give
    the names a run reading every file gives, when a new file shares a class's name."""
    mocked_class = (
        "from unittest.mock import MagicMock\n\n\nclass TestSend:\n    def test_a(self):\n        MagicMock()\n"
    )
    (project / "tests" / "test_send.py").write_text(mocked_class)
    _settle(project, monkeypatch)
    run("--check", ".")
    old, new = project / "tests" / "test_send.py", project / "tests" / "notifier" / "test_send.py"
    new.write_text(mocked_class)
    expected = run("--check", ".", "--no-cache")
    analysed.clear()
    reads.clear()
    assert run("--check", ".") == expected
    # The old file's entry did not have the run's group names: it was analysed again, but its
    # class names came from the cache (read once, to analyse it; the new one twice).
    assert sorted(analysed) == ["test_send.py", "test_send.py"]
    assert (reads.count(old), reads.count(new)) == (1, 2)
    (shard,) = shards(project)
    entries = json.loads(shard.read_text())["entries"]
    groups = [entries[str(path)]["groups"] for path in (old, new)]
    assert groups == [{"TestSend": "tests.send.send"}, {"TestSend": "notifier.send.send"}]
