"""Helpers to run and drive the real service from outside, for tests and benchmarks.

`service` runs it as a subprocess (standard library only); `channels` is a blocking
client of its kernel websocket (it needs the test extras: websocket-client and
jupyter_server, whose codec it checks the service's against).
"""
