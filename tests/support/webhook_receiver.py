"""An organizer's webhook receiver for the end-to-end tests. Every delivery is verified with
the Standard Webhooks reference library (`standardwebhooks` from PyPI: webhook-id,
webhook-timestamp within five minutes, webhook-signature HMAC-SHA256 over
"{id}.{timestamp}.{body}"), not with the code under test. Bound to 127.0.0.1 on a free port,
printed as its first line.

Test-only controls: POST /_test/secrets {"secrets": [...]} (what deliveries are verified
with; each delivery records which one verified it), POST /_test/script {"statuses": [...]}
(the statuses answered to the next deliveries, in order; 200 once the list is used up),
GET /_test/received (every delivery, in arrival order)."""

import json

from aiohttp import web
from serve import serve
from standardwebhooks import Webhook, WebhookVerificationError

secrets = []
script = []
received = []


async def hook(request):
    body = await request.text()
    headers = {k.lower(): v for k, v in request.headers.items()}
    verified_with = []
    for secret in secrets:
        try:
            Webhook(secret).verify(body, headers)
            verified_with.append(secret)
        except WebhookVerificationError:
            pass
    status = script.pop(0) if script else 200
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    received.append({
        "path": request.path,
        "id": headers.get("webhook-id"),
        "timestamp": headers.get("webhook-timestamp"),
        "signature": headers.get("webhook-signature"),
        "content_type": headers.get("content-type"),
        "verified_with": verified_with,
        "payload": payload,
        "answered": status,
    })
    return web.Response(status=status, text="ok" if status < 300 else "receiver busy")


async def set_secrets(request):
    secrets[:] = (await request.json())["secrets"]
    return web.json_response({"ok": True})


async def set_script(request):
    script[:] = (await request.json())["statuses"]
    return web.json_response({"ok": True})


async def list_received(request):
    return web.json_response({"received": received})


app = web.Application()
app.router.add_post("/_test/secrets", set_secrets)
app.router.add_post("/_test/script", set_script)
app.router.add_get("/_test/received", list_received)
app.router.add_post("/{tail:.*}", hook)
serve(app)
