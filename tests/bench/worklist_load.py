#!/usr/bin/env python3
"""Load tool of tests/bench/worklist.sh (issue 17, the reading centre), loopback HTTP only.

Subcommands (every request keep-alive over http.client; standard library only; every answer
other than the expected status fails the run: a refusal must not count as a figure):
  upload  N ECG uploads (POST /api/v1/ecg, 201) of one aECG fixture with a fresh document UID
          and patient ID each, over C connections: each becomes a reading task.
  get     GET /api/v1/worklist N times on one connection; latency to the last byte.
  act     claim then sign K scheduled tasks of the worklist, split over R readers (one
          connection and one principal each, all at once); claim and sign latencies.
  visible N times: upload one ECG, then GET the worklist until its task is there; the time
          from the upload's first byte to the end of the GET that shows it.
Prints one JSON line per subcommand with p50/p90/p99/max in milliseconds.
"""
import argparse
import http.client
import json
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
    tasks = len(json.loads(b)["tasks"])
    if a.expect and tasks != a.expect:
        fail("the worklist has %d tasks, expected %d" % (tasks, a.expect))
    print(json.dumps({"get_worklist": tasks, "bytes": size, **pct(lat)}))


def act(a):
    tokens = a.tokens.split(",")
    c = conn(a.addr)
    st, b = call(c, "GET", "/api/v1/worklist", tokens[0])
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


def visible(a):
    template = open(a.ecg, encoding="utf-8").read()
    c, w = conn(a.addr), conn(a.addr)
    lat, gets = [], []
    for i in range(a.start, a.start + a.n):
        t0 = time.perf_counter()
        st, b = call(c, "POST", "/api/v1/ecg", a.token, ecg_body(template, a.salt, i).encode(), "application/xml")
        if st != 201:
            fail("upload: HTTP %d %s" % (st, b[:300]))
        report = json.loads(b)["report"]
        polls = 0
        while True:
            polls += 1
            st, b = call(w, "GET", "/api/v1/worklist", a.reader)
            if st != 200:
                fail("GET worklist: HTTP %d %s" % (st, b[:300]))
            if ('"report":"%s"' % report).encode() in b:
                break
            if time.perf_counter() - t0 > 10:
                fail("task of %s not on the worklist after 10 s" % report)
        lat.append(time.perf_counter() - t0)
        gets.append(polls)
    print(json.dumps({"upload_to_visible": a.n, "gets_needed_max": max(gets), **pct(lat)}))


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
    v = sub.add_parser("visible")
    v.add_argument("--token", required=True)
    v.add_argument("--reader", required=True)
    v.add_argument("--ecg", required=True)
    v.add_argument("-n", type=int, default=20)
    v.add_argument("--start", type=int, default=0)
    v.add_argument("--salt", type=int, default=2)
    a = p.parse_args()
    {"upload": upload, "get": get, "act": act, "visible": visible}[a.cmd](a)


if __name__ == "__main__":
    main()
