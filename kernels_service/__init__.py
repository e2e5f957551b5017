"""kernels-service: Jupyter kernels over HTTP, websockets and socket.io, no ZeroMQ for clients."""

__version__ = "0.1.0"
