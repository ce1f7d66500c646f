"""A local SendGrid for the end-to-end tests, following SendGrid's documented formats: the v3
mail send API (POST /v3/mail/send, `Authorization: Bearer <key>`, 202 with an `X-Message-Id`
header, 400 with an `errors` list for a request it refuses) and the signed event webhook
(a JSON array of events, signed with ECDSA P-256 over SHA-256 of the timestamp header followed
by the body, `X-Twilio-Email-Event-Webhook-Signature` base64 DER and
`X-Twilio-Email-Event-Webhook-Timestamp` unix seconds). The signing key is made at start by
the `cryptography` package, not by the code under test. Bound to 127.0.0.1 on a free port,
printed as its first line.

Arguments: the API key it accepts; optionally a recipient domain it refuses with 400 (as
SendGrid refuses an invalid address), and a count of sends to answer with 503 first.

Test-only controls: GET /_test/public-key (base64 DER, as SendGrid's mail settings show it),
GET /_test/sent (the send requests it accepted, in order, each with its `x_message_id`),
POST /_test/events {"url", "events", "tamper"?, "timestamp"?} (signs the events and POSTs them
to `url` as SendGrid would; answers the receiver's status and body)."""

import base64
import json
import secrets
import sys
import time

import aiohttp
from aiohttp import web
from serve import serve
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

API_KEY = sys.argv[1]
REFUSED_DOMAIN = sys.argv[2] if len(sys.argv) > 2 else ""
UNAVAILABLE = {"left": int(sys.argv[3]) if len(sys.argv) > 3 else 0}

KEY = ec.generate_private_key(ec.SECP256R1())
PUBLIC_DER = KEY.public_key().public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
)
sent = []
stats = {"requests": 0, "unavailable": 0, "refused": 0}


def errors(status, *messages):
    return web.json_response(
        {"errors": [{"message": m, "field": None, "help": None} for m in messages]},
        status=status,
    )


async def mail_send(request):
    stats["requests"] += 1
    if request.headers.get("Authorization") != f"Bearer {API_KEY}":
        return errors(401, "The provided authorization grant is invalid, expired, or revoked")
    if UNAVAILABLE["left"] > 0:
        UNAVAILABLE["left"] -= 1
        stats["unavailable"] += 1
        return errors(503, "Service unavailable")
    try:
        body = await request.json()
    except json.JSONDecodeError:
        return errors(400, "Bad Request")
    problems = []
    personalizations = body.get("personalizations") or []
    if not personalizations or not all(p.get("to") for p in personalizations):
        problems.append("The personalizations field is required and must have at least one to.")
    if not (body.get("from") or {}).get("email"):
        problems.append("The from object must be provided for every email send.")
    if not body.get("subject") and not all(p.get("subject") for p in personalizations):
        problems.append("The subject is required.")
    content = body.get("content") or []
    if not content or content[0].get("type") != "text/plain":
        problems.append("text/plain must be the first content type, if present.")
    for a in body.get("attachments") or []:
        try:
            base64.b64decode(a["content"], validate=True)
        except Exception:
            problems.append("The attachment content must be base64 encoded.")
        if a.get("disposition") == "inline" and not a.get("content_id"):
            problems.append("content_id is required for inline attachments.")
    recipients = [t["email"] for p in personalizations for t in p.get("to") or []]
    if REFUSED_DOMAIN and any(r.endswith("@" + REFUSED_DOMAIN) for r in recipients):
        problems.append("Does not contain a valid address.")
    if problems:
        stats["refused"] += 1
        return errors(400, *problems)
    message_id = secrets.token_urlsafe(16)
    sent.append({**body, "x_message_id": message_id})
    return web.Response(status=202, headers={"X-Message-Id": message_id})


async def public_key(request):
    return web.json_response({"public_key": base64.b64encode(PUBLIC_DER).decode()})


async def list_sent(request):
    return web.json_response({"sent": sent, "stats": stats})


async def deliver_events(request):
    order = await request.json()
    payload = json.dumps(order["events"]).encode()
    timestamp = str(order.get("timestamp") or int(time.time()))
    signature = KEY.sign(timestamp.encode() + payload, ec.ECDSA(hashes.SHA256()))
    if order.get("tamper"):
        payload = payload.replace(b"delivered", b"bounce")
    headers = {
        "Content-Type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
    }
    async with aiohttp.ClientSession() as session:
        async with session.post(order["url"], data=payload, headers=headers) as response:
            text = await response.text()
            return web.json_response({"status": response.status, "body": text})


app = web.Application()
app.router.add_post("/v3/mail/send", mail_send)
app.router.add_get("/_test/public-key", public_key)
app.router.add_get("/_test/sent", list_sent)
app.router.add_post("/_test/events", deliver_events)

serve(app)
