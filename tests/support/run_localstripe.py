"""Starts localstripe (a stateful fake Stripe server, from PyPI) for the end-to-end tests:
bound to 127.0.0.1 only, on a free port printed as its first line, and without its
pickle-the-whole-store-on-every-write persistence (each test's server starts empty).

localstripe ignores `Idempotency-Key`; Stripe does not: "the first request's status code and
body are saved for a key, and subsequent requests with the same key return the same result"
(https://docs.stripe.com/api/idempotent_requests). A middleware adds that behaviour for POSTs,
so a call repeated after a crash sees what Stripe would answer."""

import socket

import localstripe.resources as resources

resources.Store.dump_to_disk = lambda self: None

from aiohttp import web  # noqa: E402
from localstripe.server import app  # noqa: E402

_saved = {}
_in_flight = set()


@web.middleware
async def idempotency(request, handler):
    key = request.headers.get("Idempotency-Key")
    if request.method != "POST" or not key:
        return await handler(request)
    if key in _saved:
        status, body = _saved[key]
        return web.Response(status=status, body=body, content_type="application/json")
    if key in _in_flight:
        # Stripe: a request with the key of one still in progress gets 409.
        return web.json_response({"error": {"type": "idempotency_error",
                                            "message": "request in progress"}}, status=409)
    _in_flight.add(key)
    try:
        response = await handler(request)
    finally:
        _in_flight.discard(key)
    if isinstance(response, web.Response) and response.status < 500:
        _saved[key] = (response.status, response.body)
    return response


app.middlewares.insert(0, idempotency)

sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", 0))
print(f"listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
web.run_app(app, sock=sock, print=None, access_log=None)
