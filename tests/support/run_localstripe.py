"""Starts localstripe (a stateful fake Stripe server, from PyPI) for the end-to-end tests:
bound to 127.0.0.1 only, on a free port printed as its first line, and without its
pickle-the-whole-store-on-every-write persistence (each test's server starts empty)."""

import socket

import localstripe.resources as resources

resources.Store.dump_to_disk = lambda self: None

from aiohttp import web  # noqa: E402
from localstripe.server import app  # noqa: E402

sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", 0))
print(f"listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
web.run_app(app, sock=sock, print=None, access_log=None)
