"""A local Twilio for the end-to-end tests, following Twilio's documented formats: the
Messages API (POST /2010-04-01/Accounts/{AccountSid}/Messages.json, HTTP basic auth with the
account SID and auth token, form-encoded To / From or MessagingServiceSid / Body /
StatusCallback; 201 with the message resource; 400 with Twilio's error JSON, e.g. code 21211
for an invalid 'To' number) and the status callbacks it sends to StatusCallback, form-encoded
and signed with X-Twilio-Signature: base64 of HMAC-SHA1 (key: the auth token) over the full
callback URL followed by each parameter's name and value in name order. The signature is
computed here with Python's hmac, not by the code under test. Bound to 127.0.0.1 on a free
port, printed as its first line.

Arguments: the account SID and auth token it accepts.

Test-only controls: GET /_test/messages (the messages it accepted, in order), POST
/_test/status {"sid", "status", "error_code"?, "tamper"?, "via"} (sends the message's status
callback as Twilio would, signed over its StatusCallback URL, through `via`: the base URL
that URL's host forwards to, as a reverse proxy in front of the API would; answers the
receiver's status and body)."""

import base64
import hashlib
import hmac
import itertools
import re
import sys
from urllib.parse import urlencode, urlsplit

import aiohttp
from aiohttp import web
from serve import serve

ACCOUNT_SID, AUTH_TOKEN = sys.argv[1], sys.argv[2]
E164 = re.compile(r"^\+[1-9][0-9]{7,14}$")
ids = itertools.count(1)
messages = []


def error(status, code, message):
    return web.json_response(
        {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
         "status": status},
        status=status,
    )


def authorized(request):
    header = request.headers.get("Authorization", "")
    expected = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    return header == f"Basic {expected}"


async def create_message(request):
    if request.match_info["sid"] != ACCOUNT_SID or not authorized(request):
        return error(401, 20003, "Authenticate")
    form = await request.post()
    to, body = form.get("To", ""), form.get("Body", "")
    if not form.get("From") and not form.get("MessagingServiceSid"):
        return error(400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required")
    if not E164.match(to):
        return error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
    if to.startswith("+1555"):
        return error(400, 21610, "Attempt to send to unsubscribed recipient")
    if not body:
        return error(400, 21602, "Message body is required.")
    if len(body) > 1600:
        return error(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
    sid = "SM%032x" % next(ids)
    message = {
        "sid": sid, "account_sid": ACCOUNT_SID, "to": to, "from": form.get("From"),
        "messaging_service_sid": form.get("MessagingServiceSid"), "body": body,
        "status": "queued", "status_callback": form.get("StatusCallback"),
        "num_segments": str(max(1, -(-len(body) // 153))),
    }
    messages.append(message)
    return web.json_response({k: v for k, v in message.items() if k != "status_callback"},
                             status=201)


def signature(url, params):
    data = url + "".join(k + params[k] for k in sorted(params))
    return base64.b64encode(hmac.new(AUTH_TOKEN.encode(), data.encode(), hashlib.sha1).digest()).decode()


async def send_status(request):
    order = await request.json()
    message = next(m for m in messages if m["sid"] == order["sid"])
    params = {"MessageSid": message["sid"], "SmsSid": message["sid"], "AccountSid": ACCOUNT_SID,
              "From": message["from"] or "", "To": message["to"], "MessageStatus": order["status"],
              "SmsStatus": order["status"], "ApiVersion": "2010-04-01"}
    if order.get("error_code"):
        params["ErrorCode"] = str(order["error_code"])
    url = message["status_callback"]
    signed = signature(url, params)
    if order.get("tamper"):
        params["MessageStatus"] = "delivered" if order["status"] != "delivered" else "failed"
    public = urlsplit(url)
    target = order["via"].rstrip("/") + public.path + ("?" + public.query if public.query else "")
    async with aiohttp.ClientSession() as session:
        async with session.post(target, data=urlencode(params),
                                headers={"X-Twilio-Signature": signed,
                                         "Content-Type": "application/x-www-form-urlencoded"}) as r:
            return web.json_response({"status": r.status, "body": await r.text()})


async def list_messages(request):
    return web.json_response({"messages": messages})


app = web.Application()
app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", create_message)
app.router.add_get("/_test/messages", list_messages)
app.router.add_post("/_test/status", send_status)

serve(app)
