"""Which FHIR servers the service may call: an allow-list of URLs compared after normalising the host.

A caller names `fhirServer`; the service would send the caller's token there and fetch from it. Without a list
that is a request forgery tool (internal hosts, cloud metadata, port scans). An entry matches a URL when the
scheme and the host are equal (IP spellings such as 127.1, 2130706433 or 0x7f000001 and IDNs normalised first),
the port is equal when the entry names one, and the path starts with the entry's path. URLs carrying user
information are never allowed.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

# Loopback in every spelling the normaliser produces; the development default.
LOOPBACK_ENTRIES = ("http://127.0.0.1", "https://127.0.0.1", "http://[::1]", "https://[::1]",
                    "http://localhost", "https://localhost")


class NotAllowed(ValueError):
    """A URL that cannot be matched against the allow-list at all (malformed, user information)."""


@dataclass(frozen=True)
class Target:
    """A URL reduced to what the allow-list compares: scheme, normalised host, port, path."""

    scheme: str
    host: str
    port: int | None
    path: str


def normal_host(host: str) -> str:
    """The canonical text of a host: an IP address in its standard form, or a lower-case ASCII (IDNA) name."""
    host = host.strip().rstrip(".").lower()
    if not host:
        raise NotAllowed("no host")
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        pass
    if all(c in "0123456789abcdefx." for c in host):
        try:
            # inet_aton accepts the legacy spellings (127.1, 2130706433, 0x7f000001, 0177.0.0.1) that the
            # socket layer itself resolves; treating them as names would let them slip past the list.
            return str(ipaddress.IPv4Address(socket.inet_aton(host)))
        except OSError:
            pass
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise NotAllowed("host is not a valid name") from exc


def parse_target(url: str) -> Target:
    """The parts of an http(s) URL that the allow-list compares; NotAllowed if it has none or has user info."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise NotAllowed("malformed URL") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NotAllowed("not an http(s) URL")
    if "@" in parts.netloc:
        raise NotAllowed("user information in the URL")
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return Target(parts.scheme, normal_host(parts.hostname), port, path)


def _effective_port(target: Target) -> int:
    return target.port if target.port is not None else (443 if target.scheme == "https" else 80)


@dataclass(frozen=True)
class AllowList:
    """Allowed FHIR server URLs; `allows(url)` is the one test every fhirServer and next link passes."""

    entries: tuple[Target, ...]

    @classmethod
    def parse(cls, urls: tuple[str, ...] | list[str]) -> AllowList:
        """Entries from configuration; ValueError naming an entry that is not a usable URL."""
        entries = []
        for url in urls:
            try:
                entries.append(parse_target(url))
            except NotAllowed as exc:
                raise ValueError(f"{url!r} is not a usable FHIR server URL ({exc})") from exc
        return cls(tuple(entries))

    def allows(self, url: str) -> bool:
        try:
            target = parse_target(url)
        except NotAllowed:
            return False
        return any(self._matches(entry, target) for entry in self.entries)

    @staticmethod
    def _matches(entry: Target, target: Target) -> bool:
        if entry.scheme != target.scheme or entry.host != target.host:
            return False
        if entry.port is not None and _effective_port(entry) != _effective_port(target):
            return False
        return target.path.startswith(entry.path)


@dataclass(frozen=True)
class ServerPolicy:
    """The allow-list in force for a call: its issuer's own, else the service-wide one."""

    default: AllowList = field(default_factory=lambda: AllowList(()))
    by_issuer: dict[str, AllowList] = field(default_factory=dict)

    def for_issuer(self, iss: str | None) -> AllowList:
        return self.by_issuer.get(iss, self.default) if iss is not None else self.default
