"""Webhook signatures: HMAC-SHA256 compared in constant time, and the digest of what was signed."""

from __future__ import annotations

import base64
import hashlib
import hmac


def hmac_sha256(secret: str | bytes, message: bytes) -> bytes:
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return hmac.new(key, message, hashlib.sha256).digest()


def signature_base64(secret: str | bytes, message: bytes) -> str:
    """Base64 of HMAC-SHA256 (Zendesk's webhook signature)."""
    return base64.b64encode(hmac_sha256(secret, message)).decode("ascii")


def signature_hex(secret: str | bytes, message: bytes) -> str:
    """Lower-case hex of HMAC-SHA256 (Jira's ``X-Hub-Signature: sha256=...``)."""
    return hmac_sha256(secret, message).hex()


def signatures_match(expected: str, given: str | None) -> bool:
    """Constant-time comparison; a missing signature never matches."""
    if not given:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), given.strip().encode("utf-8"))


def content_digest(*parts: bytes) -> str:
    """The hex SHA-256 of the signed content, ``parts`` in the order they were signed."""
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part)
    return hasher.hexdigest()
