"""The one error type of the Engine.IO and Socket.IO codecs and state machines."""


class SocketIOProtocolError(ValueError):
    """Bytes or packets that break the Engine.IO or Socket.IO protocol; the text says how.

    Codecs raise only this, whatever the input, so each door catches it in one place:
    the session is closed (websocket) or the request answered 400 (polling).
    """
