"""Pure codecs: Jupyter wire messages and websocket frame formats. No I/O here."""

from kernels_service.protocol.errors import ProtocolError
from kernels_service.protocol.message import CHANNELS, CLIENT_CHANNELS, KernelMessage

__all__ = ["CHANNELS", "CLIENT_CHANNELS", "KernelMessage", "ProtocolError"]
