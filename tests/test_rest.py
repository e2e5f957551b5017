"""The Jupyter REST API of the real service: models, status codes, errors, auth."""

from __future__ import annotations

import pytest
import websocket

from kernels_service.testing.channels import ChannelsClient, stream_text
from kernels_service.testing.service import tracebacks


def test_version(service):
    status, _, body = service.request("GET", "api")
    assert status == 200 and isinstance(body["version"], str)


def test_initial_kernel_is_listed_with_a_full_model(service):
    status, _, kernels = service.request("GET", "api/kernels")
    assert status == 200 and len(kernels) >= 1
    model = kernels[0]
    assert set(model) == {"id", "name", "last_activity", "execution_state", "connections"}
    assert model["name"] == "python3" and model["last_activity"].endswith("Z")


def test_a_kernel_shutdown_is_logged_once(service):
    kernel_id = service.start_kernel()
    assert service.request("DELETE", f"api/kernels/{kernel_id}")[0] == 204
    assert service.output().count(f"Kernel shutdown: {kernel_id}") == 1


def test_create_get_delete_kernel(service):
    status, headers, model = service.request("POST", "api/kernels", {"name": "python3"})
    assert status == 201
    assert headers["location"] == f"/jupyter/api/kernels/{model['id']}"
    status, _, fetched = service.request("GET", f"api/kernels/{model['id']}")
    assert status == 200 and fetched["id"] == model["id"] and fetched["name"] == "python3"
    status, _, body = service.request("DELETE", f"api/kernels/{model['id']}")
    assert status == 204 and body == b""
    status, _, error = service.request("GET", f"api/kernels/{model['id']}")
    assert status == 404 and model["id"] in error["message"]


def test_post_without_body_starts_the_default_kernel(service):
    status, _, model = service.request("POST", "api/kernels")
    assert status == 201 and model["name"] == "python3"
    assert service.request("DELETE", f"api/kernels/{model['id']}")[0] == 204


def test_interrupt_and_restart_answer_204_and_200(service, kernel):
    assert service.request("POST", f"api/kernels/{kernel}/interrupt")[0] == 204
    status, _, model = service.request("POST", f"api/kernels/{kernel}/restart")
    assert status == 200 and model["id"] == kernel


def test_kernelspecs(service):
    status, _, specs = service.request("GET", "api/kernelspecs")
    assert status == 200 and specs["default"] == "python3"
    python = specs["kernelspecs"]["python3"]
    assert python["name"] == "python3" and python["spec"]["language"] == "python"
    assert python["resources"]["logo-64x64"] == "/jupyter/kernelspecs/python3/logo-64x64.png"
    status, _, single = service.request("GET", "api/kernelspecs/python3")
    assert status == 200 and single == python
    status, headers, logo = service.request("GET", "kernelspecs/python3/logo-64x64.png")
    assert status == 200 and headers["content-type"] == "image/png" and logo.startswith(b"\x89PNG")


@pytest.mark.parametrize(
    "method, path, body, status",
    [
        ("GET", "api/kernels/no-such-kernel", None, 404),
        ("DELETE", "api/kernels/no-such-kernel", None, 404),
        ("POST", "api/kernels/no-such-kernel/interrupt", None, 404),
        ("POST", "api/kernels/no-such-kernel/restart", None, 404),
        ("GET", "api/kernelspecs/no-such-spec", None, 404),
        ("GET", "kernelspecs/no-such-spec/logo-64x64.png", None, 404),
        ("GET", "kernelspecs/python3/no-such-file.png", None, 404),
        ("GET", "kernelspecs/python3/..%2Fkernel.json", None, 404),
        ("GET", "api/nothing-here", None, 404),
        ("POST", "api/kernels", {"name": "no-such-spec"}, 404),
        ("POST", "api/kernels", "{not json", 400),
        ("POST", "api/kernels", "[1, 2]", 400),
        ("POST", "api/kernels", {"name": 42}, 400),
        ("POST", "api/kernels", {"env": "PATH=/"}, 400),
        ("POST", "api/kernels", {"env": {"KERNEL_X": 1}}, 400),
        ("PUT", "api/kernels", None, 405),
    ],
)
def test_client_errors_are_json(service, method, path, body, status):
    got, headers, error = service.request(method, path, body)
    assert got == status
    assert headers["content-type"].startswith("application/json")
    assert set(error) == {"message", "reason"} and "Traceback" not in error["message"]


def test_nothing_answers_outside_the_base_path(service):
    status, _, error = service.request("GET", "/api/kernels", raw_path=True)
    assert status == 404 and error["reason"] == "Not Found"


@pytest.mark.parametrize("scheme", ["token", "Bearer"])
def test_token_in_header(service, scheme):
    status, _, _ = service.request("GET", "api/kernels", headers={"Authorization": f"{scheme} {service.token}"})
    assert status == 200


def test_token_in_query(service):
    status, _, _ = service.request("GET", f"api/kernels?token={service.token}", token="")
    assert status == 200


@pytest.mark.parametrize("token", ["wrong", "test-token-012345678"])
def test_bad_token_is_403(service, token):
    status, _, error = service.request("GET", "api/kernels", token=token)
    assert status == 403 and error["reason"] == "Forbidden"
    status, _, _ = service.request("POST", "api/kernels", {}, token=token)
    assert status == 403


def test_kernel_env_gets_only_allowed_variables_and_never_the_token(service):
    kernel_id = service.start_kernel(env={"KERNEL_GREETING": "hello", "NOT_ALLOWED": "x"})
    client = ChannelsClient(service, kernel_id)
    try:
        code = "import os; print(os.environ.get('KERNEL_GREETING'), os.environ.get('NOT_ALLOWED'), "
        code += "[k for k, v in os.environ.items() if 'test-token' in v])"
        _, outputs = client.execute(code)
        assert stream_text(outputs) == "hello None []\n"
    finally:
        client.close()
        service.request("DELETE", f"api/kernels/{kernel_id}")


def test_kernel_relay_spawn_and_shutdown(service):
    for method in ("GET", "POST"):
        status, _, spawned = service.request(method, "spawn/python3")
        assert status == 200 and set(spawned) == {"id"}
        assert service.request("GET", f"api/kernels/{spawned['id']}")[0] == 200
        status, _, stopped = service.request(method, f"shutdown/{spawned['id']}")
        assert status == 200 and stopped == {"id": spawned["id"], "kernelId": spawned["id"]}


@pytest.mark.parametrize("path", ["spawn/no-such-spec", "shutdown/no-such-kernel"])
def test_kernel_relay_errors(service, path):
    status, _, body = service.request("GET", path)
    assert status == 404 and set(body) == {"error"} and "No such" in body["error"]


def test_kernel_relay_rest_needs_the_token(service):
    status, _, body = service.request("GET", "spawn/python3", token="wrong")
    assert status == 403 and set(body) == {"error"}


ROUTES_WITH_PARAMETERS = {
    "api/kernels/{k}": {"GET", "DELETE"},
    "api/kernels/{k}/interrupt": {"POST"},
    "api/kernels/{k}/restart": {"POST"},
    "api/kernelspecs/python3": {"GET"},
    "kernelspecs/python3/logo-64x64.png": {"GET"},
    "spawn/python3": {"GET", "POST"},
    "shutdown/{k}": {"GET", "POST"},
}


@pytest.mark.parametrize("route", ROUTES_WITH_PARAMETERS)
def test_cors_preflight_on_routes_with_path_parameters(service, kernel, route):
    """Browsers preflight exactly these requests; each answers 204 with what it allows."""
    headers = {"Origin": "http://app.example", "Access-Control-Request-Method": "POST"}
    status, reply, body = service.request("OPTIONS", route.format(k=kernel), headers=headers)
    assert status == 204 and body == b"", body
    assert ROUTES_WITH_PARAMETERS[route] <= set(reply["access-control-allow-methods"].split(", "))
    assert "Uncaught exception OPTIONS" not in service.output()


@pytest.mark.parametrize(
    "method, route, allowed, key",
    [
        ("PUT", "api/kernels", {"GET", "POST"}, "message"),
        ("PATCH", "api/kernels/{k}", {"GET", "DELETE"}, "message"),
        ("DELETE", "spawn/python3", {"GET", "POST"}, "error"),
        ("DELETE", "shutdown/{k}", {"GET", "POST"}, "error"),
        ("PUT", "api/kernels/{k}/channels", {"GET"}, "message"),
    ],
)
def test_wrong_method_is_a_json_405_with_allow(service, kernel, method, route, allowed, key):
    status, headers, body = service.request(method, route.format(k=kernel))
    assert status == 405 and body[key] == "Method Not Allowed", body
    assert allowed <= set(headers["allow"].split(", ")) and method not in headers["allow"]


def test_token_in_the_query_never_reaches_the_log(service, kernel):
    """REST 200 and 4xx, the websocket 101, and socket.io polling, all with `?token=`."""
    service.request("GET", f"api/kernels?token={service.token}", token="")
    service.request("GET", f"api/kernels/nope?token={service.token}", token="")
    service.request("GET", f"/socket.io/?EIO=4&transport=polling&token={service.token}", raw_path=True)
    websocket.create_connection(service.ws_url(f"api/kernels/{kernel}/channels?token={service.token}")).close()
    log = service.output()
    assert "token=[redacted]" in log and service.token not in log


BAD_BODIES = {
    "nested 5000 deep": '{"env": ' + "[" * 5000 + "]" * 5000 + "}",
    "NaN": '{"name": NaN}',
    "lone surrogate": '{"name": "\\ud800"}',
    "not UTF-8": b'{"name": "\xff"}',
    "NUL in a value": '{"env": {"KERNEL_X": "a\\u0000b"}}',
    "NUL in a name": '{"env": {"KERNEL_\\u0000": "b"}}',
    "= in a name": '{"env": {"KERNEL_A=B": "c"}}',
    "empty name": '{"env": {"": "c"}}',
    "lone surrogate in env": '{"env": {"KERNEL_X": "\\udc00"}}',
    "200 KB value": '{"env": {"KERNEL_X": "' + "x" * 200_000 + '"}}',
    "number value": '{"env": {"KERNEL_X": 1}}',
}


@pytest.mark.parametrize("what", BAD_BODIES)
def test_bad_kernel_bodies_are_400_json_and_start_nothing(service, what):
    before = {k["id"] for k in service.request("GET", "api/kernels")[2]}
    status, headers, error = service.request(
        "POST", "api/kernels", BAD_BODIES[what], headers={"Content-Type": "application/json"}
    )
    assert status == 400, (status, error)
    assert headers["content-type"].startswith("application/json") and set(error) == {"message", "reason"}
    assert {k["id"] for k in service.request("GET", "api/kernels")[2]} == before
    assert not tracebacks(service.output()) and "Uncaught exception" not in service.output()


def test_status_reports_kernels_connections_and_api_activity(service, kernel, open_client):
    from datetime import datetime

    def status() -> dict:
        code, _, body = service.request("GET", "api/status")
        assert code == 200
        return body

    def moment(text: str) -> datetime:
        return datetime.fromisoformat(text)

    assert service.request("GET", "api/status", token="wrong")[0] == 403
    client = open_client(kernel)
    client.execute("pass")  # the kernel is up and quiet: only our requests move last_activity now
    first = status()
    assert set(first) == {"started", "last_activity", "kernels", "connections", "pool", "version"}
    assert first["kernels"] == len(service.request("GET", "api/kernels", headers={})[2])
    assert first["pool"] in (0, 1)  # the default pool of one, perhaps being refilled (tests/test_pool.py)
    assert first["version"] == service.request("GET", "api")[2]["version"]
    assert moment(first["started"]) <= moment(first["last_activity"])
    # asking for the status, or asking not to be tracked, is not activity
    before = status()["last_activity"]
    assert service.request("GET", "api/kernels?no_track_activity=1")[0] == 200
    assert status()["last_activity"] == before
    assert service.request("GET", "api/kernels", token="wrong")[0] == 403
    assert status()["last_activity"] == before
    # a REST request is
    assert service.request("GET", f"api/kernels/{kernel}")[0] == 200
    after_rest = status()["last_activity"]
    assert moment(after_rest) > moment(before)
    # and so is a kernel's activity; a websocket client is a connection
    client.execute("pass")
    now = status()
    assert moment(now["last_activity"]) > moment(after_rest)
    assert now["connections"] >= 1
    assert now["connections"] == sum(k["connections"] for k in service.request("GET", "api/kernels")[2])


def test_a_missing_token_is_401_with_a_challenge_and_a_bad_one_403(service):
    status, headers, body = service.request("GET", "api/kernels", token="")
    assert status == 401 and headers["www-authenticate"].startswith("token") and "token" in body["message"]
    status, headers, body = service.request("GET", "api/kernels", token="wrong")
    assert status == 403 and "www-authenticate" not in headers and body["reason"] == "Forbidden"
    assert service.request("GET", "spawn/python3", token="")[0] == 401  # kernel-relay's routes too


def test_health_answers_anyone_at_the_base_path_and_the_root_and_reveals_nothing(service):
    for path, raw_path in (("api/health", False), ("/api/health", True)):  # the root: the image's HEALTHCHECK
        status, headers, body = service.request("GET", path, token="", raw_path=raw_path)
        assert status == 200 and body == {"status": "ok"}, (path, status, body)
        assert headers["content-type"].startswith("application/json")
    assert service.request("POST", "api/health", token="")[0] == 401  # only reading is open
    assert service.request("GET", "api/health/extra", token="")[0] == 404
