#!/usr/bin/env python3
"""Load tool of tests/bench/worklist.sh (issue 17, the reading centre) and tests/bench/alerts.sh (issue 18), loopback HTTP only.

Subcommands (every request keep-alive over http.client; standard library only; every answer
other than the expected status fails the run: a refusal must not count as a figure):
  upload  N ECG uploads (POST /api/v1/ecg, 201) of one aECG fixture with a fresh document UID
          and patient ID each, over C connections: each becomes a reading task.
  get     GET /api/v1/worklist (default limit: the first 200 open tasks, and the "open"
          count of all) N times on one connection; latency to the last byte.
  act     claim then sign K scheduled tasks of the worklist (?limit=1000), split over R
          readers (one connection and one principal each, all at once); claim and sign latencies.
  event   S task-event streams (GET /api/v1/events, raw sockets read by one selector thread;
          the reader tokens in turn), then N uploads one after another; for each upload and
          each stream the time from the upload's 201 answer (and from before its first byte)
          to that stream's `task` event of the new task.
  alert   S event streams as `event` does, a background uploader (own connection, its own
          thread) sending non-critical ECGs (the STEMI statement replaced) paced at R per second,
          then N STEMI uploads one after another; for each upload and each stream the time from
          the upload's 201 (and from before its first byte) to that stream's `alert` event of
          the new alert; the background's achieved rate; at the end GET /api/v1/alerts?state=all
          must list exactly the N alerts (the background raised none).
  page    sign in to the web page as a reader (GET / for the pre-session cookie and csrf field,
          POST /ui/login), then GET /ui/worklist (whole page) and /ui/worklist?frag=1 (the rows)
          N times each on one connection; latency to the last byte (server time only: no browser).
  session sign in as `page` does and print the huren_session cookie's value (for the browser
          measurement, tests/web/first_render.mjs).
Prints one JSON line per subcommand with p50/p90/p99/max in milliseconds.
"""
import argparse
import http.client
import json
import re
import selectors
import socket
import sys
import threading
import time

UID = "7d1c2a10-5a9b-4f3e-9a51-000000000001"
PATIENT = 'extension="0012345"'
SIGN_BODY = json.dumps(
    {"statements": ["窦性心律", "正常心电图"], "text": "未见明显异常（基准测试）"},
    ensure_ascii=False,
).encode()


def conn(addr):
    host, _, port = addr.rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        sys.exit("worklist_load: loopback targets only, not %r" % addr)
    return http.client.HTTPConnection("127.0.0.1", int(port), timeout=120)


def port_of(addr):
    return int(addr.rpartition(":")[2])


def call(c, method, path, token, body=None, ctype=None):
    h = {"Authorization": "Bearer " + token}
    if ctype:
        h["Content-Type"] = ctype
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    return r.status, r.read()


def pct(xs):
    xs = sorted(xs)
    if not xs:
        return {}
    at = lambda q: xs[min(len(xs) - 1, int(q * len(xs)))]
    return {
        "n": len(xs),
        "min_ms": round(xs[0] * 1e3, 2),
        "p50_ms": round(at(0.50) * 1e3, 2),
        "p90_ms": round(at(0.90) * 1e3, 2),
        "p99_ms": round(at(0.99) * 1e3, 2),
        "max_ms": round(xs[-1] * 1e3, 2),
    }


def ecg_body(template, salt, i):
    # A fresh recording (document UID) of a fresh patient: one task each.
    uid = "7d1c2a10-%04x-4f3e-9a51-%012d" % (salt, i)
    return template.replace(UID, uid, 1).replace(PATIENT, 'extension="B%06d%d"' % (i, salt % 10), 1)


def fail(msg):
    print("worklist_load: " + msg, file=sys.stderr)
    sys.exit(1)


def upload(a):
    template = open(a.ecg, encoding="utf-8").read()
    assert UID in template and PATIENT in template, "fixture changed"
    lat, errors, lock = [], [], threading.Lock()
    nxt = iter(range(a.start, a.start + a.n))

    def worker():
        c = conn(a.addr)
        while True:
            with lock:
                i = next(nxt, None)
            if i is None or errors:
                return
            body = ecg_body(template, a.salt, i).encode()
            t0 = time.perf_counter()
            st, b = call(c, "POST", "/api/v1/ecg", a.token, body, "application/xml")
            dt = time.perf_counter() - t0
            with lock:
                if st != 201:
                    errors.append("upload %d: HTTP %d %s" % (i, st, b[:300]))
                lat.append(dt)

    t0 = time.perf_counter()
    ts = [threading.Thread(target=worker) for _ in range(a.c)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    el = time.perf_counter() - t0
    if errors:
        fail(errors[0])
    print(json.dumps({"upload": a.n, "connections": a.c, "per_s": round(a.n / el, 1), **pct(lat)}))


def get(a):
    c = conn(a.addr)
    lat, size, tasks = [], 0, 0
    for i in range(a.n + a.warmup):
        t0 = time.perf_counter()
        st, b = call(c, "GET", "/api/v1/worklist", a.token)
        dt = time.perf_counter() - t0
        if st != 200:
            fail("GET worklist: HTTP %d %s" % (st, b[:300]))
        if i >= a.warmup:
            lat.append(dt)
        size = len(b)
    ans = json.loads(b)
    tasks, open_ = len(ans["tasks"]), ans["open"]
    if a.expect and open_ != a.expect:
        fail("the worklist has %d open tasks, expected %d" % (open_, a.expect))
    print(json.dumps({"get_worklist": tasks, "open": open_, "bytes": size, **pct(lat)}))


def act(a):
    tokens = a.tokens.split(",")
    c = conn(a.addr)
    st, b = call(c, "GET", "/api/v1/worklist?limit=1000", tokens[0])
    if st != 200:
        fail("GET worklist: HTTP %d %s" % (st, b[:300]))
    ids = [t["id"] for t in json.loads(b)["tasks"] if t["state"] == "scheduled"][: a.k]
    if len(ids) < a.k:
        fail("only %d scheduled tasks, %d wanted" % (len(ids), a.k))
    claims, signs, errors, lock = [], [], [], threading.Lock()
    start = threading.Barrier(len(tokens))

    def reader(token, mine):
        c = conn(a.addr)
        start.wait()
        for tid in mine:
            t0 = time.perf_counter()
            st, b = call(c, "POST", "/api/v1/worklist/%s/claim" % tid, token)
            t1 = time.perf_counter()
            if st != 200:
                errors.append("claim %s: HTTP %d %s" % (tid, st, b[:300]))
                return
            st, b = call(c, "POST", "/api/v1/worklist/%s/sign" % tid, token, SIGN_BODY, "application/json")
            t2 = time.perf_counter()
            if st != 200:
                errors.append("sign %s: HTTP %d %s" % (tid, st, b[:300]))
                return
            with lock:
                claims.append(t1 - t0)
                signs.append(t2 - t1)

    t0 = time.perf_counter()
    ts = [threading.Thread(target=reader, args=(tok, ids[i :: len(tokens)])) for i, tok in enumerate(tokens)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    el = time.perf_counter() - t0
    if errors:
        fail(errors[0])
    print(json.dumps({"readers": len(tokens), "tasks": a.k, "signed_per_s": round(a.k / el, 1),
                      "claim": pct(claims), "sign": pct(signs)}, ensure_ascii=False))


class Stream:
    """One GET /api/v1/events on a raw socket: the answer's head, then its chunked body
    de-chunked and cut into events as bytes come (fed by the selector thread)."""

    def __init__(self, port, token):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.sendall(("GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                           "Authorization: Bearer %s\r\nAccept: text/event-stream\r\n\r\n"
                           % (port, token)).encode())
        self.sock.setblocking(False)
        self.raw, self.head, self.chunked, self.need = b"", None, False, None
        self.text, self.ready, self.tasks, self.closed = b"", False, [], False
        self.alerts = []

    def feed(self, data, t):
        self.raw += data
        if self.head is None:
            end = self.raw.find(b"\r\n\r\n")
            if end < 0:
                return
            self.head, self.raw = self.raw[:end].decode("latin-1"), self.raw[end + 4:]
            status = self.head.split("\r\n", 1)[0]
            if " 200 " not in status + " ":
                raise RuntimeError("events: " + status)
            self.chunked = "transfer-encoding: chunked" in self.head.lower()
        if not self.chunked:
            self.text, self.raw = self.text + self.raw, b""
        while self.chunked:
            if self.need is None:
                nl = self.raw.find(b"\r\n")
                if nl < 0:
                    break
                self.need = int(self.raw[:nl].split(b";")[0], 16)
                self.raw = self.raw[nl + 2:]
                if self.need == 0:
                    self.closed = True
                    break
            if len(self.raw) < self.need + 2:
                break
            self.text += self.raw[: self.need]
            self.raw, self.need = self.raw[self.need + 2:], None
        while True:
            end = self.text.find(b"\n\n")
            if end < 0:
                return
            block, self.text = self.text[:end].decode(), self.text[end + 2:]
            kind, data = "message", []
            for line in block.split("\n"):
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip(" "))
            if kind == "ready":
                self.ready = True
            elif kind == "task":
                self.tasks.append((t, json.loads("\n".join(data))))
            elif kind == "alert":
                self.alerts.append((t, json.loads("\n".join(data))))
            elif kind == "reset":
                raise RuntimeError("events: reset")


def event(a):
    template = open(a.ecg, encoding="utf-8").read()
    readers = a.readers.split(",")
    t_open = time.perf_counter()
    streams, cond, wait_for, close = open_streams(a, readers)
    wait_for(lambda: all(s.ready for s in streams), "ready on every stream")
    opened = time.perf_counter() - t_open
    c = conn(a.addr)
    from_201, from_send, spread, seen = [], [], [], set()
    for i in range(a.start, a.start + a.n):
        with cond:
            base = [len(s.tasks) for s in streams]
        body = ecg_body(template, a.salt, i).encode()
        t0 = time.perf_counter()
        st, b = call(c, "POST", "/api/v1/ecg", a.token, body, "application/xml")
        t1 = time.perf_counter()
        if st != 201:
            fail("upload: HTTP %d %s" % (st, b[:300]))
        wait_for(lambda: all(len(s.tasks) > n for s, n in zip(streams, base)), "task event of upload %d" % i)
        with cond:
            got = [s.tasks[n] for s, n in zip(streams, base)]
        ids = {d["id"] for _, d in got}
        if len(ids) != 1 or ids & seen or got[0][1]["state"] != "scheduled":
            fail("upload %d: unexpected task events %s" % (i, [d for _, d in got][:3]))
        seen |= ids
        times = [t for t, _ in got]
        from_201 += [t - t1 for t in times]
        from_send += [t - t0 for t in times]
        spread.append(max(times) - min(times))
    close()
    print(json.dumps({"streams": a.streams, "tokens": min(len(readers), a.streams), "uploads": a.n,
                      "open_all_s": round(opened, 2),
                      "event_after_201": pct(from_201), "event_after_send": pct(from_send),
                      "first_to_last_stream": pct(spread)}))


STEMI = "急性下壁心肌梗死"


def open_streams(a, readers):
    """S streams read by one selector thread; returns (streams, wait_for, stop)."""
    port = port_of(a.addr)
    cond, errors, stop = threading.Condition(), [], threading.Event()
    streams = [Stream(port, readers[k % len(readers)]) for k in range(a.streams)]
    sel = selectors.DefaultSelector()
    for s in streams:
        sel.register(s.sock, selectors.EVENT_READ, s)

    def pump():  # one thread reads every stream; the arrival time is taken at select's return
        try:
            while not stop.is_set():
                for key, _ in sel.select(0.2):
                    t = time.perf_counter()
                    data = key.fileobj.recv(65536)
                    with cond:
                        if not data:
                            key.data.closed = True
                            sel.unregister(key.fileobj)
                        else:
                            key.data.feed(data, t)
                        cond.notify_all()
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            with cond:
                errors.append(repr(e))
                cond.notify_all()

    th = threading.Thread(target=pump, daemon=True)
    th.start()

    def wait_for(pred, what):
        deadline = time.perf_counter() + a.wait
        with cond:
            while not pred():
                if errors:
                    fail(errors[0])
                if any(s.closed for s in streams):
                    fail("an event stream closed (%s)" % what)
                left = deadline - time.perf_counter()
                if left <= 0:
                    fail("%s: not within %.0f s" % (what, a.wait))
                cond.wait(left)

    def close():
        stop.set()
        th.join()
        for s in streams:
            s.sock.close()

    return streams, cond, wait_for, close


def alert(a):
    template = open(a.ecg, encoding="utf-8").read()
    assert STEMI in template, "fixture changed"
    quiet = template.replace(STEMI, a.quiet_statement)
    readers = a.readers.split(",")
    t_open = time.perf_counter()
    streams, cond, wait_for, close = open_streams(a, readers)
    wait_for(lambda: all(s.ready for s in streams), "ready on every stream")
    opened = time.perf_counter() - t_open

    # Background: non-critical uploads on their own connection, the k-th sent at start + k/R
    # (at once when late); each must answer 201.
    bg_stop, bg = threading.Event(), {"n": 0, "lat": [], "late": [], "err": None}

    def background():
        c = conn(a.addr)
        period = 1.0 / a.rate
        start, k = time.perf_counter(), 0
        bg["t0"] = start
        while not bg_stop.is_set():
            due = start + k * period
            now = time.perf_counter()
            if due > now:
                time.sleep(due - now)
            body = ecg_body(quiet, a.salt + 1, a.start + k).encode()
            t0 = time.perf_counter()
            st, b = call(c, "POST", "/api/v1/ecg", a.token, body, "application/xml")
            t1 = time.perf_counter()
            if st != 201:
                bg["err"] = "background upload %d: HTTP %d %s" % (k, st, b[:300])
                return
            bg["lat"].append(t1 - t0)
            bg["late"].append(max(0.0, t0 - due))
            k += 1
            bg["n"], bg["t1"] = k, t1

    th = threading.Thread(target=background, daemon=True)
    th.start()
    time.sleep(a.settle)  # the background at its pace before the first measured upload
    n0, m0 = bg["n"], time.perf_counter()
    c = conn(a.addr)
    from_201, from_send, spread, seen = [], [], [], set()
    for i in range(a.start, a.start + a.n):
        if bg["err"]:
            fail(bg["err"])
        with cond:
            base = [len(s.alerts) for s in streams]
        body = ecg_body(template, a.salt, i).encode()
        t0 = time.perf_counter()
        st, b = call(c, "POST", "/api/v1/ecg", a.token, body, "application/xml")
        t1 = time.perf_counter()
        if st != 201:
            fail("upload: HTTP %d %s" % (st, b[:300]))

        def new_alert(s, n):  # the first alert event after the upload of an alert not seen before
            return next(((t, d) for t, d in s.alerts[n:] if d["id"] not in seen), None)

        wait_for(lambda: all(new_alert(s, n) for s, n in zip(streams, base)), "alert event of upload %d" % i)
        with cond:
            got = [new_alert(s, n) for s, n in zip(streams, base)]
        ids = {d["id"] for _, d in got}
        if len(ids) != 1 or got[0][1].get("kind") != "stemi" or got[0][1].get("state") != "open":
            fail("upload %d: unexpected alert events %s" % (i, [d for _, d in got][:3]))
        seen |= ids
        times = [t for t, _ in got]
        from_201 += [t - t1 for t in times]
        from_send += [t - t0 for t in times]
        spread.append(max(times) - min(times))
        if a.gap:
            time.sleep(a.gap)
    m1, n1 = time.perf_counter(), bg["n"]
    bg_stop.set()
    th.join()
    if bg["err"]:
        fail(bg["err"])
    close()
    st, b = call(c, "GET", "/api/v1/alerts?state=all", readers[0])
    if st != 200:
        fail("GET alerts: HTTP %d %s" % (st, b[:300]))
    listed = {x["id"] for x in json.loads(b)["alerts"]}
    if listed != seen:
        fail("GET /api/v1/alerts lists %d alerts, %d measured (%d not measured)"
             % (len(listed), len(seen), len(listed - seen)))
    print(json.dumps({"streams": a.streams, "tokens": min(len(readers), a.streams), "uploads": a.n,
                      "alerts_listed": len(listed), "open_all_s": round(opened, 2),
                      "alert_after_201": pct(from_201), "alert_after_send": pct(from_send),
                      "first_to_last_stream": pct(spread),
                      "background": {"target_per_s": a.rate,
                                     "per_s_during_measure": round((n1 - n0) / (m1 - m0), 2),
                                     "per_s_all": round(bg["n"] / (bg["t1"] - bg["t0"]), 2),
                                     "uploads": bg["n"], "measure_s": round(m1 - m0, 2),
                                     "upload": pct(bg["lat"]), "late": pct(bg["late"])}},
                     ensure_ascii=False))


def sign_in(a):
    """Signs in as a browser does: GET / for the pre-session cookie and the csrf field, POST
    /ui/login with a same-host Origin; returns the connection and the `huren_session=…` cookie."""
    port = port_of(a.addr)
    c = conn(a.addr)
    c.request("GET", "/")
    r = c.getresponse()
    home = r.read().decode()
    cookies = r.msg.get_all("Set-Cookie") or []
    pre = next((x.split(";")[0] for x in cookies if x.startswith("huren_presession=")), None)
    m = re.search(r'name="csrf"[^>]*value="([^"]+)"', home)
    if r.status != 200 or not pre or not m:
        fail("sign-in page: HTTP %d, cookie %s, csrf field %s" % (r.status, bool(pre), bool(m)))
    form = "token=%s&csrf=%s" % (a.token, m.group(1))
    origin = "http://127.0.0.1:%d" % port
    c.request("POST", "/ui/login", body=form, headers={
        "Content-Type": "application/x-www-form-urlencoded", "Origin": origin,
        "Referer": origin + "/", "Cookie": pre})
    r = c.getresponse()
    r.read()
    cookies = r.msg.get_all("Set-Cookie") or []
    sess = next((x.split(";")[0] for x in cookies if x.startswith("huren_session=")), None)
    if r.status not in (302, 303) or not sess:
        fail("sign-in: HTTP %d, session cookie %s" % (r.status, bool(sess)))
    return c, sess


def session(a):
    """Prints the value of a fresh huren_session cookie (for tests/web/first_render.mjs)."""
    c, sess = sign_in(a)
    c.close()
    print(sess.split("=", 1)[1])


def page(a):
    c, sess = sign_in(a)
    h = {"Cookie": sess}
    if a.gzip:
        h["Accept-Encoding"] = "gzip"
    out = {"gzip": a.gzip}
    for name, path in (("page", "/ui/worklist"), ("frag", "/ui/worklist?frag=1")):
        lat = []
        for i in range(a.n + a.warmup):
            t0 = time.perf_counter()
            c.request("GET", path, headers=h)
            r = c.getresponse()
            b = r.read()
            dt = time.perf_counter() - t0
            if r.status != 200:
                fail("GET %s: HTTP %d %s" % (path, r.status, b[:300]))
            if i >= a.warmup:
                lat.append(dt)
        if a.gzip:
            if r.getheader("Content-Encoding") != "gzip":
                fail("GET %s: not gzip" % path)
            size, b = len(b), __import__("gzip").decompress(b)
        else:
            size = len(b)
        rows = b.count(b"data-task=")
        if rows == 0:
            fail("GET %s: no task rows" % path)
        out[name] = {"rows": rows, "bytes": size, **pct(lat)}
    print(json.dumps(out))

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--addr", required=True)
    sub = p.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("upload")
    u.add_argument("--token", required=True)
    u.add_argument("--ecg", required=True)
    u.add_argument("-n", type=int, required=True)
    u.add_argument("-c", type=int, default=4)
    u.add_argument("--start", type=int, default=0)
    u.add_argument("--salt", type=int, default=1)
    g = sub.add_parser("get")
    g.add_argument("--token", required=True)
    g.add_argument("-n", type=int, default=50)
    g.add_argument("--warmup", type=int, default=3)
    g.add_argument("--expect", type=int, default=0)
    s = sub.add_parser("act")
    s.add_argument("--tokens", required=True, help="comma-separated, one reader each")
    s.add_argument("-k", type=int, required=True)
    v = sub.add_parser("event")
    v.add_argument("--token", required=True, help="the sender (uploads)")
    v.add_argument("--readers", required=True, help="comma-separated; the streams use them in turn")
    v.add_argument("--ecg", required=True)
    v.add_argument("-s", "--streams", type=int, default=100)
    v.add_argument("-n", type=int, default=20)
    v.add_argument("--start", type=int, default=0)
    v.add_argument("--salt", type=int, default=2)
    v.add_argument("--wait", type=float, default=30.0, help="seconds to wait for an event")
    al = sub.add_parser("alert")
    al.add_argument("--token", required=True, help="the sender (uploads)")
    al.add_argument("--readers", required=True, help="comma-separated; the streams use them in turn")
    al.add_argument("--ecg", required=True, help="a STEMI aECG (its statement %s)" % STEMI)
    al.add_argument("-s", "--streams", type=int, default=100)
    al.add_argument("-n", type=int, default=50)
    al.add_argument("-r", "--rate", type=float, default=20.0, help="background uploads per second")
    al.add_argument("--quiet-statement", default="窦性心律", help="replaces %s in the background's ECGs" % STEMI)
    al.add_argument("--settle", type=float, default=2.0, help="seconds of background before measuring")
    al.add_argument("--gap", type=float, default=0.2, help="seconds between measured uploads")
    al.add_argument("--start", type=int, default=0)
    al.add_argument("--salt", type=int, default=3)
    al.add_argument("--wait", type=float, default=30.0, help="seconds to wait for an event")
    w = sub.add_parser("page")
    w.add_argument("--token", required=True, help="a reader")
    w.add_argument("-n", type=int, default=30)
    w.add_argument("--warmup", type=int, default=3)
    w.add_argument("--gzip", action="store_true", help="Accept-Encoding: gzip, as a browser")
    x = sub.add_parser("session")
    x.add_argument("--token", required=True, help="a reader")
    a = p.parse_args()
    {"upload": upload, "get": get, "act": act, "event": event, "alert": alert, "page": page,
     "session": session}[a.cmd](a)


if __name__ == "__main__":
    main()
