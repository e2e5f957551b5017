"""A lifecycle request (interrupt, restart, shutdown) for a kernel another replica owns,
forwarded to that replica, whose answer is the client's (DESIGN.md, decision 21).

Only the owner acts on a kernel; the others know it by the shared store, which names the
owner's address. The request goes there with this service's token (every replica has
the same) and a header that says it was forwarded: a replica that gets a forwarded
request for a kernel it does not own (the kernel changed hands meanwhile) answers 503
rather than forward it again, so a request is forwarded once at most.
"""

from __future__ import annotations

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from kernels_service.kernels.fleet import OwnedElsewhere

#: The header of a forwarded request: the name of the replica that forwarded it.
FORWARDED_BY = "X-Kernels-Forwarded-By"
#: Seconds a forwarded request may take (a restart waits for the kernel).
FORWARD_TIMEOUT = 120.0


class OwnerUnreachable(Exception):
    """The owner did not answer, or the request was forwarded to this replica already."""


async def forward(
    owner: OwnedElsewhere, method: str, path: str, body: bytes, token: str, replica: str, forwarded_by: str | None
) -> tuple[int, str, bytes]:
    """Send the request (`path`: under the base path) to the owner; its status, content
    type and body. OwnerUnreachable if it does not answer or if the request came here
    forwarded already."""
    if forwarded_by:
        raise OwnerUnreachable(f"Kernel {owner.kernel_id} is changing replicas; try again")
    headers = {FORWARDED_BY: replica, "Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"token {token}"
    request = HTTPRequest(
        owner.address.rstrip("/") + "/" + path.lstrip("/"),
        method=method,
        headers=headers,
        body=body if method in ("POST", "PUT", "PATCH") else None,
        allow_nonstandard_methods=True,
        follow_redirects=False,
        request_timeout=FORWARD_TIMEOUT,
    )
    try:  # raise_error=False still raises what is not an HTTP answer (a refused connection)
        response = await AsyncHTTPClient().fetch(request, raise_error=False)
        error = response.error if response.code == 599 else None
    except OSError as refused:
        error = refused
    if error is not None:
        said = f"Kernel {owner.kernel_id}'s replica, {owner.owner}, does not answer ({error}); try again"
        raise OwnerUnreachable(said)
    return response.code, response.headers.get("Content-Type", "application/json"), response.body or b""
