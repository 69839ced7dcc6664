"""A request body read with its Observation search Bundles decoded straight into typed records.

Most of a hook call's body is Observations, and most of each Observation is elements the readers never look at
(category, display texts, the unit's system). Read into dicts, every one of them is allocated and later freed.
Here the prefetch keys a service fills from an Observation search are decoded with msgspec into Structs that hold
only what the one-pass reader (`RecordBuilder.one_pass_typed`) and the prefetch checks use; msgspec skips the rest
while still checking that it is well-formed JSON.

A key is decoded this way only when all of it fits: a Bundle of Observations, each element that is read having the
JSON type it should. Anything else (an OperationOutcome entry, a `link` to further pages, a status that is not a
string, a value that is not a number, invalid UTF-8 anywhere in the body) leaves that key, or the whole body, to
the general path: `orjson`, dicts and the general readers, exactly as before. The same holds later: an Observation
the one-pass reader does not take, or a Bundle whose subjects are not plainly the patient's, sends the key's
Bundle back to dicts (`TypedBundle.plain`), so every reading, reason and message is the general path's.

One difference is deliberate: a number beyond the range of a double in an element that is never read (say a
reference range of 1e400) is skipped, not refused; in an element that is read it is refused as before.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

import msgspec
import orjson
from msgspec import UNSET, Raw, Struct, UnsetType

from cds.errors import CdsError

# What a failed typed decode can raise: malformed or mistyped JSON, or nesting deeper than the interpreter's limit
# (orjson refuses nesting over 1,024 levels; msgspec stops sooner, so the general path then says why).
NOT_TYPED = (msgspec.DecodeError, RecursionError)


class Coding(Struct, gc=False):
    system: str | UnsetType = UNSET
    code: str | UnsetType = UNSET


class Concept(Struct, gc=False):
    coding: list[Coding] | UnsetType = UNSET


class Quantity(Struct, gc=False):
    value: float | UnsetType = UNSET  # a JSON integer is read as its float, as the readers do
    unit: str | UnsetType = UNSET
    code: str | UnsetType = UNSET


class Reference(Struct, gc=False):
    reference: str | UnsetType = UNSET


class Meta(Struct, gc=False):
    source: str | UnsetType = UNSET


class Component(Struct, gc=False):
    code: Concept | UnsetType = UNSET
    valueQuantity: Quantity | UnsetType = UNSET


class Observation(Struct, gc=False):
    """The elements of an Observation that the one-pass reader and the prefetch checks read; `hasMember` and
    `effectivePeriod` only for their presence (a panel, a day's steps over a period: the general reader's). An
    Observation read as a dict reaches the one-pass reader as one of these too (msgspec.convert)."""

    resourceType: Literal["Observation"]
    id: str | UnsetType = UNSET
    status: str | UnsetType = UNSET
    code: Concept | UnsetType = UNSET
    subject: Reference | UnsetType = UNSET
    effectiveDateTime: str | UnsetType = UNSET
    effectivePeriod: Raw | UnsetType = UNSET
    valueQuantity: Quantity | UnsetType = UNSET
    component: list[Component] | UnsetType = UNSET
    hasMember: Raw | UnsetType = UNSET
    device: Reference | UnsetType = UNSET
    performer: list[Reference] | UnsetType = UNSET
    meta: Meta | UnsetType = UNSET


class Entry(Struct, gc=False):
    resource: Observation


class SearchBundle(Struct, gc=False):
    resourceType: Literal["Bundle"]
    entry: list[Entry] | UnsetType = UNSET
    link: Raw | UnsetType = UNSET  # further pages: the general path follows them


class WholeBody:
    """A request body parsed by the general path at most once, for the typed keys that must go back to dicts."""

    __slots__ = ("body", "parsed")

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.parsed: Any = None

    def prefetch(self, key: str) -> Any:
        if self.parsed is None:
            self.parsed = parse(self.body)  # the body's JSON error, if any, in the words of the general path
        return self.parsed["prefetch"][key]


class TypedBundle:
    """One prefetch key's Observation search, decoded typed, with the bytes it came from for `plain`: its own JSON
    text, or (read in one pass with the whole request) the whole body and the key."""

    __slots__ = ("bundle", "piece", "body", "key", "whole")

    def __init__(self, bundle: SearchBundle, piece: Raw | None, body: bytes, key: str = "",
                 whole: WholeBody | None = None) -> None:
        self.bundle, self.piece, self.body, self.key, self.whole = bundle, piece, body, key, whole

    def observations(self) -> list[Observation]:
        return [] if self.bundle.entry is UNSET else [entry.resource for entry in self.bundle.entry]

    def plain(self) -> dict[str, Any]:
        """The same Bundle as the general path reads it (dicts), or the body's JSON error as read_json gives it."""
        if self.piece is None:  # read in one pass with the whole request: no text of its own
            assert self.whole is not None
            return self.whole.prefetch(self.key)
        try:
            return orjson.loads(memoryview(self.piece))
        except orjson.JSONDecodeError:
            parse(self.body)  # raises the error of the whole body, in the words of the general path
            raise


class Request(Struct, forbid_unknown_fields=True, gc=False):
    """A hook request's members, each kept as its JSON text, and its prefetch by key: the body read in one pass.
    Another member at the top (a vendor's own) is refused, and the body is then read member by member."""

    hook: Raw | UnsetType = UNSET
    hookInstance: Raw | UnsetType = UNSET
    fhirServer: Raw | UnsetType = UNSET
    fhirAuthorization: Raw | UnsetType = UNSET
    context: Raw | UnsetType = UNSET
    prefetch: dict[str, Raw] | UnsetType = UNSET
    extension: Raw | UnsetType = UNSET


_REQUEST = msgspec.json.Decoder(Request)
_MEMBERS = Request.__struct_fields__
_FIELDS = msgspec.json.Decoder(dict[str, Raw])
_SEARCH = msgspec.json.Decoder(SearchBundle)


def not_json(exc: orjson.JSONDecodeError) -> CdsError:
    return CdsError(400, f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")


def parse(raw: bytes) -> Any:
    """The body as the general path reads it: orjson, CdsError 400 if it is not JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise not_json(exc) from exc


def decode_request(raw: bytes, typed_keys: frozenset[str], keys: frozenset[str] = frozenset()) -> Any:
    """The JSON of a request body; the prefetch keys named in `typed_keys` that hold an Observation search Bundle
    come as TypedBundle, everything else as `parse` reads it (and any error is `parse`'s). Given the service's
    prefetch `keys`, a request of the spec's members and those keys only is read in one pass (`_one_pass`)."""
    if not typed_keys:
        return parse(raw)
    try:
        raw.decode()  # msgspec does not look inside the strings it skips; orjson refuses invalid UTF-8 anywhere
    except UnicodeDecodeError:
        return parse(raw)
    if keys:
        try:
            return _one_pass(raw, typed_keys, keys)
        except NOT_TYPED:
            pass  # another shape: member by member, below
        except orjson.JSONDecodeError:
            return parse(raw)
    try:
        fields, prefetch = _members(raw)
    except (*NOT_TYPED, UnicodeDecodeError):
        return parse(raw)
    try:
        return {name: orjson.loads(memoryview(piece)) if name != "prefetch" or prefetch is None else
                {key: _typed(value, raw) if key in typed_keys else orjson.loads(memoryview(value))
                 for key, value in prefetch.items()}
                for name, piece in fields.items()}
    except orjson.JSONDecodeError:
        return parse(raw)


def _members(raw: bytes) -> tuple[dict[str, Raw], dict[str, Raw] | None]:
    """The body's members as JSON text (the spec's in the spec's order), and its prefetch's keys as JSON text in
    the body's order; one pass over a request of the spec's members only."""
    try:
        request = _REQUEST.decode(raw)
    except msgspec.DecodeError:
        fields = _FIELDS.decode(raw)
        return fields, _FIELDS.decode(fields["prefetch"]) if "prefetch" in fields else None
    fields = {name: getattr(request, name) for name in request.__struct_fields__
              if getattr(request, name) is not UNSET}
    return fields, fields.get("prefetch")  # type: ignore[return-value]


@lru_cache(maxsize=64)
def _one_pass_decoder(typed_keys: frozenset[str], keys: frozenset[str]) -> tuple[msgspec.json.Decoder[Any],
                                                                                 tuple[str, ...]]:
    """A decoder of a request of the spec's members whose prefetch holds only these keys: the typed ones as search
    Bundles (or null), the others as JSON text. Another member or key is refused (the caller then reads the body
    member by member). The keys, in the order of the prefetch Struct's fields."""
    names = tuple(sorted(keys | typed_keys))
    prefetch = msgspec.defstruct(
        "Prefetch", [(f"k{i}", (SearchBundle | None if key in typed_keys else Raw) | UnsetType, UNSET)
                     for i, key in enumerate(names)],
        rename={f"k{i}": key for i, key in enumerate(names)}, forbid_unknown_fields=True, gc=False)
    request = msgspec.defstruct(
        "OnePassRequest", [(name, (prefetch if name == "prefetch" else Raw) | UnsetType, UNSET) for name in _MEMBERS],
        forbid_unknown_fields=True, gc=False)
    return msgspec.json.Decoder(request), names


def _one_pass(raw: bytes, typed_keys: frozenset[str], keys: frozenset[str]) -> dict[str, Any]:
    """The body read in one pass: members and untyped keys by orjson from their JSON text, typed keys as
    TypedBundle; a typed key with further pages as dicts, from the whole body parsed once."""
    decoder, names = _one_pass_decoder(typed_keys, keys)
    request = decoder.decode(raw)
    whole = WholeBody(raw)
    out: dict[str, Any] = {}
    for name in _MEMBERS:
        value = getattr(request, name)
        if value is UNSET:
            continue
        if name != "prefetch":
            out[name] = orjson.loads(memoryview(value))
            continue
        prefetch: dict[str, Any] = {}
        for i, key in enumerate(names):
            item = getattr(value, f"k{i}")
            if item is UNSET:
                continue
            if key not in typed_keys:
                prefetch[key] = orjson.loads(memoryview(item))
            elif item is None or item.link is not UNSET:
                prefetch[key] = None if item is None else whole.prefetch(key)
            else:
                prefetch[key] = TypedBundle(item, None, raw, key, whole)
        out[name] = prefetch
    return out


def _typed(piece: Raw, body: bytes) -> Any:
    """A TypedBundle of the key's JSON text, or its dicts when it does not fit or has further pages."""
    try:
        bundle = _SEARCH.decode(piece)
        if bundle.link is UNSET:
            return TypedBundle(bundle, piece, body)
    except NOT_TYPED:
        pass
    return orjson.loads(memoryview(piece))
