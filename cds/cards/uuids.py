"""Card and suggestion uuids: derived from the hookInstance and the rule, so the same request gives the same
response."""

from __future__ import annotations

import hashlib
import uuid


def card_uuid(hook_instance: str, *parts: str) -> str:
    """str(uuid.uuid5(uuid.NAMESPACE_URL, name)) for a name made of the parts, written without uuid.UUID (whose
    constructor and text cost more than the SHA-1): the same 16 bytes, version 5 and the RFC 4122 variant set."""
    name = "pacing-cds:" + ":".join((hook_instance, *parts))
    digest = bytearray(hashlib.sha1(_URL_NAMESPACE + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


_URL_NAMESPACE = uuid.NAMESPACE_URL.bytes
