"""The one error type of the pure codecs."""


class ProtocolError(ValueError):
    """A frame or message that does not follow the protocol; the text says what is wrong."""
