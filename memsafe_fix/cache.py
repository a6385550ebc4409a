"""The result cache: a file checked before, unchanged since, is not analysed again.

Like ruff's and black's caches. A folder (``.memsafe_fix_cache`` next to the configuration,
the ``cache-dir`` setting, ``--cache-dir`` or ``MEMSAFE_FIX_CACHE_DIR``) holding a
``CACHEDIR.TAG`` (backup tools skip it), a ``.gitignore`` of ``*``, and one JSON file per
memsafe-fix version, Python version and resolved settings: ``<version>/<key>.json``. Each
file maps a checked file's absolute path to its entry: the SHA-256 of its bytes and its
status (size, modification and change times: when they are the same, the file is not read
again), what the run's ``xdist_group`` naming read in it (``xdist_group.group_facts``) and the
names it gave its classes, its findings (with their fixes), the markers
it uses and registers, and what its analysis read elsewhere: the project modules looked up to
resolve base classes and MSF004's ``patch`` targets (and the files found), the SHA-256 of
every module read, and the ``conftest.py`` files looked for. An entry is used only when all of
these are still the same; any difference (a changed imported module, a new ``conftest.py``, a
module that now resolves to another file) means the file is analysed again.

Only clean files and findings are kept: a file that could not be read, parsed or fixed is
never cached, and ``--diff``/``--write`` use an entry only for a file with nothing to fix. The
cache is JSON, written atomically (a temporary file renamed over the old one); a file that is
damaged, of another version or not of this shape is ignored and replaced, never executed.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

from memsafe_fix import __version__, edits
from memsafe_fix.analysis.project import Dependencies, find_module
from memsafe_fix.config import Settings
from memsafe_fix.edits import Finding, Fix
from memsafe_fix.rules.xdist_group import GroupFacts

CACHE_DIR_NAME = ".memsafe_fix_cache"
CACHE_DIR_ENV = "MEMSAFE_FIX_CACHE_DIR"
FORMAT = 2  # 2: entries note the file status and what the xdist_group naming reads
CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by memsafe-fix.\n"
    "# For information about cache directory tags, see:\n"
    "#\thttps://bford.info/cachedir/\n"
)

# The edit classes an entry's fixes may name (nothing else is ever built from a cache file).
_EDITS = {cls.__name__: cls for cls in edits.Edit.__args__}  # type: ignore[attr-defined]


# A file modified (or, for the change time, restored to an older modification time: ``cp -p``,
# ``tar``, ``rsync -t``) this shortly before its status is taken may be modified again within
# its file system's timestamp granularity (FAT: 2 s) without a new status: its status is not
# kept, and the next run compares its bytes instead (git's "racily clean" files).
RACY_NANOSECONDS = 2_000_000_000


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_status(path: str) -> tuple[Optional[list[int]], bool]:
    """(size, modification and change times in ns, or None when it cannot be read; whether
    the file is old enough for them to vouch for its bytes next time). The change time is set
    by the system on every change, whatever a tool does to the modification time, so both
    must be old enough: a change within the same tick as the last would keep it."""
    try:
        status = os.stat(path)
    except OSError:
        return None, False
    settled = time.time_ns() - max(status.st_mtime_ns, status.st_ctime_ns) >= RACY_NANOSECONDS
    return [status.st_size, status.st_mtime_ns, status.st_ctime_ns], settled


def cache_folder(settings: Settings, override: Optional[Path] = None) -> Path:
    """Where the cache for files with these settings is: ``override`` (``--cache-dir``, else
    ``MEMSAFE_FIX_CACHE_DIR``), else the ``cache-dir`` setting, else ``.memsafe_fix_cache``,
    both relative to the configuration's folder (the current directory without one)."""
    if override is None and os.environ.get(CACHE_DIR_ENV):
        override = Path(os.environ[CACHE_DIR_ENV])
    if override is not None:
        return override.absolute()
    base = (settings.root or Path.cwd()).absolute()
    return base / (settings.cache_dir or CACHE_DIR_NAME)


def settings_key(settings: Settings) -> str:
    """Everything a file's results depend on besides its own bytes and what it imports: this
    memsafe-fix version, the Python version (its parser, its standard library) and the
    settings, with the folder they came from."""
    values = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings) if f.name != "cache_dir"}
    identity = json.dumps([FORMAT, __version__, list(sys.version_info[:2]), values], default=str, sort_keys=True)
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            "type": type(value).__name__,
            **{name: _encode(getattr(value, name)) for name in _field_names(type(value))},
        }
    if isinstance(value, (list, tuple)):
        return [_encode(item) for item in value]
    return value


def _encode_findings(findings: list[Finding]) -> list[dict[str, Any]]:
    """``_encode`` of each finding, written out for the one type that comes by the 100,000
    (7x faster); each ``Fix`` object is encoded once: a big file's findings share one."""
    fixes: dict[int, Any] = {}
    encoded = []
    for finding in findings:
        fix = finding.fix
        if fix is not None:
            if id(fix) not in fixes:
                fixes[id(fix)] = _encode(fix)
            fix = fixes[id(fix)]
        encoded.append(
            {
                "type": "Finding",
                "code": finding.code,
                "line": finding.line,
                "col": finding.col,
                "message": finding.message,
                "fix": fix,
            }
        )
    return encoded


@functools.lru_cache(maxsize=None)
def _field_names(kind: type) -> tuple[str, ...]:
    """``dataclasses.fields`` rebuilds its answer on every call: a big file's findings are many."""
    return tuple(f.name for f in dataclasses.fields(kind))


def _decode_value(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_decode_value(item) for item in value)  # every sequence in an edit is a tuple
    if isinstance(value, dict):
        kind = _EDITS.get(value.get("type", ""))
        if kind is None:
            raise ValueError(f"not an edit: {value.get('type')!r}")
        return kind(**{k: _decode_value(v) for k, v in value.items() if k != "type"})
    if value is None or isinstance(value, (str, int)):
        return value
    raise ValueError(f"unexpected value {value!r}")


def _finding(data: dict[str, Any]) -> Finding:
    fix = data["fix"]
    if fix is not None:
        fix = Fix(tuple(_decode_value(edit) for edit in fix["edits"]), tuple(map(str, fix["imports"])))
    return Finding(str(data["code"]), int(data["line"]), int(data["col"]), str(data["message"]), fix)


@dataclasses.dataclass
class Hit:
    """What a cache entry says about a file."""

    findings: list[Finding]
    markers: frozenset[str]
    added_markers: frozenset[str]
    registered: frozenset[str]


class Cache:
    """One run's view of the cache folders: looks entries up, collects new ones, and writes
    the files that changed at the end (``save``)."""

    def __init__(self, override: Optional[Path] = None) -> None:
        self.override = override
        # (folder, key) -> path -> entry, as read; and the shards that got new entries.
        self._shards: dict[tuple[Path, str], dict[str, Any]] = {}
        self._changed: set[tuple[Path, str]] = set()
        # Digests of dependency files (None: unreadable), each file read once per run.
        self._digests: dict[str, Optional[str]] = {}
        self._probes: dict[str, bool] = {}
        # Module lookups, by settings object (those of a folder are one object for the run).
        self._lookups: dict[tuple[str, str, bool, int], Optional[str]] = {}
        self._folders: dict[str, Path] = {}  # the importing folders of those, each made a Path once
        self._settings: dict[int, Settings] = {}  # keeps the objects whose ids key these alive
        # Each settings object's shard (hashing the settings costs more than the lookup it serves;
        # by id, since settings that compare equal may come from different folders).
        self._where: dict[int, tuple[Path, str]] = {}
        # Each file's status, taken before anything reads it this run (``file_status``), and
        # whether its entry's bytes are still its bytes.
        self._status: dict[str, tuple[Optional[list[int]], bool]] = {}
        self._unchanged: dict[str, bool] = {}

    def _shard(self, settings: Settings) -> tuple[tuple[Path, str], dict[str, Any]]:
        where = self._where.get(id(settings))
        if where is None:
            self._settings[id(settings)] = settings
            where = self._where[id(settings)] = (cache_folder(settings, self.override), settings_key(settings))
        if where not in self._shards:
            self._shards[where] = _read_shard(where[0] / __version__ / f"{where[1]}.json")
        return where, self._shards[where]

    def _file_status(self, key: str) -> tuple[Optional[list[int]], bool]:
        """``file_status`` of the file, taken once per run: the first time the run asks, before
        anything reads the file (the entry stored for it keeps this status)."""
        if key not in self._status:
            self._status[key] = file_status(key)
        return self._status[key]

    def _same_bytes(self, key: str, entry: dict[str, Any], where: tuple[Path, str]) -> bool:
        """Whether the file still has the bytes its entry was made from: the same status, else
        the same SHA-256 (then the new status is kept, and the next run reads no bytes)."""
        if key not in self._unchanged:
            status, settled = self._file_status(key)
            same = status is not None and entry.get("stat") == status
            if status is not None and not same:
                try:
                    same = digest(Path(key).read_bytes()) == entry.get("digest")
                except OSError:
                    same = False
                if same and settled:
                    entry["stat"] = status
                    self._changed.add(where)
            self._unchanged[key] = same
        return self._unchanged[key]

    def group_facts(self, path: Path, settings: Settings) -> Optional[GroupFacts]:
        """What ``xdist_group``'s naming read in the file last time, when its bytes are the same.
        Asked first for every file of a run (see ``_file_status``)."""
        key = str(path.absolute())
        self._file_status(key)
        where, entries = self._shard(settings)
        entry = entries.get(key)
        if not isinstance(entry, dict) or not self._same_bytes(key, entry, where):
            return None
        try:
            markers, classes = entry["group_facts"]
            return [str(m) for m in markers], None if classes is None else [str(c) for c in classes]
        except (KeyError, TypeError, ValueError):
            return None  # not noted (the run did not read it), or not of this shape

    def lookup(self, path: Path, settings: Settings, groups: Optional[dict[str, str]]) -> Optional[Hit]:
        """The cached results for ``path``, when still valid."""
        key = str(path.absolute())
        where, entries = self._shard(settings)
        entry = entries.get(key)
        if not isinstance(entry, dict) or not self._same_bytes(key, entry, where):
            return None
        try:
            if entry["groups"] != groups or not self._still_valid(entry, settings):
                return None
            return Hit(
                [_finding(item) for item in entry["findings"]],
                frozenset(map(str, entry["markers"])),
                frozenset(map(str, entry["added_markers"])),
                frozenset(map(str, entry["registered"])),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            return None  # not an entry this version writes

    def _still_valid(self, entry: dict[str, Any], settings: Settings) -> bool:
        for dotted, folder, installed, found in entry["lookups"]:
            if self._found(str(dotted), str(folder), bool(installed), settings) != found:
                return False
        for file, expected in entry["files"].items():
            if self._digest(file) != expected:
                return False
        return all(self._exists(file) == exists for file, exists in entry["probes"].items())

    def _found(self, dotted: str, folder: str, installed: bool, settings: Settings) -> Optional[str]:
        """Where a module lookup leads now (many files share each: asked once per run)."""
        key = (dotted, folder, installed, id(settings))
        if key not in self._lookups:
            self._settings[id(settings)] = settings
            if folder not in self._folders:
                self._folders[folder] = Path(folder)
            now = find_module(dotted, self._folders[folder], settings, installed)
            self._lookups[key] = str(now) if now is not None else None
        return self._lookups[key]

    def _digest(self, file: str) -> Optional[str]:
        if file not in self._digests:
            try:
                self._digests[file] = digest(Path(file).read_bytes())
            except OSError:
                self._digests[file] = None
        return self._digests[file]

    def _exists(self, file: str) -> bool:
        if file not in self._probes:
            self._probes[file] = Path(file).is_file()
        return self._probes[file]

    def store(
        self,
        path: Path,
        settings: Settings,
        file_digest: str,
        groups: Optional[dict[str, str]],
        hit: Hit,
        dependencies: Dependencies,
        facts: Optional[GroupFacts] = None,
    ) -> None:
        """Keep a file's results, with the status noted before anything read it this run
        (``_file_status``), if any and settled (else the next run compares its bytes)."""
        where, entries = self._shard(settings)
        key = str(path.absolute())
        status, settled = self._status.get(key, (None, False))
        entries[key] = {
            "digest": file_digest,
            "stat": status if settled else None,
            "group_facts": facts,
            "groups": groups,
            "findings": _encode_findings(hit.findings),
            "markers": sorted(hit.markers),
            "added_markers": sorted(hit.added_markers),
            "registered": sorted(hit.registered),
            "lookups": [[*key, found] for key, found in sorted(dependencies.lookups.items(), key=str)],
            "files": {file: self._digest(file) for file in sorted(dependencies.files)},
            "probes": dict(sorted(dependencies.probes.items())),
        }
        self._changed.add(where)

    def save(self) -> None:
        """Write the shards that have new entries (dropping entries of files that are gone).
        A cache that cannot be written is skipped silently: it only saves time."""
        for where in sorted(self._changed):
            folder, key = where
            entries = {path: entry for path, entry in self._shards[where].items() if os.path.exists(path)}
            try:
                _prepare(folder)
                _write_atomically(folder / __version__ / f"{key}.json", {"format": FORMAT, "entries": entries})
            except OSError:
                pass
        self._changed.clear()


def _read_shard(file: Path) -> dict[str, Any]:
    try:
        data = json.loads(file.read_bytes())
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("entries"), dict):
        return {}
    return data["entries"]


def _prepare(folder: Path) -> None:
    """Create the cache folder with its ``CACHEDIR.TAG`` and ``.gitignore``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("CACHEDIR.TAG", CACHEDIR_TAG), (".gitignore", "# Created by memsafe-fix\n*\n")):
        if not (folder / name).exists():
            (folder / name).write_text(text, encoding="utf-8")
    (folder / __version__).mkdir(exist_ok=True)


def _write_atomically(file: Path, data: Any) -> None:
    fd, temporary = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            # ``json.dump`` encodes in pure Python, ``json.dumps`` with the C encoder: several
            # times faster on the shard of a big file with many findings; same text.
            handle.write(json.dumps(data, separators=(",", ":")))
        os.replace(temporary, file)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
