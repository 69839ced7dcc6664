"""manifest.json: the Bulk Data status response saved beside the files of an export.

It says what was asked for (the `_type` of its `request`), which file holds which type (`output`), and where the
server put the errors it met (`error`, OperationOutcome NDJSON). With it the worklist can tell a type asked for
with no file (none recorded: Bulk Data writes no file for an empty type) from a type never asked for (not
exported: unknown, so every row says it could not be read), and a file the manifest lists but the folder lacks
(lost: unread) from one that was never written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson

NAME = "manifest.json"
# A status response lists files and errors, a few hundred bytes each: 16 MiB is tens of thousands of files.
MAX_BYTES = 16 * 1024 * 1024


class ManifestError(ValueError):
    """manifest.json is there but cannot be used; the message says why."""


@dataclass(frozen=True)
class Manifest:
    """What manifest.json says, with each file URL reduced to the name of the file in the folder."""

    asked: frozenset[str] | None  # the _type of the request; None when it named none (every type the server has)
    outputs: list[tuple[str, str]] = field(default_factory=list)  # (resource type, file name)
    errors: list[str] = field(default_factory=list)  # file names of OperationOutcome NDJSON
    transaction_time: str | None = None


def parse(raw: bytes) -> Manifest:
    """The manifest's meaning, or ManifestError naming the first thing that does not fit the Bulk Data IG."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ManifestError(f"not JSON ({str(exc).split(':')[0]})") from exc
    if not isinstance(document, dict):
        raise ManifestError("not a JSON object")
    outputs = [(kind, name) for kind, name in _entries(document, "output", required=True)]
    errors = [name for _, name in _entries(document, "error", required=False)]
    request = document.get("request")
    if request is not None and not isinstance(request, str):
        raise ManifestError("request is not a URL")
    time = document.get("transactionTime")
    return Manifest(_asked(request), outputs, errors, time if isinstance(time, str) else None)


def _entries(document: dict[str, Any], key: str, required: bool) -> list[tuple[str, str]]:
    value = document.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list):
        raise ManifestError(f"{key} is not a list")
    entries = []
    for index, entry in enumerate(value):
        if not isinstance(entry, dict) or not isinstance(entry.get("type"), str) \
                or not isinstance(entry.get("url"), str):
            raise ManifestError(f"{key}[{index}] has no type and url")
        entries.append((entry["type"], file_name(entry["url"], f"{key}[{index}]")))
    return entries


def file_name(url: str, where: str) -> str:
    """The last segment of a file URL: the name the file has in the folder (never a path into another folder)."""
    name = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ManifestError(f"{where}.url names no file")
    return name


def _asked(request: str | None) -> frozenset[str] | None:
    """The resource types of the request's _type (comma-separated, possibly repeated); None when it has none."""
    if request is None:
        return None
    values = parse_qs(urlsplit(request).query).get("_type")
    if not values:
        return None
    return frozenset(t.strip() for value in values for t in value.split(",") if t.strip())


def read(folder: Path, open_file: Any) -> Manifest | None:
    """The folder's manifest.json, None when there is none; ManifestError when it cannot be used. `open_file`
    opens a regular file without following a symbolic link."""
    path = folder / NAME
    if not path.exists() and not path.is_symlink():
        return None
    try:
        with open_file(str(path)) as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ManifestError(f"cannot be read ({exc.strerror or exc})") from exc
    if len(raw) > MAX_BYTES:
        raise ManifestError(f"larger than {MAX_BYTES // (1024 * 1024)} MiB")
    return parse(raw)
