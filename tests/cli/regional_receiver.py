"""A regional platform for the tests: an HTTPS server (python's ssl) that requires a client
certificate signed by CA and a bearer token, answers 503 to the first FAIL_FIRST requests,
then keeps each document under its Idempotency-Key: the first time it writes
DIR/<key>.xml and answers 201, a repeat answers 200 without writing. Every request is one
JSON line in DIR/got.jsonl: {"n", "key", "status", "content_type", "client_cn", "new"}.
Stops by itself after LIFETIME seconds.

usage: regional_receiver.py PORT CERT_DIR TOKEN DIR FAIL_FIRST [LIFETIME]
"""

import json
import os
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, CERTS, TOKEN, DIR = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
FAIL_FIRST = int(sys.argv[5])
LIFETIME = float(sys.argv[6]) if len(sys.argv) > 6 else 60.0
lock = threading.Lock()
count = [0]


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        key = self.headers.get("idempotency-key", "")
        cert = self.connection.getpeercert() or {}
        cn = next(
            (v for rdn in cert.get("subject", ()) for (k, v) in rdn if k == "commonName"),
            None,
        )
        with lock:
            count[0] += 1
            n = count[0]
            new = False
            if self.headers.get("authorization") != "Bearer " + TOKEN:
                status = 401
            elif n <= FAIL_FIRST:
                status = 503
            elif not key or not all(c in "0123456789abcdef" for c in key):
                status = 400
            else:
                path = os.path.join(DIR, key + ".xml")
                new = not os.path.exists(path)
                if new:
                    with open(path, "wb") as f:
                        f.write(body)
                status = 201 if new else 200
            line = {
                "n": n,
                "key": key,
                "status": status,
                "content_type": self.headers.get("content-type"),
                "client_cn": cn,
                "new": new,
            }
            with open(os.path.join(DIR, "got.jsonl"), "a", encoding="utf-8") as f:
                f.write(json.dumps(line) + "\n")
        self.send_response(status)
        text = b"platform busy" if status == 503 else b""
        self.send_header("content-length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def log_message(self, *args):
        pass


ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(os.path.join(CERTS, "server.pem"), os.path.join(CERTS, "server.key"))
ctx.verify_mode = ssl.CERT_REQUIRED
ctx.load_verify_locations(os.path.join(CERTS, "ca.pem"))
server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
threading.Timer(LIFETIME, server.shutdown).start()
print("ready", flush=True)
server.serve_forever()
