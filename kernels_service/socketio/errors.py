"""The errors of the Engine.IO and Socket.IO layer, as h11 divides them.

`RemoteProtocolError`: the peer broke the protocol (bytes that do not decode, a packet
the session's state does not allow). Codecs and state machines raise only this for
anything a client sends, so each door catches it in one place: the session is closed
(websocket) or the request answered 400 (polling).

`LocalProtocolError`: our own code misused a state machine (accepting a connect nobody
asked for, say). That is a bug of the service, never the client's doing: it is not
caught at the doors, and the session task's done-callback logs it and closes the session.
"""


class SocketIOProtocolError(Exception):
    """Base of both: a rule of Engine.IO or Socket.IO was broken; the text says how."""


class RemoteProtocolError(SocketIOProtocolError, ValueError):
    """The client broke the protocol."""


class LocalProtocolError(SocketIOProtocolError, RuntimeError):
    """The service misused a state machine (a bug of ours)."""
