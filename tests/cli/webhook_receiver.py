"""A webhook receiver for the tests: verifies each request with the Standard Webhooks library
(python `standardwebhooks`, the specification's own implementation), appends one JSON line per
request to the log file — {"id", "type", "verified", "data"} — and answers 204 when the
signature holds, 401 when it does not. Stops by itself after `lifetime` seconds.

usage: webhook_receiver.py PORT SECRET LOGFILE [LIFETIME]
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook, WebhookVerificationError

PORT, SECRET, LOG = int(sys.argv[1]), sys.argv[2], sys.argv[3]
LIFETIME = float(sys.argv[4]) if len(sys.argv) > 4 else 60.0
hook = Webhook(SECRET)
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {k: v for k, v in self.headers.items()}
        try:
            payload = hook.verify(body, headers)
            verified = True
        except WebhookVerificationError:
            payload, verified = None, False
        line = {
            "id": headers.get("webhook-id") or headers.get("Webhook-Id"),
            "type": payload.get("type") if payload else None,
            "verified": verified,
            "data": payload.get("data") if payload else None,
        }
        with lock, open(LOG, "a", encoding="utf-8") as f:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
        self.send_response(204 if verified else 401)
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
threading.Timer(LIFETIME, server.shutdown).start()
print("ready", flush=True)
server.serve_forever()
