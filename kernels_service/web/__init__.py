"""Tornado adapters: REST handlers, the channels websocket, auth/CORS policy, routes."""

from kernels_service.web.routes import make_web_app

__all__ = ["make_web_app"]
