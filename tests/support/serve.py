"""Runs a test fake's aiohttp app on 127.0.0.1 on a free port, printing `listening on <url>`
once the socket listens (the harness reads that line and may connect at once)."""

import socket

from aiohttp import web


def serve(app):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    print(f"listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    web.run_app(app, sock=sock, print=None, access_log=None)
