"""Reading a Bulk Data export: its NDJSON files (split, gzipped) in partitions, each line keyed by patient.

A partition is a whole gzip file (a gzip stream cannot be entered in the middle) or a byte range of a plain
file; a byte range owns the lines that start in it. Every line keeps its file and line number, so a problem
found later (in the shuffle's output) can still be reported where it is.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

TYPES = ("Patient", "Observation", "Condition", "ServiceRequest", "Goal", "CarePlan")
SUFFIXES = (".ndjson", ".ndjson.gz")
BLOCK_BYTES = 32 * 1024 * 1024
GZIP_RATIO = 8  # what a gzip file of NDJSON is expected to hold, for sizing the shuffle's output
PROBLEM_KEY = ""  # the shuffle key of problem lines: they travel together to one partition


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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Export:
    """The partitions of an export, its size, and what is missing from it."""

    parts: list[Part]
    raw_bytes: int
    missing_types: list[str]


def resource_type_of(name: str) -> str | None:
    """The resource type a file name announces (Observation.003.ndjson.gz, 1.Observation.ndjson, ...)."""
    stem = name.split(".ndjson")[0]
    for token in stem.replace("-", ".").replace("_", ".").split("."):
        if token in TYPES:
            return token
    return None


def discover(folder: Path, block_bytes: int = BLOCK_BYTES) -> Export:
    """Every NDJSON file of the folder, cut into partitions; the resource types no file name announces."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(SUFFIXES))
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
    announced = {resource_type_of(p.name) for p in files}
    return Export(parts, raw, [t for t in TYPES if t not in announced])


def _plain_lines(part: Part) -> Iterator[tuple[int, bytes]]:
    with open(part.path, "rb") as handle:
        number = 1
        if part.start > 0:
            number += _count_newlines(handle, part.start - 1)
            handle.seek(part.start - 1)
            handle.readline()  # the rest of a line owned by the previous part (or just its newline)
            number += 1
        while part.end is None or handle.tell() < part.end:
            line = handle.readline()
            if not line:
                return
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


def _gzip_lines(part: Part, problems: list[Problem]) -> Iterator[tuple[int, bytes]]:
    number = 0
    try:
        with gzip.open(part.path, "rb") as handle:
            for number, line in enumerate(handle, start=1):
                yield number, line
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        problems.append(Problem("cut-short", part.name, number + 1,
                                f"gzip stream broken after {number} lines ({exc}); the rest of the file is lost"))


def lines(part: Part, problems: list[Problem]) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) of the part's lines; an unreadable file is a problem, not an exception."""
    try:
        yield from (_gzip_lines(part, problems) if part.path.endswith(".gz") else _plain_lines(part))
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


def classify(file: str, number: int, line: bytes) -> tuple[str, str] | Problem | None:
    """(patient id, resource type) of a line; a Problem when it cannot be read; None for a blank line or a
    resource type the worklist does not read."""
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
    return pid, resource["resourceType"]


def read_part(part: Part) -> dict[str, list[Any]]:
    """The part's usable lines as columns (patient, file, line, resource), its problems as rows keyed by
    PROBLEM_KEY with the problem as JSON in `resource`."""
    columns: dict[str, list[Any]] = {"patient": [], "file": [], "line": [], "resource": []}
    problems: list[Problem] = []
    name = part.name
    for number, line in lines(part, problems):
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
    for problem in problems:
        columns["patient"].append(PROBLEM_KEY)
        columns["file"].append(problem.file)
        columns["line"].append(problem.line)
        columns["resource"].append(orjson.dumps(problem.as_dict()).decode())
    return columns
