"""The outbox's flow control as pure logic: a transport whose flushes the test completes."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import Future

from kernels_service.protocol import KernelMessage
from kernels_service.protocol.message import encode_json
from kernels_service.relay.outbox import Outbox


class Transport:
    def __init__(self):
        self.sent: list[KernelMessage] = []
        self.pending: list[Future] = []
        self.closed_with: str | None = None

    def send(self, message: KernelMessage):
        """Returns the future a transport returns: done when the test says the bytes left."""
        self.sent.append(message)
        self.pending.append(Future())
        return sum(len(p) for p in message.parts), self.pending[-1]

    def flush_all(self):
        while self.pending:
            self.pending.pop(0).set_result(None)


def stream(text: str, parent: str = "p1", name: str = "stdout") -> KernelMessage:
    header = encode_json({"msg_id": text, "msg_type": "stream"})
    return KernelMessage(
        "iopub", [header, encode_json({"msg_id": parent}), b"{}", encode_json({"name": name, "text": text})]
    )


def status(state: str) -> KernelMessage:
    header = encode_json({"msg_id": state, "msg_type": "status"})
    return KernelMessage("iopub", [header, b"{}", b"{}", encode_json({"execution_state": state})])


def make(high_water=100, limit=10_000):
    transport = Transport()
    outbox = Outbox(transport.send, lambda reason: setattr(transport, "closed_with", reason), high_water, limit)
    return transport, outbox


def texts(messages):
    return [json.loads(m.parts[3]).get("text") for m in messages]


def test_a_fast_client_gets_every_message_as_it_comes():
    transport, outbox = make(high_water=10_000)
    for i in range(5):
        outbox.put(stream(str(i)))
        transport.flush_all()
    assert texts(transport.sent) == ["0", "1", "2", "3", "4"]


def test_a_slow_client_gets_merged_streams_in_order_and_nothing_lost():
    transport, outbox = make(high_water=100)
    outbox.put(stream("a" * 120))  # over the high-water mark: the rest waits
    for text in ["b", "c"]:
        outbox.put(stream(text))
    outbox.put(stream("e", name="stderr"))
    outbox.put(stream("f", name="stderr"))
    outbox.put(status("idle"))
    outbox.put(stream("g", parent="p2"))
    assert len(transport.sent) == 1 and outbox.waiting == 4
    transport.flush_all()
    transport.flush_all()
    sent = transport.sent
    assert texts(sent) == ["a" * 120, "bc", "ef", None, "g"]
    assert json.loads(sent[1].parts[0])["msg_id"] == "b"  # the run keeps its first header
    assert json.loads(sent[3].parts[3]) == {"execution_state": "idle"}
    assert transport.closed_with is None


def test_a_client_past_the_limit_is_closed_with_a_reason_not_dropped_silently():
    transport, outbox = make(high_water=10, limit=1000)
    outbox.put(stream("x" * 20))
    for _ in range(100):
        outbox.put(status("busy"))
    assert transport.closed_with and "too slow" in transport.closed_with
    outbox.put(stream("late"))
    transport.flush_all()
    assert texts(transport.sent) == ["x" * 20], "nothing is sent after giving up"


def status_message(state: str, parent: str) -> KernelMessage:
    parts = [json.dumps({"msg_type": "status", "msg_id": parent}).encode(), b"{}", b"{}"]
    return KernelMessage("iopub", [*parts, encode_json({"execution_state": state})])


def test_thousands_of_waiting_messages_drain_in_a_loop_not_a_recursion():
    """Writes that complete at once (flushed None) must not nest one call per message."""
    first = Future()
    sent = []

    def send(message):
        sent.append(message)
        return 10, first if len(sent) == 1 else None

    outbox = Outbox(send, lambda reason: None, high_water=1)
    messages = [status_message("busy" if i % 2 else "idle", f"p{i}") for i in range(5000)]
    for message in messages:
        outbox.put(message)
    assert outbox.waiting == 4999
    first.set_result(None)
    assert sent == messages and outbox.waiting == 0


def test_a_failed_write_closes_the_outbox_and_its_error_is_read():
    failing = Future()
    outbox = Outbox(lambda m: (10, failing), lambda reason: None, high_water=1)
    outbox.put(status_message("busy", "a"))
    outbox.put(status_message("idle", "b"))
    failing.set_exception(ConnectionError("client gone"))
    assert outbox.closed and outbox.waiting == 0


def test_a_closed_transport_counts_as_flushed():
    sent = []
    outbox = Outbox(lambda m: (sent.append(m) or 0, None), lambda reason: None, high_water=1)
    for i in range(3):
        outbox.put(stream(str(i)))
    assert texts(sent) == ["0", "1", "2"]


def test_merged_runs_stop_growing_at_about_a_megabyte():
    transport, outbox = make(high_water=10, limit=100 * 1024 * 1024)
    outbox.put(stream("first"))
    chunk = "y" * 100_000
    for _ in range(25):
        outbox.put(stream(chunk))
    transport.flush_all()
    while transport.pending:
        transport.flush_all()
    merged = texts(transport.sent[1:])
    assert "".join(merged) == chunk * 25
    assert 2 <= len(merged) < 25, "merged, but in runs of at most a megabyte"
    assert all(len(text) <= 1024 * 1024 for text in merged)


class BatchTransport(Transport):
    """Sends of one batch share one future, as the websocket batch writer's do."""

    def send(self, message: KernelMessage):
        self.sent.append(message)
        if not self.pending:
            self.pending.append(Future())
        return sum(len(p) for p in message.parts), self.pending[-1]


def test_writes_sharing_a_batch_future_are_settled_together():
    transport = BatchTransport()
    outbox = Outbox(transport.send, lambda reason: None, high_water=1000)
    for i in range(3):
        outbox.put(stream(str(i)))
    assert len(transport.pending) == 1 and outbox.backed_up
    transport.flush_all()
    assert not outbox.backed_up  # all three writes' bytes left flight with the one future
    outbox.put(stream("3"))
    assert texts(transport.sent) == ["0", "1", "2", "3"]


class CountingMessage(KernelMessage):
    """A stream message that counts how often its content is decoded."""

    __slots__ = ()
    decodes = 0

    def content(self):
        CountingMessage.decodes += 1
        return super().content()


def test_outboxes_behind_in_one_turn_decode_a_stream_message_once_for_all():
    def counting_stream(text: str) -> KernelMessage:
        message = stream(text)
        return CountingMessage(message.channel, message.parts)

    async def fan_out_to_slow_clients() -> list[str]:
        pairs = [make(high_water=10) for _ in range(20)]
        for _, outbox in pairs:
            outbox.put(stream("x" * 50))  # each over its high-water mark: the rest waits
        CountingMessage.decodes = 0
        for message in [counting_stream("a"), counting_stream("b")]:
            for _, outbox in pairs:
                outbox.put(message)
        for transport, _ in pairs:
            transport.flush_all()
            transport.flush_all()
        return [texts(transport.sent)[-1] for transport, _ in pairs]

    assert asyncio.run(fan_out_to_slow_clients()) == ["ab"] * 20
    assert CountingMessage.decodes == 2
