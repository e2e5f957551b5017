"""A websocket session handed over between replicas when one drains (SIGTERM).

The draining replica closes its websocket clients with 1012 (they come back through the
balancer, to another replica) and keeps each keyed session (the client's `session_id`)
open, keeping what its client misses message by message: the execute replies to requests
it relayed, and iopub. It writes in the shared store which sessions it holds, and where.
The replica the client comes back to first subscribes to the kernel's iopub itself, then
takes what the drained one kept (`POST <base>api/kernels/<id>/handover`): the client gets
that first, then what arrived here meanwhile, minus what it already got (by each message's
header: the same publication has the same bytes), so every message arrives once, in order.

This module is the messages' codec for that request and the request itself; the relay
keeps the sessions (relay/kernel.py) and the store says where they are.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from kernels_service.protocol import KernelMessage, ProtocolError
from kernels_service.protocol.message import decode_json_part

#: The channels a handed-over message may be of.
CHANNELS = ("shell", "iopub", "stdin", "control")
#: Seconds the request for a handed-over session may take (the draining replica waits up
#: to relay.hub.HANDOVER_TAKE for replies still owed).
TAKE_TIMEOUT = 12.0
#: The header of a request between replicas (web/forwarding.py): never forwarded again.
FORWARDED_BY = "X-Kernels-Forwarded-By"


class HandoverError(Exception):
    """The hand-over could not be taken: its body is not one this codec reads, or the
    replica that holds it did not answer."""


def encode_messages(messages: list[KernelMessage]) -> bytes:
    """The messages as the hand-over's JSON body."""
    return json.dumps(
        {
            "messages": [
                {
                    "channel": message.channel,
                    "parts": [base64.b64encode(part).decode() for part in message.parts],
                    "buffers": [base64.b64encode(buffer).decode() for buffer in message.buffers],
                }
                for message in messages
            ]
        }
    ).encode()


def decode_messages(body: bytes) -> list[KernelMessage]:
    """The messages of a hand-over's JSON body; HandoverError for anything else."""
    try:
        document = json.loads(body)
        items = document["messages"]
        if not isinstance(items, list):
            raise HandoverError("'messages' is not a list")
        return [decode_message(item) for item in items]
    except HandoverError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, ProtocolError) as error:
        raise HandoverError(f"not a hand-over body: {type(error).__name__}: {error}") from None


def decode_message(item: Any) -> KernelMessage:
    if not isinstance(item, dict) or item.get("channel") not in CHANNELS:
        raise HandoverError("a message without a known channel")
    parts, buffers = item.get("parts"), item.get("buffers", [])
    if not isinstance(parts, list) or not isinstance(buffers, list):
        raise HandoverError("a message's parts and buffers must be lists")
    if len(parts) != 4:
        raise HandoverError(f"a message has 4 JSON parts, got {len(parts)}")
    raw = [unbase64(part) for part in parts]
    for part, what in zip(raw, ("header", "parent_header", "metadata", "content"), strict=True):
        decode_json_part(part, what)  # a client's codec reads each part: ProtocolError if it cannot
    return KernelMessage(item["channel"], raw, [unbase64(buffer) for buffer in buffers])


def unbase64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise HandoverError("a part that is not base64 text")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise HandoverError("a part that is not base64 text") from None


async def take_handover(address: str, kernel_id: str, key: str, token: str, replica: str) -> list[KernelMessage]:
    """What the replica at `address` kept for the session `key` of a kernel (its clients
    came back here); [] if it holds none any more. HandoverError if it does not answer."""
    headers = {FORWARDED_BY: replica, "Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"token {token}"
    request = HTTPRequest(
        f"{address.rstrip('/')}/api/kernels/{kernel_id}/handover",
        method="POST",
        headers=headers,
        body=json.dumps({"session": key}),
        follow_redirects=False,
        request_timeout=TAKE_TIMEOUT,
    )
    try:
        response = await AsyncHTTPClient().fetch(request, raise_error=False)
    except OSError as error:
        raise HandoverError(f"the replica at {address} does not answer ({error})") from None
    if response.code == 404:
        return []
    if response.code != 200:
        raise HandoverError(f"the replica at {address} answered {response.code}")
    return decode_messages(response.body)


def handed_first(handed: list[KernelMessage], arrived: list[KernelMessage]) -> list[KernelMessage]:
    """What a client that came back gets, in order: what the drained replica kept for it,
    then what reached this replica meanwhile that it did not already get there."""
    seen = {message.parts[0] for message in handed}
    return [*handed, *(message for message in arrived if message.parts[0] not in seen)]
