"""Flow state carried in the metadata of the bot's messages, signed like Flask's session.

Poe stores the last `data` event of an answer with that bot message and sends it back on
the message in later requests, so a flow needs no server store: any replica answers any
turn. The state is `1.<payload>.<signature>`: the version, the compact JSON payload in
base64url, and an HMAC-SHA256 (truncated to 128 bits) over both, keyed per bot.

Reading never raises: a missing, forged, truncated, oversized, foreign or malformed state
is None plus the reason, and the conversation starts fresh (the caller logs the reason).
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import hmac
import json
import os
from dataclasses import dataclass, field
from typing import Any

VERSION = "1"
# The most metadata a bot writes or reads. Poe documents no limit; every request carries
# the whole visible conversation, so the state stays small: about 3 KiB of vars.
MAX_METADATA = 4096
SALT = b"engine-flow-state\x00"
SIGNATURE_BYTES = 16
# Signs state for bots with neither ENGINE_STATE_SECRET nor an access key: flows then work
# within one process only (a restart or another replica starts them afresh).
_PROCESS_SECRET = os.urandom(32)
# Made once: `json.dumps` with these options builds an encoder per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
# base64url from the standard alphabet and back (what `base64.urlsafe_b64*` do, in fewer calls).
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")


@dataclass(frozen=True)
class FlowState:
    """Where a flow stands: its name, step index, the flow's digest, vars and tries."""

    flow: str
    step: int
    digest: str  # of the flow's definition: an edited flow does not resume old state
    vars: dict[str, Any] = field(default_factory=dict)
    tries: int = 0  # answers already refused at this step


class StateTooLarge(Exception):
    """The state would not fit in MAX_METADATA; `size` is what it would take."""

    def __init__(self, size: int) -> None:
        super().__init__(f"the flow state would take {size:,} bytes (at most {MAX_METADATA:,})")
        self.size = size


def state_key(bot: str, secret: str | None, access_key: str | None) -> bytes:
    """The bot's signing key: from ENGINE_STATE_SECRET, else its access key, else a
    per-process secret; the bot's name is mixed in, so no bot accepts another's state."""
    if secret:
        base = secret.encode()
    elif access_key:
        base = access_key.encode()
    else:
        base = _PROCESS_SECRET
    return hmac.new(base, SALT + bot.encode(), hashlib.sha256).digest()


def encode(state: FlowState, bot: str, key: bytes, conversation: str = "") -> str:
    """The signed metadata, bound to the bot and the conversation; StateTooLarge when it
    would pass MAX_METADATA."""
    payload = {
        "b": bot,
        "c": conversation,
        "f": state.flow,
        "s": state.step,
        "d": state.digest,
        "v": state.vars,
        "t": state.tries,
    }
    signed = f"{VERSION}.{_b64(_ENCODER.encode(payload).encode())}"
    metadata = f"{signed}.{_b64(_sign(key, signed))}"
    if len(metadata) > MAX_METADATA:
        raise StateTooLarge(len(metadata))
    return metadata


def decode(
    metadata: str | None, bot: str, key: bytes, conversation: str = ""
) -> tuple[FlowState | None, str | None]:
    """The state and None, or None and why it was refused (None too when there was none).

    A state signed in another conversation is refused too: one copied into a new chat (or
    another user's) does not resume there.
    """
    if not metadata:
        return None, None
    if len(metadata) > MAX_METADATA:
        return None, f"the state is too large ({len(metadata):,} characters)"
    parts = metadata.split(".")
    if len(parts) != 3 or parts[0] != VERSION:
        return None, "the state is not in this engine's format (version 1)"
    signed = f"{parts[0]}.{parts[1]}"
    try:
        signature = _unb64(parts[2])
    except (ValueError, binascii.Error):
        return None, "the state is truncated or malformed"
    # The signature first: nothing an unsigned state holds is parsed.
    if not hmac.compare_digest(signature, _sign(key, signed)):
        reason = "the state's signature does not match (forged, cut short, or signed with "
        return None, reason + "another key)"
    try:
        payload = json.loads(_unb64(parts[1]).decode())  # UTF-8, as `encode` wrote it
    except (ValueError, binascii.Error, RecursionError):
        return None, "the state is malformed"
    return _state_of(payload, bot, conversation)


def _state_of(payload: Any, bot: str, conversation: str) -> tuple[FlowState | None, str | None]:
    if not isinstance(payload, dict):
        return None, "the state is malformed"
    if payload.get("b") != bot:
        return None, f"the state belongs to another bot ({payload.get('b')!r})"
    if payload.get("c") != conversation:
        return None, "the state belongs to another conversation"
    flow, step, digest = payload.get("f"), payload.get("s"), payload.get("d")
    values, tries = payload.get("v"), payload.get("t")
    fields_ok = isinstance(flow, str) and isinstance(digest, str) and isinstance(values, dict)
    numbers_ok = type(step) is int and type(tries) is int and step >= 0 and tries >= 0
    if not (fields_ok and numbers_ok):
        return None, "the state is malformed"
    assert isinstance(flow, str) and isinstance(digest, str) and isinstance(values, dict)
    assert isinstance(step, int) and isinstance(tries, int)
    return FlowState(flow, step, digest, values, tries), None


def _sign(key: bytes, signed: str) -> bytes:
    """HMAC-SHA256, from the key's two padded hashes made once: 0.8 µs where hmac.digest
    takes 4.8 µs (OpenSSL 3 sets up its HMAC on each call); the test checks they agree."""
    inner, outer = _pads(key)
    digest = inner.copy()
    digest.update(signed.encode("utf-8", "surrogatepass"))  # any text, never an exception
    result = outer.copy()
    result.update(digest.digest())
    signature: bytes = result.digest()
    return signature[:SIGNATURE_BYTES]


@functools.lru_cache(maxsize=1024)
def _pads(key: bytes) -> tuple[Any, Any]:
    block = (hashlib.sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
    inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in block))
    outer = hashlib.sha256(bytes(byte ^ 0x5C for byte in block))
    return inner, outer


def _b64(data: bytes) -> str:
    encoded = binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE)
    return encoded.rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    """ValueError (binascii.Error is one) for text that is not base64url."""
    padded = text.encode("ascii") + b"=" * (-len(text) % 4)
    return binascii.a2b_base64(padded.translate(_FROM_URLSAFE))
