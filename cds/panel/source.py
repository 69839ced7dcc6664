"""Reading a Bulk Data export: its NDJSON files (split, gzipped) in partitions, each line keyed by patient.

A partition is a whole gzip file (a gzip stream cannot be entered in the middle) or a byte range of a plain
file; a byte range owns the lines that start in it. Every line keeps its file and line number, so a problem
found later (in the shuffle's output) can still be reported where it is.

An export is data from elsewhere, and no part of it is trusted to be small: only regular files inside the export
folder are opened (never through a symbolic link), a line is read in bounded chunks and dropped past
MAX_LINE_BYTES, a gzip file is read no further once it has given MAX_GZIP_RATIO times its own size, and a task
keeps a bounded number of problems and counts the rest.
"""

from __future__ import annotations

import errno
import gzip
import math
import os
import stat
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import orjson

from cds.panel import manifest as manifest_file

TYPES = ("Patient", "Observation", "Condition", "ServiceRequest", "Goal", "CarePlan")
SUFFIXES = (".ndjson", ".ndjson.gz")
BLOCK_BYTES = 32 * 1024 * 1024
GZIP_RATIO = 8  # what a gzip file of NDJSON is expected to hold, for sizing the shuffle's output
SPILL_PREFIX = "pacing-cds-spill-"  # the folders the read tasks write the lines of each bucket to
PROBLEM_KEY = ""  # the shuffle key of problem lines: they travel together to one partition
MIB = 1024 * 1024
# A line is one resource. The largest of the types read (a Patient with an inline photo, an Observation holding a
# waveform as SampledData) are well under 1 MB; 8 MiB leaves that room eight times over, while a line parsed into
# Python objects (several times its size) stays small next to a worker's memory.
MAX_LINE_BYTES = 8 * MIB
# FHIR NDJSON compresses 8 to 35 times (the generated export: Patient 12x, Observation 19x, Condition 35x); a gzip
# bomb (zeros, one short line repeated) about 1000 times, the most deflate gives. 100 refuses a bomb within a tenth
# of what it would expand to and leaves real files three times the room they need. A small file may always give
# MIN_GZIP_ALLOWANCE, so that a few highly repetitive lines are never refused.
MAX_GZIP_RATIO = 100
MIN_GZIP_ALLOWANCE = 4 * MIB
# The problems listed in the outputs; the rest are counted. A task keeps at most its share of them (and never fewer
# than PROBLEMS_PER_TASK), so that what reaches the shuffle and the client stays bounded whatever the export holds.
PROBLEMS_LISTED = 10_000
PROBLEMS_PER_TASK = 100
# Problems that lose (part of) a file, whose resource type is then evaluated as could not be read. At most one per
# file, so they are always listed.
FILE_KINDS = ("cut-short", "unreadable", "too-large", "not-regular", "missing-file")
NOT_LISTED = "not-listed"  # the kind of the entry that stands for the problems a task counted without listing


@dataclass(frozen=True)
class Part:
    """A piece of one file: the whole of it (end None) or the lines starting in [start, end)."""

    path: str
    start: int = 0
    end: int | None = None

    @property
    def name(self) -> str:
        return Path(self.path).name


@dataclass(frozen=True)
class Problem:
    """A piece of the export that could not be used, and where it is."""

    kind: str
    file: str
    line: int
    message: str
    count: int = 1  # how many problems the entry stands for: more than one for a NOT_LISTED entry

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class ProblemLog:
    """A task's problems: every file problem (one per file at most), line problems up to `limit`, and a count of
    the rest, so that a flood of bad lines costs no more memory than `limit` problems."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.kept: list[Problem] = []
        self.unlisted = 0
        self._lines = 0

    def append(self, problem: Problem) -> None:
        if problem.kind in FILE_KINDS:
            self.kept.append(problem)
        elif self._lines < self.limit:
            self.kept.append(problem)
            self._lines += 1
        else:
            self.unlisted += problem.count

    def entries(self, file: str) -> list[Problem]:
        """The problems kept, then one NOT_LISTED entry standing for those only counted."""
        if not self.unlisted:
            return self.kept
        return [*self.kept, Problem(NOT_LISTED, file, 0, f"{self.unlisted} more problems not listed", self.unlisted)]


def bucket_of(patient: str, buckets: int) -> int:
    """The bucket of a patient id among `buckets`: the same in every process and on every run (unlike hash())."""
    return zlib.crc32(patient.encode()) % buckets


def task_limit(tasks: int) -> int:
    """The problems one of `tasks` tasks lists: its share of PROBLEMS_LISTED, at least PROBLEMS_PER_TASK."""
    return max(PROBLEMS_PER_TASK, math.ceil(PROBLEMS_LISTED / max(tasks, 1)))


@dataclass
class Export:
    """The partitions of an export, its size, the types with no file (none recorded), the problems found before
    reading (entries refused as not regular files, files the manifest lists that are not there, the server's own
    errors), the types unread from the start (not exported, or a file lost), the type of each file the manifest
    names, and notes for the report."""

    parts: list[Part]
    raw_bytes: int
    missing_types: list[str]
    refused: list[Problem] = field(default_factory=list)
    unread: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # of `unread`: no file, and no telling that means none
    file_types: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    grouped: bool = False  # each part holds whole patients (the store's buckets): no shuffle is needed

    def type_of(self, name: str) -> str | None:
        """The resource type a file holds: as the manifest says, else as its name announces."""
        return self.file_types.get(name) or resource_type_of(name)


def resource_type_of(name: str) -> str | None:
    """The resource type an NDJSON file name announces (Observation.003.ndjson.gz, 1.Observation.ndjson, ...)."""
    if not name.endswith(SUFFIXES):
        return None
    stem = name.split(".ndjson")[0]
    for token in stem.replace("-", ".").replace("_", ".").split("."):
        if token in TYPES:
            return token
    return None


def _refusal(entry: os.DirEntry[str]) -> Problem | None:
    """Why an entry of the export folder is not read: a symbolic link (to a file or a folder, outside the folder or
    in it) is never followed, and an NDJSON name on anything but a regular file is refused."""
    if entry.is_symlink():
        return Problem("not-regular", entry.name, 0, "a symbolic link: not followed (only regular files inside the "
                                                     "export folder are read)")
    if entry.name.endswith(SUFFIXES) and not entry.is_file(follow_symlinks=False):
        return Problem("not-regular", entry.name, 0, "not a regular file: not read")
    return None


def discover(folder: Path, block_bytes: int = BLOCK_BYTES) -> Export:
    """Every NDJSON file of the folder, cut into partitions, read with the folder's manifest.json when there is
    one: the types with no file (none recorded), the types not exported or lost (unread), the server's errors and
    the entries refused (symbolic links, NDJSON names on what is not a regular file)."""
    files: list[Path] = []
    refused: list[Problem] = []
    with os.scandir(folder) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            problem = _refusal(entry)
            if problem is not None:
                refused.append(problem)
            elif entry.name.endswith(SUFFIXES):
                files.append(Path(entry.path))
    notes: list[str] = []
    try:
        manifest = manifest_file.read(folder, open_regular)
    except manifest_file.ManifestError as exc:
        manifest = None
        refused.append(Problem("manifest", manifest_file.NAME, 0, f"not used: {exc}"))
        notes.append(f"{manifest_file.NAME} could not be used ({exc}): a type with no file is read as could not be "
                     f"read, not as none recorded")
    errors = set(manifest.errors) if manifest is not None else set()
    data = [p for p in files if p.name not in errors]
    refused.extend(_server_errors([p for p in files if p.name in errors]))
    parts, raw = _partitions(data, block_bytes)
    file_types = {name: kind for kind, name in manifest.outputs} if manifest is not None else {}
    present = {p.name for p in data} | {p.file for p in refused}
    unread: set[str] = set()
    for kind, name in manifest.outputs if manifest is not None else []:
        if name not in present:
            refused.append(Problem("missing-file", name, 0, f"listed in {manifest_file.NAME} as {kind} but not in "
                                                            f"the folder: its resources are lost"))
            if kind in TYPES:
                unread.add(kind)
    # A refused file's type was not read, which is not the same as none recorded: it is not missing.
    announced = {file_types.get(name) or resource_type_of(name) for name in present}
    without = [t for t in TYPES if t not in announced]
    if manifest is None and not any(p.kind == "manifest" for p in refused):
        notes.append(f"no {manifest_file.NAME} in the folder: a type with no file is read as none recorded")
        return Export(parts, raw, without, refused, sorted(unread), [], file_types, notes)
    if manifest is None:  # unusable: what a missing file means is unknown
        return Export(parts, raw, [], refused, sorted(unread | set(without)), without, file_types, notes)
    asked = manifest.asked
    not_exported = [t for t in without if asked is not None and t not in asked]
    notes.extend(f"{t} was not asked for ({manifest_file.NAME}: _type of the request): not exported, so every row "
                 f"says {t} could not be read" for t in not_exported)
    missing = [t for t in without if t not in not_exported]
    return Export(parts, raw, missing, refused, sorted(unread | set(not_exported)), not_exported, file_types, notes)


def _partitions(files: list[Path], block_bytes: int) -> tuple[list[Part], int]:
    """A gzip file is one partition; a plain file is cut into byte ranges. With the raw size they stand for."""
    parts: list[Part] = []
    raw = 0
    for path in files:
        size = path.stat().st_size
        if path.name.endswith(".gz"):
            parts.append(Part(str(path)))
            raw += size * GZIP_RATIO
            continue
        raw += size
        for start in range(0, max(size, 1), block_bytes):
            end = start + block_bytes
            parts.append(Part(str(path), start, end if end < size else None))
    return parts, raw


def _server_errors(files: list[Path]) -> list[Problem]:
    """The issues of the server's error files (OperationOutcome NDJSON), each where it is, up to the listed cap."""
    log = ProblemLog(PROBLEMS_LISTED)
    for path in files:
        part = Part(str(path))
        for number, line in lines(part, log):
            outcome = _json_object(line)
            if outcome is None:
                if line is not None and line.strip():
                    log.append(Problem("malformed", part.name, number, "not an OperationOutcome"))
                continue
            for issue in outcome.get("issue") or [] if isinstance(outcome.get("issue"), list) else []:
                log.append(Problem("export-error", part.name, number, _issue_text(issue)))
    return log.entries(manifest_file.NAME) if log.unlisted else log.kept


def _json_object(line: bytes | None) -> dict[str, Any] | None:
    if line is None or not line.strip():
        return None
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) and value.get("resourceType") == "OperationOutcome" else None


def _issue_text(issue: Any) -> str:
    """What the server said of one issue: its severity, code and text, at most 300 characters."""
    if not isinstance(issue, dict):
        return "an issue that is not an object"
    details = issue.get("details")
    text = issue.get("diagnostics") or (details.get("text") if isinstance(details, dict) else None) or ""
    words = f"the server reported {issue.get('severity', '?')} ({issue.get('code', '?')})"
    return (f"{words}: {text}" if isinstance(text, str) and text else words)[:300]


class NotRegular(OSError):
    """A path that is not a regular file: a symbolic link, a FIFO, a device."""


def open_regular(path: str) -> BinaryIO:
    """The file for reading if it is a regular file, checked on the open file itself: a symbolic link put in its
    place after discover() is not followed (O_NOFOLLOW), and a FIFO is opened without waiting for a writer."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotRegular(exc.errno, "a symbolic link: not followed") from exc
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotRegular(errno.EINVAL, "not a regular file: not read")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


class LineSource(Protocol):
    def readline(self, size: int = -1, /) -> bytes: ...

    def tell(self) -> int: ...


def bounded_lines(handle: LineSource, stop: int | None = None) -> Iterator[bytes | None]:
    """Each line that starts before byte `stop` (every line without it), or None for a line longer than
    MAX_LINE_BYTES, which is then read on to its end a chunk at a time and dropped: no line is ever held whole."""
    while stop is None or handle.tell() < stop:
        line = handle.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        if len(line) <= MAX_LINE_BYTES or line.endswith(b"\n"):
            yield line
            continue
        yield None
        _skip_line(handle)


def _skip_line(handle: LineSource, stop: int | None = None) -> None:
    """Read on to the end of the current line, a chunk at a time, or to byte `stop` if that comes first."""
    while stop is None or handle.tell() < stop:
        piece = handle.readline(MAX_LINE_BYTES)
        if not piece or piece.endswith(b"\n"):
            return


def _plain_lines(part: Part) -> Iterator[tuple[int, bytes | None]]:
    with open_regular(part.path) as handle:
        number = 1
        if part.start > 0:
            number += _count_newlines(handle, part.start - 1)
            handle.seek(part.start - 1)
            _skip_line(handle, part.end)  # the rest of a line owned by the previous part (or just its newline)
            number += 1
        for line in bounded_lines(handle, part.end):
            yield number, line
            number += 1


def _count_newlines(handle: Any, upto: int) -> int:
    count, done = 0, 0
    while done < upto:
        chunk = handle.read(min(8 * 1024 * 1024, upto - done))
        if not chunk:
            break
        count += chunk.count(b"\n")
        done += len(chunk)
    return count


class Inflated(Exception):
    """A gzip stream gave more than its allowance."""


class Allowance:
    """A gzip stream that raises Inflated once it has given more than `limit` bytes."""

    def __init__(self, stream: gzip.GzipFile, limit: int) -> None:
        self.stream, self.limit, self.given = stream, limit, 0

    def readline(self, size: int = -1, /) -> bytes:
        line = self.stream.readline(size)
        self.given += len(line)
        if self.given > self.limit:
            raise Inflated
        return line

    def tell(self) -> int:
        return self.given


def gzip_allowance(compressed_bytes: int) -> int:
    """What a gzip file of this size may decompress to before it is refused."""
    return max(compressed_bytes * MAX_GZIP_RATIO, MIN_GZIP_ALLOWANCE)


def _gzip_lines(part: Part, problems: ProblemLog) -> Iterator[tuple[int, bytes | None]]:
    number = 0
    line: bytes | None = b""
    with open_regular(part.path) as raw, gzip.GzipFile(fileobj=raw, mode="rb") as stream:
        size = os.fstat(raw.fileno()).st_size
        limit = gzip_allowance(size)
        try:
            for number, line in enumerate(bounded_lines(Allowance(stream, limit)), start=1):
                yield number, line
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            problems.append(Problem("cut-short", part.name, number + 1,
                                    f"gzip stream broken after {number} lines ({exc}); the rest of the file is lost"))
        except Inflated:
            # The line being read when the allowance ran out: the long line being skipped, else the next one.
            at = number if line is None else number + 1
            problems.append(Problem("too-large", part.name, at,
                                    f"decompresses to more than {limit:,} bytes (over {MAX_GZIP_RATIO} times the "
                                    f"file's {size:,}): refused at line {at}, the rest of the file is not read"))


def lines(part: Part, problems: ProblemLog) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes) of the part's lines, None for a line too long to read; a file that cannot be read
    (or is not a regular file) is a problem, not an exception."""
    try:
        yield from (_gzip_lines(part, problems) if part.path.endswith(".gz") else _plain_lines(part))
    except NotRegular as exc:
        problems.append(Problem("not-regular", part.name, 0, exc.strerror or str(exc)))
    except OSError as exc:
        problems.append(Problem("unreadable", part.name, 0, f"cannot read the file: {exc.strerror or exc}"))


def patient_of(resource: dict[str, Any]) -> tuple[str | None, str | None]:
    """(patient id, None) for a resource of the export, or (None, why it belongs to no patient)."""
    kind = resource.get("resourceType")
    if kind == "Patient":
        pid = resource.get("id")
        return (pid, None) if isinstance(pid, str) and pid else (None, "Patient without an id")
    for name in ("subject", "patient"):
        ref = resource.get(name)
        if ref is None:
            continue
        text = ref.get("reference") if isinstance(ref, dict) else None
        parts = text.rstrip("/").split("/") if isinstance(text, str) else []
        if len(parts) >= 2 and parts[-2] == "Patient" and parts[-1]:
            return parts[-1], None
        return None, f"{kind} whose {name} is not a Patient reference ({str(text)[:60]!r})"
    return None, f"{kind} with no subject"


def classify(file: str, number: int, line: bytes) -> tuple[str, str, str | None] | Problem | None:
    """(patient id, resource type, resource id or None) of a line; a Problem when it cannot be read; None for a
    blank line or a resource type the worklist does not read."""
    if not line.strip():
        return None
    try:
        resource = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return Problem("malformed", file, number, f"not JSON: {str(exc).split(':')[0]}")
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        return Problem("malformed", file, number, "not a FHIR resource (no resourceType)")
    if resource["resourceType"] not in TYPES:
        return None
    pid, why = patient_of(resource)
    if pid is None:
        return Problem("no-patient", file, number, why or "no patient")
    rid = resource.get("id")
    return pid, resource["resourceType"], rid if isinstance(rid, str) and rid else None


def read_part(part: Part, limit: int = PROBLEMS_LISTED, keys: bool = False) -> dict[str, list[Any]]:
    """The part's usable lines as columns (patient, file, line, resource, and with `keys` the resource's type and
    id, None when it has none), its problems (up to `limit` line problems, then a count) as rows keyed by
    PROBLEM_KEY with the problem as JSON in `resource`."""
    columns: dict[str, list[Any]] = {"patient": [], "file": [], "line": [], "resource": []}
    if keys:
        columns.update(type=[], id=[])
    problems = ProblemLog(limit)
    name = part.name
    for number, line in lines(part, problems):
        if line is None:
            problems.append(Problem("too-long", name, number, f"a line of more than {MAX_LINE_BYTES // MIB} MiB, "
                                                              f"far more than any resource: not read"))
            continue
        found = classify(name, number, line)
        if found is None:
            continue
        if isinstance(found, Problem):
            problems.append(found)
            continue
        columns["patient"].append(found[0])
        columns["file"].append(name)
        columns["line"].append(number)
        columns["resource"].append(line.decode("utf-8", "replace").rstrip("\r\n"))
        if keys:
            columns["type"].append(found[1])
            columns["id"].append(found[2])
    for problem in problems.entries(name):
        columns["patient"].append(PROBLEM_KEY)
        columns["file"].append(problem.file)
        columns["line"].append(problem.line)
        columns["resource"].append(orjson.dumps(problem.as_dict()).decode())
        if keys:
            columns["type"].append(None)
            columns["id"].append(None)
    return columns
