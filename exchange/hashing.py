"""Server-side keying of transport hashes (pure; no Django).

A partner sends SHA-256(normalised value) as 64 hex characters: the transport hash. A plain SHA-256 of a
phone number or email is reversible by enumeration, so the exchange never stores it. It stores

    token_v1 = HMAC-SHA256(pepper_1, kind ":" transport_hash)

and, after rotations, chains: token_vN = HMAC-SHA256(pepper_N, token_v(N-1)). Chaining lets a rotation re-key
every stored token without asking partners to resubmit, while every version's pepper stays out of the
database (environment or file only).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping


def _hmac_hex(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode("ascii"), hashlib.sha256).hexdigest()


def rekey(token: str, pepper: bytes) -> str:
    """One rotation step: the token under the next pepper version."""
    return _hmac_hex(pepper, token)


def keyed_token(kind: str, transport_hash: str, peppers: Mapping[int, bytes], version: int) -> str:
    """The stored token of (kind, transport hash) at pepper `version` (chained from the lowest version)."""
    versions = sorted(v for v in peppers if v <= version)
    if not versions or versions[-1] != version:
        raise KeyError(f"pepper version {version} is not configured (EXCHANGE_PEPPERS)")
    token = _hmac_hex(peppers[versions[0]], f"{kind}:{transport_hash}")
    for v in versions[1:]:
        token = rekey(token, peppers[v])
    return token


def keyed_tokens(pairs: list[tuple[str, str]], peppers: Mapping[int, bytes], version: int) -> list[str]:
    """keyed_token for many (kind, hash) pairs, without re-deriving the chain per pair."""
    versions = sorted(v for v in peppers if v <= version)
    if not versions or versions[-1] != version:
        raise KeyError(f"pepper version {version} is not configured (EXCHANGE_PEPPERS)")
    first = hmac.new(peppers[versions[0]], digestmod=hashlib.sha256)
    later = [peppers[v] for v in versions[1:]]
    out = []
    for kind, transport_hash in pairs:
        mac = first.copy()
        mac.update(f"{kind}:{transport_hash}".encode("ascii"))
        token = mac.hexdigest()
        for pepper in later:
            token = rekey(token, pepper)
        out.append(token)
    return out


def default_key_version(peppers: Mapping[int, bytes]) -> int:
    """The pepper version stored tokens use when no KeyState row records it: the highest configured one.

    This is the one rule for that fallback (migration 0002, `KeyState.objects.current_version` and
    `rotate_pepper` all use it). The highest, not the lowest: migration 0002 creates the row with it, so a
    database without the row behaves exactly like a freshly migrated one, new tokens are keyed with the
    newest pepper (as new submission digests are), and `rotate_pepper` then has nothing to re-key instead of
    "re-keying" tokens from an old version they were never stored under.
    """
    if not peppers:
        raise KeyError("no pepper version is configured (EXCHANGE_PEPPERS)")
    return max(peppers)
