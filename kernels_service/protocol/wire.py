"""The ZeroMQ wire format of Jupyter messages: identities, delimiter, HMAC signature, parts.

See the Jupyter messaging spec, "The Wire Protocol". Signing and checking is done here,
with the kernel's key, so that clients never need (or get) it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

from kernels_service.protocol.errors import ProtocolError
from kernels_service.protocol.message import KernelMessage

DELIMITER = b"<IDS|MSG>"


class Signer:
    """HMAC signing of message parts with a kernel's key and signature scheme. One signer
    serves every socket of a kernel's relay, so that a kernel that comes back with a new
    key (a restarted container kernel) is followed with one `use_key`."""

    def __init__(self, key: bytes, scheme: str = "hmac-sha256"):
        self._keyed: Any = None
        self.use_key(key, scheme)

    def use_key(self, key: bytes, scheme: str = "hmac-sha256") -> None:
        """Sign and verify with `key` from now on."""
        if not scheme.startswith("hmac-"):
            raise ValueError(f"unsupported signature scheme {scheme!r}")
        digest = getattr(hashlib, scheme[len("hmac-") :])
        # keyed once: each message copies this state rather than processing the key again
        self._keyed = hmac.new(key, digestmod=digest) if key else None

    def sign(self, parts: Sequence[bytes]) -> bytes:
        """The hex signature of the four JSON parts (empty when the key is empty)."""
        if self._keyed is None:
            return b""
        mac = self._keyed.copy()
        for part in parts:
            mac.update(part)
        return mac.hexdigest().encode()

    def verify(self, signature: bytes, parts: Sequence[bytes]) -> bool:
        """True if the signature matches, compared in constant time."""
        return hmac.compare_digest(signature, self.sign(parts))


def to_frames(message: KernelMessage, signer: Signer) -> list[bytes]:
    """The frames a DEALER sends for a message (the socket adds its own identity)."""
    return [DELIMITER, signer.sign(message.parts), *message.parts, *message.buffers]


def from_frames(channel: str, frames: Sequence[bytes], signer: Signer) -> KernelMessage:
    """Parse received frames, check the signature, return the message without identities."""
    try:
        start = list(frames).index(DELIMITER) + 1
    except ValueError:
        raise ProtocolError("no <IDS|MSG> delimiter in message") from None
    if len(frames) < start + 5:
        raise ProtocolError("message has fewer than 5 frames after the delimiter")
    signature = bytes(frames[start])
    parts = [bytes(frame) for frame in frames[start + 1 : start + 5]]
    if not signer.verify(signature, parts):
        raise ProtocolError("bad message signature")
    buffers = [bytes(frame) for frame in frames[start + 5 :]]
    return KernelMessage(channel, parts, buffers)
