"""A local PayPal for the end-to-end tests, following PayPal's documented REST formats: the
OAuth2 client-credentials token (Basic auth; `expires_in`), Orders v2 (create with intent
CAPTURE, capture once approved, `PayPal-Request-Id` idempotency), refunds of captures, and
verify-webhook-signature. Bound to 127.0.0.1 on a free port, printed as its first line.

Test-only controls: POST /_test/approve/{order} (what the buyer does at PayPal), GET
/_test/stats (tokens issued, calls seen, refunds). Webhook signatures sign PayPal's documented
message, "transmission_id|transmission_time|webhook_id|crc32 of the event body as sent"
(decimal), but with HMAC-SHA256 (hex, the secret below) instead of PayPal's RSA certificate:
only PayPal checks it, through verify-webhook-signature, where the event must come back byte
for byte as it was delivered."""

import base64
import hashlib
import hmac
import itertools
import json
import sys
import zlib

from aiohttp import web
from serve import serve

CLIENT_ID, CLIENT_SECRET = sys.argv[1], sys.argv[2]
WEBHOOK_ID = sys.argv[3]
SIGNING_SECRET = b"fake-paypal-signing-secret"
TOKEN_TTL = int(sys.argv[4]) if len(sys.argv) > 4 else 32400

ids = itertools.count(1)
tokens = {}
orders = {}
captures = {}
saved = {}
stats = {"tokens_issued": 0, "orders": 0, "captures": 0, "refunds": 0, "verifications": 0}


def error(status, name, issue=None):
    body = {"name": name, "message": name.replace("_", " ").lower()}
    if issue:
        body["details"] = [{"issue": issue}]
    return web.json_response(body, status=status)


def authorized(request):
    header = request.headers.get("Authorization", "")
    return header.startswith("Bearer ") and header[7:] in tokens


@web.middleware
async def idempotency(request, handler):
    key = request.headers.get("PayPal-Request-Id")
    if request.method != "POST" or not key:
        return await handler(request)
    slot = (request.path, key)
    if slot in saved:
        status, body = saved[slot]
        return web.Response(status=status, body=body, content_type="application/json")
    response = await handler(request)
    # Only a request that did something is remembered: a refused one (an order not approved
    # yet) may be sent again with the same id once the refusal no longer holds.
    if 200 <= response.status < 300:
        saved[slot] = (response.status, response.body)
    return response


async def token(request):
    expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    form = await request.post()
    if request.headers.get("Authorization") != expected:
        return web.json_response({"error": "invalid_client"}, status=401)
    if form.get("grant_type") != "client_credentials":
        return web.json_response({"error": "unsupported_grant_type"}, status=400)
    value = f"A21AA{next(ids):08d}"
    tokens[value] = True
    stats["tokens_issued"] += 1
    return web.json_response({"scope": "https://uri.paypal.com/services/payments/payment",
                              "access_token": value, "token_type": "Bearer",
                              "app_id": "APP-80W284485P519543T", "expires_in": TOKEN_TTL,
                              "nonce": "2020-04-03T15:35:36ZaYZlGvEkV4yVSz8g6bAKFoGSEzuy3CQcz3ljhibkOHg"})


async def create_order(request):
    if not authorized(request):
        return error(401, "AUTHENTICATION_FAILURE")
    body = await request.json()
    units = body.get("purchase_units") or []
    if body.get("intent") != "CAPTURE" or len(units) != 1:
        return error(400, "INVALID_REQUEST", "MALFORMED_REQUEST_JSON")
    amount = units[0].get("amount") or {}
    if not amount.get("currency_code") or not amount.get("value"):
        return error(422, "UNPROCESSABLE_ENTITY", "AMOUNT_MISMATCH")
    order_id = f"5O{next(ids):014d}"
    orders[order_id] = {"status": "PAYER_ACTION_REQUIRED", "unit": units[0], "capture": None}
    stats["orders"] += 1
    base = f"http://{request.host}"
    return web.json_response({"id": order_id, "status": "PAYER_ACTION_REQUIRED", "links": [
        {"href": f"{base}/v2/checkout/orders/{order_id}", "rel": "self", "method": "GET"},
        {"href": f"{base}/checkoutnow?token={order_id}", "rel": "payer-action", "method": "GET"}]},
        status=200)


async def approve(request):
    order = orders.get(request.match_info["id"])
    if not order:
        return error(404, "RESOURCE_NOT_FOUND")
    order["status"] = "APPROVED"
    return web.json_response({})


async def capture(request):
    if not authorized(request):
        return error(401, "AUTHENTICATION_FAILURE")
    order_id = request.match_info["id"]
    order = orders.get(order_id)
    if not order:
        return error(404, "RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID")
    if order["status"] == "COMPLETED":
        return error(422, "UNPROCESSABLE_ENTITY", "ORDER_ALREADY_CAPTURED")
    if order["status"] != "APPROVED":
        return error(422, "UNPROCESSABLE_ENTITY", "ORDER_NOT_APPROVED")
    capture_id = f"2G{next(ids):014d}"
    unit = order["unit"]
    captures[capture_id] = {"amount": unit["amount"], "refunded": 0.0, "custom_id": unit.get("custom_id")}
    order["status"] = "COMPLETED"
    order["capture"] = capture_id
    stats["captures"] += 1
    return web.json_response(order_body(order_id, order), status=201)


def order_body(order_id, order):
    unit = order["unit"]
    body = {"id": order_id, "status": order["status"], "purchase_units": [{
        "reference_id": unit.get("reference_id"), "amount": unit["amount"]}]}
    if order["capture"]:
        body["purchase_units"][0]["payments"] = {"captures": [{
            "id": order["capture"], "status": "COMPLETED", "amount": unit["amount"],
            "custom_id": unit.get("custom_id"), "final_capture": True}]}
    return body


async def get_order(request):
    if not authorized(request):
        return error(401, "AUTHENTICATION_FAILURE")
    order_id = request.match_info["id"]
    order = orders.get(order_id)
    if not order:
        return error(404, "RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID")
    return web.json_response(order_body(order_id, order))


async def refund(request):
    if not authorized(request):
        return error(401, "AUTHENTICATION_FAILURE")
    capture_id = request.match_info["id"]
    found = captures.get(capture_id)
    if not found:
        return error(404, "RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID")
    body = await request.json()
    amount = body.get("amount") or found["amount"]
    if amount["currency_code"] != found["amount"]["currency_code"]:
        return error(422, "UNPROCESSABLE_ENTITY", "CURRENCY_MISMATCH")
    value = float(amount["value"])
    if found["refunded"] + value > float(found["amount"]["value"]) + 1e-9:
        return error(422, "UNPROCESSABLE_ENTITY", "REFUND_AMOUNT_EXCEEDED")
    found["refunded"] += value
    stats["refunds"] += 1
    return web.json_response({"id": f"1J{next(ids):014d}", "status": "COMPLETED", "links": [
        {"href": f"http://{request.host}/v2/payments/captures/{capture_id}", "rel": "up", "method": "GET"}]},
        status=201)


def signature(transmission_id, transmission_time, webhook_id, event_bytes):
    crc = zlib.crc32(event_bytes) & 0xFFFFFFFF
    message = f"{transmission_id}|{transmission_time}|{webhook_id}|{crc}".encode()
    return hmac.new(SIGNING_SECRET, message, hashlib.sha256).hexdigest()


def raw_event(text):
    """The `webhook_event` value exactly as it appears in the request's text."""
    at = text.find('"webhook_event"')
    if at < 0:
        return None
    start = text.index(":", at) + 1
    while text[start] in " \t\r\n":
        start += 1
    _, end = json.JSONDecoder().raw_decode(text, start)
    return text[start:end].encode()


async def verify(request):
    if not authorized(request):
        return error(401, "AUTHENTICATION_FAILURE")
    text = await request.text()
    body = json.loads(text)
    fields = ["auth_algo", "cert_url", "transmission_id", "transmission_sig", "transmission_time",
              "webhook_id", "webhook_event"]
    if any(not body.get(f) for f in fields):
        return error(400, "VALIDATION_ERROR")
    stats["verifications"] += 1
    expected = signature(body["transmission_id"], body["transmission_time"], body["webhook_id"],
                         raw_event(text) or b"")
    ok = (body["webhook_id"] == WEBHOOK_ID and body["auth_algo"] == "SHA256withRSA"
          and hmac.compare_digest(expected, body["transmission_sig"]))
    return web.json_response({"verification_status": "SUCCESS" if ok else "FAILURE"})


async def test_stats(request):
    return web.json_response(stats)


async def expire_tokens(request):
    tokens.clear()
    return web.json_response({})


app = web.Application(middlewares=[idempotency])
app.router.add_post("/v1/oauth2/token", token)
app.router.add_post("/v2/checkout/orders", create_order)
app.router.add_post("/v2/checkout/orders/{id}/capture", capture)
app.router.add_get("/v2/checkout/orders/{id}", get_order)
app.router.add_post("/v2/payments/captures/{id}/refund", refund)
app.router.add_post("/v1/notifications/verify-webhook-signature", verify)
app.router.add_post("/_test/approve/{id}", approve)
app.router.add_post("/_test/expire-tokens", expire_tokens)
app.router.add_get("/_test/stats", test_stats)

serve(app)
