"""Deliveries signed with the standardwebhooks package to a running `hilo serve`.

Asserts: a valid delivery starts one execution (202); the same delivery again starts none (200,
the first execution's id); a bad signature, a missing header, a timestamp 10 minutes old and a
10 MB body are refused (401, 401, 401, 413), audited and start nothing; an unknown path and an
unknown tenant get the same 404; 200 concurrent deliveries with 50 distinct ids start exactly
50 executions; no answer echoes a body.
"""

import concurrent.futures
import datetime
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

from standardwebhooks.webhooks import Webhook

URL = os.environ["HILO_URL"]
HILO = os.environ["HILO_BIN"]
wh = Webhook(os.environ["WEBHOOK_SECRET"])
MARK = "marker-4c1d-not-to-be-echoed"
failures = []


def check(what, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + what + (f": {detail}" if detail and not ok else ""))
    if not ok:
        failures.append(what)


def post(path, body: bytes, headers: dict):
    req = urllib.request.Request(URL + path, data=body, method="POST")
    req.add_header("content-type", "application/json")
    for k, v in headers.items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def signed(msg_id: str, body: bytes, at: datetime.datetime = None):
    at = at or datetime.datetime.now(tz=datetime.timezone.utc)
    sig = wh.sign(msg_id, at, body.decode())
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(at.timestamp())), "webhook-signature": sig}


def executions():
    out = subprocess.run([HILO, "executions", "list", "--workflow", "shop_orders", "--limit", "1000", "--json"], capture_output=True, text=True, check=True)
    data = json.loads(out.stdout)
    return data if isinstance(data, list) else data.get("executions", [])


def audit_refusals():
    out = subprocess.run([HILO, "audit", "--json", "--tool", "ingress.webhook", "--limit", "1000"], capture_output=True, text=True)
    if out.returncode != 0:
        out = subprocess.run([HILO, "audit", "--json"], capture_output=True, text=True, check=True)
    data = json.loads(out.stdout)
    rows = data if isinstance(data, list) else data.get("entries", data.get("audit", []))
    return [r for r in rows if r.get("tool") == "ingress.webhook"]


HOOK = "/hooks/default/orders/created"
body = json.dumps({"order_id": "A-1", "note": MARK}).encode()

status, text = post(HOOK, body, signed("msg_first", body))
check("a valid delivery is accepted (202)", status == 202, f"{status} {text}")
first = json.loads(text).get("execution_id") if status == 202 else None
check("the answer does not echo the body", MARK not in text)

status, text = post(HOOK, body, signed("msg_first", body))
check("the same delivery again is 200 with the first execution", status == 200 and json.loads(text).get("execution_id") == first, f"{status} {text}")

before = len(executions())
bad = signed("msg_bad", body)
bad["webhook-signature"] = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
status, text = post(HOOK, body, bad)
check("a bad signature is 401", status == 401, f"{status} {text}")
check("the refusal does not echo the body", MARK not in text)
missing = signed("msg_missing", body)
del missing["webhook-signature"]
status, _ = post(HOOK, body, missing)
check("a missing signature header is 401", status == 401, str(status))
old = datetime.datetime.now(tz=datetime.timezone.utc) - datetime.timedelta(minutes=10)
status, _ = post(HOOK, body, signed("msg_old", body, old))
check("a timestamp 10 minutes old is 401", status == 401, str(status))
big = json.dumps({"order_id": "A-2", "pad": "x" * (10 * 1024 * 1024)}).encode()
status, text = post(HOOK, big, signed("msg_big", big))
check("a 10 MB body is 413", status == 413, f"{status} {text[:200]}")
s1, t1 = post("/hooks/default/orders/nowhere", body, signed("msg_x", body))
s2, t2 = post("/hooks/no_such_tenant/orders/created", body, signed("msg_y", body))
strip = lambda t: {k: v for k, v in json.loads(t).items() if k != "instance"}
check("an unknown path and an unknown tenant get the same 404", s1 == s2 == 404 and strip(t1) == strip(t2), f"{s1} {s2}")
check("refused deliveries start nothing", len(executions()) == before, f"{before} -> {len(executions())}")
refusals = audit_refusals()
# Six refusals; the unknown tenant's is that tenant's, not this one's: five here.
check("refusals are in the audit trail with no execution", len(refusals) >= 5 and all(not r.get("execution_id") for r in refusals), f"{len(refusals)} rows")
check("no audit row holds the body", all(MARK not in json.dumps(r) for r in refusals))


def deliver(i):
    msg = f"msg_burst_{i % 50}"
    b = json.dumps({"order_id": f"B-{i % 50}"}).encode()
    return post(HOOK, b, signed(msg, b))


with concurrent.futures.ThreadPoolExecutor(max_workers=40) as pool:
    answers = list(pool.map(deliver, range(200)))
codes = [s for s, _ in answers]
ids = {json.loads(t)["execution_id"] for s, t in answers if s in (200, 202)}
check("200 concurrent deliveries are all answered 202 or 200", all(c in (200, 202) for c in codes), str(sorted(set(codes))))
check("50 distinct ids name 50 executions", len(ids) == 50, str(len(ids)))
time.sleep(1)
started = [e for e in executions() if str(e.get("workflow", "")).startswith("shop_orders")]
check("exactly 51 executions exist (50 + the first)", len(started) == 51, str(len(started)))
sys.exit(1 if failures else 0)
