"""The command line: modes, exit codes, messages, discovery, safety of writes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Callable, Iterable, Iterator

import pytest
from cli_runner import invoke

import memsafe_fix.engine as engine
from memsafe_fix import __version__
from memsafe_fix.engine import FileResult, Job

MOCK_CLASS = textwrap.dedent(
    """\
    from unittest.mock import MagicMock


    class TestA:
        def test_a(self):
            assert MagicMock()
    """
)
UNFIXABLE = textwrap.dedent(
    """\
    from unittest.mock import MagicMock

    from elsewhere import Base


    @__import__("pytest").mark.xdist_group(name="a")
    class TestA(Base):
        def test_a(self):
            assert MagicMock()
    """
)
CLEAN = "def test_plain():\n    assert True\n"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # pytest already runs xdist with --dist loadgroup: the project-level rules (MSF010/MSF011,
    # tests/test_doctor.py) have nothing to say, so these tests see the per-file rules alone.
    (tmp_path / "pyproject.toml").write_text(
        "[project]\nname = 'sample'\n\n[tool.pytest.ini_options]\naddopts = '--dist loadgroup'\n"
    )
    (tmp_path / "tests").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_check_lists_findings_and_exits_1(project: Path) -> None:
    (project / "tests" / "test_a.py").write_text(MOCK_CLASS)
    result = invoke("tests")
    assert result.exit_code == 1
    assert "tests/test_a.py:4:1: MSF001 [*] test class `TestA` has no `xdist_group` marker" in result.everything
    assert "tests/test_a.py:4:1: MSF002 [*]" in result.everything
    assert "Found 2 findings (2 fixable with `--write`)." in result.everything
    assert (project / "tests" / "test_a.py").read_text() == MOCK_CLASS
    assert invoke("--check", "tests").exit_code == 1


def test_clean_tree_exits_0(project: Path) -> None:
    (project / "tests" / "test_a.py").write_text(CLEAN)
    for mode in ("--check", "--diff", "--write"):
        result = invoke(mode, "tests")
        assert result.exit_code == 0, (mode, result.everything)
    assert "All checked: no findings in 1 file." in invoke("tests").everything


def test_diff_writes_nothing_and_applies_with_git(project: Path) -> None:
    (project / "tests" / "test_a.py").write_text(MOCK_CLASS)
    result = invoke("--diff", "tests")
    assert result.exit_code == 1
    assert result.stdout.startswith("--- a/tests/test_a.py\n+++ b/tests/test_a.py\n")
    assert (project / "tests" / "test_a.py").read_text() == MOCK_CLASS
    patch = project / "fix.patch"
    patch.write_text(result.stdout)
    subprocess.run(["git", "init", "-q", "."], check=True)
    subprocess.run(["git", "apply", str(patch)], check=True)
    applied = (project / "tests" / "test_a.py").read_text()
    (project / "tests" / "test_a.py").write_text(MOCK_CLASS)
    assert invoke("--write", "tests").exit_code == 0
    assert (project / "tests" / "test_a.py").read_text() == applied


def test_diff_of_file_without_final_newline_applies(project: Path) -> None:
    (project / "tests" / "test_a.py").write_text(MOCK_CLASS.rstrip("\n"))
    result = invoke("--diff", "tests")
    assert "\\ No newline at end of file" in result.stdout
    (project / "fix.patch").write_text(result.stdout)
    subprocess.run(["git", "init", "-q", "."], check=True)
    subprocess.run(["git", "apply", "fix.patch"], check=True)
    assert invoke("--diff", "tests").exit_code == 0


def test_write_then_second_run_changes_nothing(project: Path) -> None:
    (project / "tests" / "test_a.py").write_text(MOCK_CLASS)
    result = invoke("--write", "tests")
    assert result.exit_code == 0
    assert "Fixed 2 findings in 1 file; 0 remaining without a safe fix." in result.everything
    assert "gc.collect(1)" in (project / "tests" / "test_a.py").read_text()
    again = invoke("--diff", "tests")
    assert (again.exit_code, again.stdout, again.stderr) == (0, "", "")


def test_write_exits_1_when_unfixable_findings_remain(project: Path) -> None:
    (project / "tests" / "test_a.py").write_text(UNFIXABLE)
    result = invoke("--write", "tests")
    assert result.exit_code == 1
    assert "MSF002 cannot tell whether base `Base`" in result.everything
    assert "[*]" not in result.everything


def test_syntax_error_reported_file_untouched_others_processed(project: Path) -> None:
    broken = b"class TestBroken:\n    def test_a(self)\n        pass\n"
    (project / "tests" / "test_broken.py").write_bytes(broken)
    (project / "tests" / "test_ok.py").write_text(MOCK_CLASS)
    result = invoke("--write", "tests")
    assert result.exit_code == 2
    errors = [line for line in result.everything.splitlines() if "syntax error" in line]
    assert len(errors) == 1 and errors[0].startswith("tests/test_broken.py:2:")
    assert "Traceback" not in result.everything
    assert (project / "tests" / "test_broken.py").read_bytes() == broken
    assert "gc.collect(1)" in (project / "tests" / "test_ok.py").read_text()


def test_future_import_error_in_input_is_a_syntax_error(project: Path) -> None:
    source = "import os\nfrom __future__ import annotations\n" + MOCK_CLASS
    (project / "tests" / "test_a.py").write_text(source)
    result = invoke("--write", "tests")
    assert result.exit_code == 2
    assert "tests/test_a.py:2:" in result.everything and "syntax error" in result.everything
    assert (project / "tests" / "test_a.py").read_text() == source


def test_unreadable_file_and_missing_path(project: Path) -> None:
    (project / "tests" / "test_dangling.py").symlink_to(project / "tests" / "nowhere.py")
    (project / "tests" / "test_ok.py").write_text(MOCK_CLASS)
    result = invoke("--write", "tests", "missing_dir")
    assert result.exit_code == 2
    assert "tests/test_dangling.py:1:1: error: cannot read file" in result.everything
    assert "missing_dir:1:1: error: no such file or directory" in result.everything
    assert "gc.collect(1)" in (project / "tests" / "test_ok.py").read_text()


def test_internal_error_leaves_file_untouched(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("memsafe_fix.fixer.apply_fixes", lambda source, *args: source + "def (:\n")
    (project / "tests" / "test_a.py").write_text(MOCK_CLASS)
    result = invoke("--write", "tests")
    assert result.exit_code == 2
    assert "tests/test_a.py:1:1: internal error: the fixed file would not compile" in result.everything
    assert (project / "tests" / "test_a.py").read_text() == MOCK_CLASS


def test_bad_options_exit_2(project: Path) -> None:
    assert invoke("--no-such-option").exit_code == 2
    result = invoke("--diff", "--write", "tests")
    assert result.exit_code == 2
    assert "use only one of --check, --diff and --write" in result.everything


def test_missing_config_file_is_an_error(project: Path) -> None:
    result = invoke("--config", "nope.toml", "tests")
    assert result.exit_code == 2
    assert "nope.toml: no such file" in result.everything


def test_unknown_config_key_is_an_error(project: Path) -> None:
    (project / "pyproject.toml").write_text("[tool.memsafe-fix]\nscope = 'all'\nfuction-gc = 'off'\n")
    (project / "tests" / "test_a.py").write_text(CLEAN)
    result = invoke("tests")
    assert result.exit_code == 2
    assert "unknown key `fuction-gc`" in result.everything


def test_config_settings_apply(project: Path) -> None:
    (project / "pyproject.toml").write_text('[tool.memsafe-fix]\nselect = ["MSF001"]\ngroup-name = "module"\n')
    (project / "tests" / "test_billing.py").write_text(MOCK_CLASS)
    assert invoke("--write", "tests").exit_code == 0
    text = (project / "tests" / "test_billing.py").read_text()
    assert '@pytest.mark.xdist_group(name="billing")' in text
    assert "gc.collect" not in text


def test_discovery_respects_gitignore_venv_and_python_files(project: Path) -> None:
    (project / "pytest.ini").write_text("[pytest]\npython_files = check_*.py test_*.py\n")
    (project / ".gitignore").write_text("generated/\n")
    for folder in ("generated", ".venv/lib", "tests/sub"):
        (project / folder).mkdir(parents=True)
    (project / "generated" / "test_gen.py").write_text(MOCK_CLASS)
    (project / ".venv" / "lib" / "test_venv.py").write_text(MOCK_CLASS)
    (project / "tests" / "sub" / "check_custom.py").write_text(MOCK_CLASS)
    (project / "tests" / "helpers.py").write_text(MOCK_CLASS)
    output = invoke(".").everything
    assert "tests/sub/check_custom.py" in output
    for skipped in ("test_gen.py", "test_venv.py", "helpers.py"):
        assert skipped not in output
    # Files named explicitly are always processed.
    assert "tests/helpers.py:4:1: MSF001" in invoke("tests/helpers.py").everything


def test_write_keeps_file_mode_and_leaves_no_temp_files(project: Path) -> None:
    target = project / "tests" / "test_a.py"
    target.write_text(MOCK_CLASS)
    target.chmod(0o640)
    assert invoke("--write", "tests").exit_code == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(p.name for p in (project / "tests").iterdir()) == ["test_a.py"]


def test_many_files_in_parallel_match_serial_results(project: Path) -> None:
    for i in range(40):
        (project / "tests" / f"test_{i:02}.py").write_text(MOCK_CLASS if i % 2 else CLEAN)
    result = invoke("--write", "tests")
    assert result.exit_code == 0
    assert "Fixed 40 findings in 20 files" in result.everything
    assert invoke("--diff", "tests").stdout == ""


def test_version_and_module_entry_point(project: Path) -> None:
    assert invoke("--version").everything.strip() == f"memsafe-fix {__version__}"
    completed = subprocess.run([sys.executable, "-m", "memsafe_fix", "--version"], capture_output=True, text=True)
    assert completed.stdout.strip() == f"memsafe-fix {__version__}"


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_imports_nothing_heavy(flag: str) -> None:
    code = (
        f"import sys; sys.argv[1:] = [{flag!r}]; from memsafe_fix.entry import main; main(); "
        "print(sorted(name for name in ('libcst', 'typer', 'click', 'rich', 'tomlkit', 'memsafe_fix.cli')"
        " if name in sys.modules))"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert completed.stdout.splitlines() == [f"memsafe-fix {__version__}", "[]"]


def test_console_script_subprocess(project: Path) -> None:
    (project / "tests" / "test_a.py").write_text(MOCK_CLASS)
    script = Path(sys.executable).with_name("memsafe-fix")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "memsafe_fix"]
    completed = subprocess.run([*command, "--diff", "tests"], capture_output=True, text=True)
    assert completed.returncode == 1
    assert completed.stdout.startswith("--- a/tests/test_a.py")
    assert "Would fix 2 findings in 1 file." in completed.stderr


def test_console_script_ends_with_all_its_output_and_its_exit_code(project: Path) -> None:
    """The command ends its process without the interpreter's teardown (``cli._exit_now``):
    what it printed still arrives whole through pipes, with its exit code, cold and warm."""
    for number in range(200):
        (project / "tests" / f"test_{number}.py").write_text(MOCK_CLASS)
    script = Path(sys.executable).with_name("memsafe-fix")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "memsafe_fix"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*command, *args], capture_output=True, text=True, timeout=300)

    as_json = ("--check", "--output-format", "json", "tests")
    cold, warm, again = run(*as_json, "--no-cache"), run(*as_json), run(*as_json)
    assert cold.returncode == warm.returncode == again.returncode == 1
    assert cold.stdout == warm.stdout == again.stdout
    assert len(cold.stdout) > 65536  # more than a pipe holds: written while the test reads
    assert len(json.loads(cold.stdout)) == 400
    text = run("--check", "tests")
    assert text.returncode == 1 and text.stdout.endswith("Found 400 findings (400 fixable with `--write`).\n")
    assert [r.returncode for r in (run("--check", "--exit-zero", "tests"), run("--check", "missing"))] == [0, 2]


def test_bases_imported_from_project_modules_are_resolved(project: Path) -> None:
    package = project / "tests" / "support"
    package.mkdir()
    (project / "tests" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("from .bases import WithTeardown, Plain\n")
    (package / "bases.py").write_text(
        "class WithTeardown:\n    def teardown_method(self, method):\n        pass\n\n\nclass Plain:\n    pass\n"
    )
    (project / "tests" / "test_a.py").write_text(
        textwrap.dedent(
            """\
            from unittest.mock import MagicMock

            from somewhere_else import ThirdParty
            from tests.support import WithTeardown
            from .support.bases import Plain


            class TestReexported(WithTeardown):
                def test_a(self):
                    MagicMock()


            class TestRelative(Plain):
                def test_a(self):
                    MagicMock()


            class TestThirdParty(ThirdParty):
                def test_a(self):
                    MagicMock()
            """
        )
    )
    result = invoke("--diff", "tests/test_a.py")
    assert "+    def teardown_method(self, method):\n+        super().teardown_method(method)\n" in result.stdout
    assert result.stdout.count("def teardown_method(self):\n+        gc.collect(1)") == 1
    # --diff shows only diffs, as ruff's does; what has no fix is for --check to list.
    assert "cannot tell whether base" not in result.everything
    assert "cannot tell whether base `ThirdParty` of `TestThirdParty`" in invoke("--check", "tests/test_a.py").stdout


def test_readme_shows_the_real_diff_of_the_examples(monkeypatch: pytest.MonkeyPatch) -> None:
    root = Path(__file__).parent.parent
    monkeypatch.chdir(root)
    shown = (root / "README.md").read_text().split("```diff\n", 1)[1].split("```", 1)[0]
    produced = invoke("--diff", "examples/").stdout
    assert shown.startswith("--- a/examples/tests/test_notifier.py")
    assert shown in produced


def test_bases_resolve_from_the_package_base_without_project_markers(tmp_path: Path, monkeypatch) -> None:
    # No pyproject.toml/.git: absolute imports resolve from the folder above the top package,
    # as pytest's default "prepend" import mode sees them.
    package = tmp_path / "lib" / "suite"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("import unittest\n\n\nclass CaseBase(unittest.TestCase):\n    pass\n")
    (package / "test_a.py").write_text(
        "from unittest import mock\n\nfrom suite import CaseBase\n\n\n"
        "class Checks(CaseBase):\n    def test_a(self):\n        mock.MagicMock()\n"
    )
    monkeypatch.chdir(tmp_path)
    result = invoke("--diff", "lib")
    assert "+    def tearDown(self):\n+        super().tearDown()\n+        gc.collect(1)" in result.stdout


def test_write_through_a_symlink_named_explicitly_keeps_the_link(project: Path) -> None:
    real = project / "shared_test_a.py"
    real.write_text(MOCK_CLASS)
    link = project / "tests" / "test_a.py"
    link.symlink_to(real)
    assert invoke("--write", "tests/test_a.py").exit_code == 0
    assert link.is_symlink()
    assert "gc.collect(1)" in real.read_text()


def test_symlink_to_a_file_outside_the_given_folder_is_skipped(project: Path) -> None:
    outside = project / "elsewhere" / "test_shared.py"
    outside.parent.mkdir()
    outside.write_text(MOCK_CLASS)
    (project / "tests" / "test_link.py").symlink_to(outside)
    (project / "tests" / "test_inside.py").write_text(MOCK_CLASS)
    (project / "tests" / "test_link_inside.py").symlink_to(project / "tests" / "test_inside.py")
    assert invoke("--write", "tests").exit_code == 0
    assert outside.read_text() == MOCK_CLASS
    assert "gc.collect(1)" in (project / "tests" / "test_inside.py").read_text()


def test_write_keeps_hard_links_linked(project: Path) -> None:
    target = project / "tests" / "test_a.py"
    target.write_text(MOCK_CLASS)
    link = project / "test_a_link.py"
    os.link(target, link)
    assert invoke("--write", "tests").exit_code == 0
    assert "gc.collect(1)" in target.read_text()
    assert link.read_text() == target.read_text()
    assert os.path.samefile(link, target)
    assert sorted(p.name for p in (project / "tests").iterdir()) == ["test_a.py"]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="only root can give files away")
def test_write_as_root_keeps_owner_and_group(project: Path) -> None:
    target = project / "tests" / "test_a.py"
    target.write_text(MOCK_CLASS)
    os.chown(target, 65534, 65534)
    assert invoke("--write", "tests").exit_code == 0
    assert "gc.collect(1)" in target.read_text()
    assert (target.stat().st_uid, target.stat().st_gid) == (65534, 65534)


def test_output_formats_statistics_quiet_and_exit_zero(project: Path) -> None:
    import json

    (project / "tests" / "test_a.py").write_text(MOCK_CLASS)
    as_json = invoke("--output-format", "json", "tests")
    assert as_json.exit_code == 1
    records = json.loads(as_json.stdout)
    assert [(r["path"], r["line"], r["column"], r["code"], r["fixable"]) for r in records] == [
        ("tests/test_a.py", 4, 1, "MSF001", True),
        ("tests/test_a.py", 4, 1, "MSF002", True),
    ]
    github = invoke("--output-format", "github", "tests").stdout.splitlines()
    assert github[0].startswith(
        "::error title=memsafe-fix (MSF001),file=tests/test_a.py,line=4,col=1::tests/test_a.py:4:1: MSF001"
    )
    assert len(github) == 2  # no summary line in machine formats
    stats = invoke("--statistics", "tests").stdout
    assert "    1\tMSF001\t[*] xdist-group" in stats and "    1\tMSF002\t[*] gc-teardown" in stats
    quiet = invoke("--quiet", "tests")
    assert "Found" not in quiet.everything and "MSF001" in quiet.stdout
    assert invoke("--exit-zero", "tests").exit_code == 0
    (project / "tests" / "test_broken.py").write_text("def (:\n")
    assert invoke("--exit-zero", "tests").exit_code == 2  # errors are never hidden


def test_rule_command_prints_the_rule_documentation(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("memsafe-fix")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "memsafe_fix"]
    shown = subprocess.run([*command, "rule", "MSF002"], capture_output=True, text=True, cwd=tmp_path)
    assert shown.returncode == 0
    assert shown.stdout.startswith("MSF002 gc-teardown.") and "## Fix safety" in shown.stdout
    assert (
        subprocess.run([*command, "rule", "gc-teardown"], capture_output=True, text=True, cwd=tmp_path).stdout
        == shown.stdout
    )
    unknown = subprocess.run([*command, "rule", "MSF999"], capture_output=True, text=True, cwd=tmp_path)
    assert unknown.returncode == 2 and "MSF001 (xdist-group)" in unknown.stderr


def test_stdin_for_editors(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("memsafe-fix")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "memsafe_fix"]

    def run(*args: str, source: str = MOCK_CLASS) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*command, *args, "--stdin-filename", "tests/test_x.py", "-"],
            input=source,
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )

    fixed = run("--write")
    assert fixed.returncode == 0 and "gc.collect(1)" in fixed.stdout
    compile(fixed.stdout, "test_x.py", "exec")
    assert run("--write", source=fixed.stdout).stdout == fixed.stdout  # stable, printed unchanged
    checked = run("--check")
    assert checked.returncode == 1 and checked.stdout.startswith("tests/test_x.py:4:1: MSF001 [*]")
    diffed = run("--diff")
    assert diffed.returncode == 1 and diffed.stdout.startswith("--- a/tests/test_x.py\n")
    broken = run("--write", source="def (:\n")
    assert broken.returncode == 2 and broken.stdout == "" and "tests/test_x.py:1:" in broken.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written to disk


def test_show_fixes_lists_fixes_per_file_and_rule(project: Path) -> None:
    (project / "tests" / "test_a.py").write_text(MOCK_CLASS)
    result = invoke("--write", "--show-fixes", "tests")
    assert (
        "Fixed 2 findings:\n- tests/test_a.py:\n    1 × MSF001 (xdist-group)\n    1 × MSF002 (gc-teardown)\n"
        in result.stdout
    )


def test_include_respect_gitignore_and_force_exclude(project: Path) -> None:
    (project / ".gitignore").write_text("generated/\n")
    (project / "generated").mkdir()
    (project / "generated" / "test_gen.py").write_text(MOCK_CLASS)
    (project / "tests" / "checks.py").write_text(MOCK_CLASS)
    (project / "tests" / "legacy").mkdir()
    (project / "tests" / "legacy" / "test_old.py").write_text(MOCK_CLASS)
    (project / "pyproject.toml").write_text(
        '[tool.memsafe-fix]\ninclude = ["tests/*.py"]\nrespect-gitignore = false\nextend-exclude = ["legacy/"]\n'
    )
    output = invoke(".").everything
    assert "tests/checks.py:4:1" in output
    assert "generated/test_gen.py" not in output  # not matched by include
    assert "test_old.py" not in output
    (project / "pyproject.toml").write_text(
        '[tool.memsafe-fix]\nrespect-gitignore = false\nextend-exclude = ["legacy/"]\n'
    )
    assert "generated/test_gen.py:4:1" in invoke(".").everything  # .gitignore not respected
    assert "test_old.py:4:1" in invoke("tests/legacy/test_old.py").everything  # named explicitly
    assert "test_old.py" not in invoke("--force-exclude", "tests/legacy/test_old.py").everything
    (project / "pyproject.toml").write_text('[tool.memsafe-fix]\nforce-exclude = true\nextend-exclude = ["legacy/"]\n')
    assert "test_old.py" not in invoke("tests/legacy/test_old.py").everything


def test_per_file_ignores_source_roots_and_mock_factories(project: Path) -> None:
    (project / "pyproject.toml").write_text(
        "[tool.memsafe-fix]\n"
        'source-roots = ["lib"]\n'
        'mock-factories = ["helpers.factories.fake_client"]\n'
        '[tool.memsafe-fix.per-file-ignores]\n"tests/test_b.py" = ["MSF001"]\n'
    )
    (project / "lib" / "bases").mkdir(parents=True)
    (project / "lib" / "bases" / "__init__.py").write_text(
        "class Base:\n    def teardown_method(self, method):\n        pass\n"
    )
    (project / "tests" / "test_a.py").write_text(
        "from bases import Base\nfrom helpers.factories import fake_client\n\n\n"
        "class TestA(Base):\n    def test_a(self):\n        assert fake_client()\n"
    )
    (project / "tests" / "test_b.py").write_text(MOCK_CLASS)
    result = invoke("--diff", "tests")
    assert "+    def teardown_method(self, method):\n+        super().teardown_method(method)" in result.stdout
    assert '+@pytest.mark.xdist_group(name="a")' in result.stdout
    assert "xdist_group" not in result.stdout.split("+++ b/tests/test_b.py")[1]


def test_bad_config_values_are_errors(project: Path) -> None:
    (project / "tests" / "test_a.py").write_text(CLEAN)
    for text, message in (
        ("force-exclude = 'yes'", "`force-exclude` must be true or false"),
        ("per-file-ignores = ['x']", "`per-file-ignores` must be a table"),
        ("mock-factories = 'x'", "`mock-factories` must be a list of strings"),
    ):
        (project / "pyproject.toml").write_text(f"[tool.memsafe-fix]\n{text}\n")
        result = invoke("tests")
        assert result.exit_code == 2 and message in result.everything


def test_show_settings_and_color(project: Path) -> None:
    (project / "pyproject.toml").write_text('[tool.memsafe-fix]\ngroup-name = "module"\n')
    (project / "pytest.ini").write_text("[pytest]\npython_classes = Check\n")
    (project / "tests" / "test_a.py").write_text(MOCK_CLASS)
    shown = invoke("--show-settings", "tests/test_a.py")
    assert shown.exit_code == 0
    assert 'group-name = "module"' in shown.stdout and 'python_classes = ["Check"]' in shown.stdout
    (project / "pytest.ini").unlink()
    colored = invoke("--diff", "--color", "always", "tests").stdout
    assert "\033[32m+import gc\033[0m\n" in colored and "\033[1m--- a/tests/test_a.py\033[0m\n" in colored
    assert "\033[" not in invoke("--diff", "tests").stdout  # auto: not a terminal here
    assert "\033[" not in invoke("--diff", "--color", "never", "tests").stdout


def test_progress_bar_only_on_a_terminal(project: Path) -> None:
    import pty

    for i in range(60):
        (project / "tests" / f"test_{i:02}.py").write_text(CLEAN)
    script = Path(sys.executable).with_name("memsafe-fix")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "memsafe_fix"]
    leader, follower = pty.openpty()
    completed = subprocess.run([*command, "tests"], stdout=subprocess.PIPE, stderr=follower, text=True)
    os.close(follower)
    shown = b""
    try:
        while chunk := os.read(leader, 4096):
            shown += chunk
    except OSError:  # the terminal is closed once everything is read
        pass
    os.close(leader)
    assert completed.returncode == 0 and "All checked: no findings in 60 files." in completed.stdout
    assert b"memsafe-fix" in shown  # the bar's label, drawn on the terminal
    piped = subprocess.run([*command, "tests"], capture_output=True, text=True)
    assert piped.stderr == ""  # no bar when stderr is not a terminal


def test_nearest_config_wins_and_ignore(project: Path) -> None:
    (project / "pyproject.toml").write_text('[tool.memsafe-fix]\nignore = ["MSF002"]\n')
    (project / "tests" / "test_a.py").write_text(MOCK_CLASS)
    nested = project / "tests" / "nested"
    nested.mkdir()
    (nested / "pyproject.toml").write_text('[tool.memsafe-fix]\nignore = ["MSF001"]\n')
    (nested / "test_b.py").write_text(MOCK_CLASS)
    output = invoke("tests").everything
    assert "tests/test_a.py:4:1: MSF001" in output and "tests/test_a.py:4:1: MSF002" not in output
    assert "tests/nested/test_b.py:4:1: MSF002" in output and "tests/nested/test_b.py:4:1: MSF001" not in output


ASYNC_PROJECT_TEST = textwrap.dedent(
    """\
    from unittest.mock import MagicMock, patch

    from shop.client import Client


    async def test_a():
        with patch.object(Client, "fetch"), patch("shop.client.Client.send_report"):
            pass
        with patch("shop.client.Client.fetch", new=MagicMock()) as fetch:
            await fetch()
        with patch("shop.client.missing"), patch("shop.client.Client.decorated"):
            pass
    """
)


def test_async_patch_verbose_notes_and_unsafe_fixes(project: Path) -> None:
    (project / "shop").mkdir()
    (project / "shop" / "__init__.py").write_text("")
    (project / "shop" / "client.py").write_text(
        "class Client:\n    async def fetch(self):\n        pass\n\n    def send_report(self):\n        pass\n\n"
        "    @some_decorator\n    async def decorated(self):\n        pass\n"
    )
    (project / "tests" / "test_a.py").write_text(ASYNC_PROJECT_TEST)

    checked = invoke("--check", "--verbose", "tests")
    assert "tests/test_a.py:7:10: MSF004 [*] patch of async `Client.fetch`" in checked.stdout
    assert "tests/test_a.py:9:48: MSF004 `MagicMock` replaces async" in checked.stdout
    assert "(unsafe fix available with --unsafe-fixes)" in checked.stdout
    # Unresolved targets are notes on stderr, never findings.
    assert "note: MSF004 cannot tell whether patch target `shop.client.missing` is async" in checked.stderr
    assert "`shop.client.Client.decorated` is async: async def" in checked.stderr
    assert "patch targets: 3 resolved (2 async), 2 unresolved" in checked.stderr
    assert "note:" not in invoke("--check", "tests").everything

    safe = invoke("--diff", "tests")
    assert "new=MagicMock()" in safe.stdout.split("+++")[1] and "new=AsyncMock()" not in safe.stdout
    unsafe = invoke("--diff", "--unsafe-fixes", "tests")
    assert '+    with patch("shop.client.Client.fetch", new=AsyncMock()) as fetch:' in unsafe.stdout
    (project / "pyproject.toml").write_text("[tool.memsafe-fix]\nunsafe-fixes = true\n")
    assert invoke("--diff", "tests").stdout == unsafe.stdout


def test_async_decorators_setting(project: Path) -> None:
    (project / "pyproject.toml").write_text("[tool.memsafe-fix]\nasync-decorators = ['shop.deco.retrying']\n")
    (project / "shop").mkdir()
    (project / "shop" / "__init__.py").write_text("")
    # Not provably transparent (a partial is not a coroutine function): only the setting vouches for it.
    (project / "shop" / "deco.py").write_text(
        "import functools\n\n\ndef retrying(f):\n    return functools.partial(f)\n"
    )
    (project / "shop" / "client.py").write_text(
        "from .deco import retrying\n\n\nclass Client:\n    @retrying\n    async def decorated(self):\n        pass\n"
    )
    (project / "tests" / "test_a.py").write_text(ASYNC_PROJECT_TEST)
    # Vouched for through a relative import: compared by definition, not by spelling.
    assert "patch of async `shop.client.Client.decorated`" in invoke("--check", "tests").stdout
    (project / "pyproject.toml").write_text("[tool.memsafe-fix]\nasync-decorators = 'x'\n")
    assert "`async-decorators` must be a list of strings" in invoke("tests").everything


def test_class_decorator_through_a_module_is_no_error(project: Path) -> None:
    """``@decos.Retry`` naming a class: the method becomes an instance, MSF004 leaves it
    unresolved (it used to fail with an internal error reading the class as a function)."""
    (project / "shop").mkdir()
    (project / "shop" / "__init__.py").write_text("")
    (project / "shop" / "decos.py").write_text("class Retry:\n    def __init__(self, f):\n        self.f = f\n")
    (project / "shop" / "client.py").write_text(
        "from shop import decos\n\n\nclass Client:\n    @decos.Retry\n    async def decorated(self):\n        pass\n"
    )
    (project / "tests" / "test_a.py").write_text(ASYNC_PROJECT_TEST)
    checked = invoke("--check", "--verbose", "tests")
    assert "internal error" not in checked.everything
    assert "async def `client.decorated` is decorated with `decos.Retry`" in checked.stderr


def test_config_only_pyproject_in_tests_is_not_the_project_root(project: Path) -> None:
    (project / "pkg").mkdir()
    (project / "pkg" / "__init__.py").write_text("")
    (project / "pkg" / "svc.py").write_text("async def fetch():\n    pass\n")
    (project / "tests" / "pyproject.toml").write_text("[tool.ruff]\nline-length = 100\n")
    (project / "tests" / "test_svc.py").write_text(
        textwrap.dedent(
            """\
            import os
            from unittest.mock import patch

            from pkg.svc import fetch


            class TestFetch:
                async def test_fetch(self):
                    with patch("pkg.svc.fetch"):
                        assert fetch and os.sep
            """
        )
    )
    assert invoke("--write", "tests").exit_code == 0
    written = (project / "tests" / "test_svc.py").read_text()
    assert 'with patch("pkg.svc.fetch", new_callable=AsyncMock):' in written
    # pytest is third-party: its own section between the standard library and `pkg`.
    assert "from unittest.mock import AsyncMock, patch\n\nimport pytest\n\nfrom pkg.svc import fetch\n" in written


def test_installed_packages_of_a_venv_below_the_root_and_of_the_python_setting(project: Path) -> None:
    def install(environment: str, package: str) -> None:
        site = project / environment / "lib" / "python3.11" / "site-packages" / package
        site.mkdir(parents=True)
        (site / "__init__.py").write_text("class Client:\n    async def get(self):\n        pass\n")

    install("env311", "remote_sdk")
    (project / "env311" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    install("tools/py", "other_sdk")  # not a venv below the root: found through `python = `
    (project / "tools" / "py" / "bin").mkdir()
    (project / "tools" / "py" / "bin" / "python").write_text("")
    (project / "tests" / "test_a.py").write_text(
        'from unittest.mock import patch\n\n\ndef test_a():\n    with patch("remote_sdk.Client.get"), '
        'patch("other_sdk.Client.get"):\n        pass\n'
    )
    checked = invoke("--check", "tests").stdout
    assert "patch of async `remote_sdk.Client.get`" in checked
    assert "other_sdk" not in checked
    with (project / "pyproject.toml").open("a") as config:
        config.write('\n[tool.memsafe-fix]\npython = "tools/py/bin/python"\n')
    assert "patch of async `other_sdk.Client.get`" in invoke("--check", "tests").stdout


def test_default_group_names_shared_across_files_are_qualified_with_the_module(project: Path) -> None:
    config = (project / "pyproject.toml").read_text() + '\n[tool.memsafe-fix]\nselect = ["MSF001"]\n'
    (project / "pyproject.toml").write_text(config)
    files = ["providers/test_openai.py", "providers/test_anthropic.py", "a/test_tokens.py", "b/test_tokens.py"]
    for name in files:
        (project / "tests" / name).parent.mkdir(exist_ok=True)
        (project / "tests" / name).write_text(MOCK_CLASS.replace("TestA", "TestCountTokens"))
    (project / "tests" / "test_unique.py").write_text(MOCK_CLASS.replace("TestA", "TestUnique"))
    (project / "tests" / "test_grouped.py").write_text(
        'import pytest\n\n\n@pytest.mark.xdist_group(name="unique")\nclass TestOther:\n    pass\n'
    )

    def groups() -> dict[str, str]:
        found = {}
        for path in sorted((project / "tests").rglob("test_*.py")):
            text = path.read_text()
            if "xdist_group(name=" in text:
                found[path.relative_to(project / "tests").as_posix()] = text.split('xdist_group(name="')[1].split('"')[
                    0
                ]
        return found

    assert invoke("--write", "tests").exit_code == 0
    assert groups() == {
        "a/test_tokens.py": "a.tokens.count_tokens",
        "b/test_tokens.py": "b.tokens.count_tokens",
        "providers/test_anthropic.py": "anthropic.count_tokens",
        "providers/test_openai.py": "openai.count_tokens",
        "test_grouped.py": "unique",  # already there: the new class must not join it
        "test_unique.py": "unique.unique",
    }
    assert invoke("--check", "tests").exit_code == 0

    # Chosen explicitly, `class` keeps the bare class names.
    for name in files:
        (project / "tests" / name).write_text(MOCK_CLASS.replace("TestA", "TestCountTokens"))
    (project / "pyproject.toml").write_text(config + 'group-name = "class"\n')
    assert invoke("--write", "tests").exit_code == 0
    assert {groups()[name] for name in files} == {"count_tokens"}


# --- rare bytes: kept, or the file is refused and left as it was --------------------------------


def git_apply(project: Path, patch: str) -> None:
    (project / "fix.patch").write_bytes(patch.encode("utf-8"))
    subprocess.run(["git", "init", "-q", "."], check=True)
    subprocess.run(["git", "apply", "fix.patch"], check=True)


def test_form_feed_at_the_start_of_an_indented_line_is_refused(project: Path) -> None:
    setup = "    def setup_method(self):\n        self.m = MagicMock()\n\n"
    source = MOCK_CLASS.replace("    def test_a", f"{setup}\f    def test_a").encode()
    (project / "tests" / "test_a.py").write_bytes(source)
    result = invoke("--write", "tests")
    assert result.exit_code == 2
    assert result.stderr.startswith("tests/test_a.py:8:1: error: cannot fix without losing bytes")
    assert (project / "tests" / "test_a.py").read_bytes() == source


def test_lone_cr_file_keeps_its_final_cr(project: Path) -> None:
    (project / "tests" / "test_a.py").write_bytes(MOCK_CLASS.replace("\n", "\r").encode())
    assert invoke("--write", "tests").exit_code == 0
    written = (project / "tests" / "test_a.py").read_bytes()
    assert written.endswith(b"assert MagicMock()\r") and b"\n" not in written
    assert b"gc.collect(1)\r" in written


def test_encoding_that_does_not_round_trip_is_refused(project: Path) -> None:
    source = b"# coding: unicode_escape\n" + MOCK_CLASS.encode()
    (project / "tests" / "test_a.py").write_bytes(source)
    result = invoke("--write", "tests")
    assert result.exit_code == 2
    assert "tests/test_a.py:1:1: error: cannot decode file: the `unicode_escape` encoding" in result.stderr
    assert (project / "tests" / "test_a.py").read_bytes() == source


def test_diff_of_lines_holding_other_line_breaks_applies(project: Path) -> None:
    source = "X = 1  # a\vb\fc\u2028d\x1ce\x85f\n" + MOCK_CLASS
    (project / "tests" / "test_a.py").write_bytes(source.encode())
    result = invoke("--diff", "tests")
    git_apply(project, result.stdout)
    applied = (project / "tests" / "test_a.py").read_bytes()
    (project / "tests" / "test_a.py").write_bytes(source.encode())
    assert invoke("--write", "tests").exit_code == 0
    assert (project / "tests" / "test_a.py").read_bytes() == applied


def test_diff_of_a_file_with_a_bom_applies(project: Path) -> None:
    source = b"\xef\xbb\xbf" + MOCK_CLASS.encode()
    (project / "tests" / "test_a.py").write_bytes(source)
    git_apply(project, invoke("--diff", "tests").stdout)
    applied = (project / "tests" / "test_a.py").read_bytes()
    assert applied.startswith(b"\xef\xbb\xbf") and b"gc.collect(1)" in applied
    (project / "tests" / "test_a.py").write_bytes(source)
    assert invoke("--write", "tests").exit_code == 0
    assert (project / "tests" / "test_a.py").read_bytes() == applied


def test_no_syntax_warning_about_the_users_code(project: Path) -> None:
    source = MOCK_CLASS.replace("assert MagicMock()", "assert (MagicMock(), 'always true')\n        x = '\\d'")
    (project / "tests" / "test_a.py").write_text(source)
    run = subprocess.run(
        [sys.executable, "-W", "default", "-m", "memsafe_fix", "--write", "-q", "tests"],
        capture_output=True,
        text=True,
    )
    assert (run.returncode, run.stderr) == (0, "")
    assert "gc.collect(1)" in (project / "tests" / "test_a.py").read_text()


def test_inserted_method_is_indented_like_the_class_body(project: Path) -> None:
    source = "def helper():\n        return 1\n\n\n" + MOCK_CLASS.replace("    ", "  ")
    (project / "tests" / "test_a.py").write_text(source)
    assert invoke("--write", "tests").exit_code == 0
    assert "\n  def teardown_method(self):\n    gc.collect(1)\n" in (project / "tests" / "test_a.py").read_text()


def test_identifiers_equal_under_nfkc_are_fixed(project: Path) -> None:
    source = "def helper_\ufb01x():\n    pass\n\n\n" + MOCK_CLASS
    (project / "tests" / "test_a.py").write_text(source)
    result = invoke("--write", "tests")
    assert result.exit_code == 0, result.everything
    assert "def helper_\ufb01x():" in (project / "tests" / "test_a.py").read_text()


class _InProcessPool:
    """Stands in for the worker pool: records how many workers were asked for, runs in-process."""

    started: list[int] = []

    def __init__(self, max_workers: int, initializer: object, initargs: object) -> None:
        self.started.append(max_workers)

    def map(
        self, function: Callable[[Job], FileResult], jobs: Iterable[Job], chunksize: int = 1
    ) -> Iterator[FileResult]:
        return map(function, jobs)

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


DEFAULT_POOLS = [os.cpu_count()] if (os.cpu_count() or 1) > 1 else []


@pytest.mark.parametrize(("args", "pools"), [((), DEFAULT_POOLS), (("--jobs", "1"), []), (("-j", "3"), [3])])
def test_jobs_sets_the_worker_count_and_1_runs_without_a_pool(
    project: Path, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], pools: list[int]
) -> None:
    for i in range(engine.PARALLEL_THRESHOLD):
        (project / "tests" / f"test_{i}.py").write_text(MOCK_CLASS)
    monkeypatch.setattr(_InProcessPool, "started", [])
    monkeypatch.setattr(engine, "ProcessPoolExecutor", _InProcessPool)
    result = invoke("--check", *args, "tests")
    assert result.exit_code == 1
    assert result.stdout.count("MSF001") == engine.PARALLEL_THRESHOLD
    assert _InProcessPool.started == pools


def test_jobs_must_be_positive(project: Path) -> None:
    result = invoke("--check", "--jobs", "0", "tests")
    assert result.exit_code == 2
    assert "--jobs" in result.everything
