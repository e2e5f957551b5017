"""Start a kernel over REST, run code over its websocket, print the output, shut it down.

    pip install websocket-client
    KERNELS_SERVICE_TOKEN=<token> python examples/python_websocket.py [http://127.0.0.1:8000/jupyter/]

The token is the one the service printed at start (or the one you gave it).
"""

import json
import os
import sys
import urllib.request
import uuid

import websocket  # pip install websocket-client

ENDPOINT = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000/jupyter/"
TOKEN = os.environ["KERNELS_SERVICE_TOKEN"]
HEADERS = {"Authorization": f"token {TOKEN}"}


def rest(method: str, path: str, body: dict | None = None) -> dict | None:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(ENDPOINT + path, data=data, method=method, headers=HEADERS)
    with urllib.request.urlopen(request) as response:
        text = response.read()
    return json.loads(text) if text else None


kernel_id = rest("POST", "api/kernels", {"name": "python3"})["id"]
try:
    ws = websocket.create_connection(
        ENDPOINT.replace("http", "ws", 1) + f"api/kernels/{kernel_id}/channels",
        header=[f"Authorization: token {TOKEN}"],
    )
    msg_id = uuid.uuid4().hex
    ws.send(
        json.dumps(
            {
                "channel": "shell",
                "header": {
                    "msg_id": msg_id,
                    "msg_type": "execute_request",
                    "session": uuid.uuid4().hex,
                    "username": "me",
                    "version": "5.3",
                },
                "parent_header": {},
                "metadata": {},
                "content": {"code": "print('hello')", "silent": False},
            }
        )
    )
    while True:
        msg = json.loads(ws.recv())
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            print(msg["content"]["text"], end="")  # hello
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    ws.close()
finally:
    rest("DELETE", f"api/kernels/{kernel_id}")
