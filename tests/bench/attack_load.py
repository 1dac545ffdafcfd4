#!/usr/bin/env python3
"""The attack load of issue 16's "under attack" scenario (docs/under-attack.md), loopback only.

Opens --http idle sockets to the HTTP listener (they never send a byte), --mllp plain MLLP
connections each sending a start block and --frame-kib KiB of a frame that never ends, and
--dicom connections to the DICOM listener each sending an A-ASSOCIATE-RQ header announcing
1,000 bytes and then one byte a second. Prints one JSON line once the load is in place, then
holds it until SIGTERM/SIGINT or --max-seconds: each second, a socket the server closed (an
idle HTTP one at the header-read timeout, a trickler at the DICOM PDU timeout, a frame over
the MLLP budget) is opened again, as a persistent attacker would. Reports how many were
replaced. Standard library only.
"""
import argparse
import json
import signal
import socket
import sys
import time


def loopback(addr):
    host, _, port = addr.rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        sys.exit("attack_load: loopback targets only, not %r" % addr)
    return ("127.0.0.1", int(port))


def closed(s):
    """Whether the server closed `s` (EOF or reset); never waits (the sockets are blocking)."""
    try:
        return s.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--http-addr", required=True)
    p.add_argument("--mllp-addr", required=True)
    p.add_argument("--dicom-addr", required=True)
    p.add_argument("--http", type=int, default=2000)
    p.add_argument("--mllp", type=int, default=100)
    p.add_argument("--frame-kib", type=int, default=96)
    p.add_argument("--dicom", type=int, default=8)
    p.add_argument("--max-seconds", type=float, default=600)
    a = p.parse_args()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = a.http + a.mllp + a.dicom + 256
        if soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    except (ImportError, ValueError, OSError):
        pass
    frame = b"\x0bMSH|^~\\&|LIS|ATTACK|HUREN|REGION|20250624101500||ORU^R01|X|P|2.5.1\r"
    frame = frame + b"A" * (a.frame_kib * 1024 - len(frame))
    kinds = {
        "http": (loopback(a.http_addr), b""),
        "mllp": (loopback(a.mllp_addr), frame),
        "dicom": (loopback(a.dicom_addr), b"\x01\x00\x00\x00\x03\xe8"),
    }

    def opened(kind):
        addr, first = kinds[kind]
        s = socket.create_connection(addr, timeout=5)
        s.settimeout(None)  # blocking: closed() peeks with MSG_DONTWAIT and must not wait
        try:
            if first:
                s.sendall(first)
        except OSError:
            pass  # closed by the server at once: replaced at the next round
        return s

    http = [opened("http") for _ in range(a.http)]
    mllp = [opened("mllp") for _ in range(a.mllp)]
    dicom = [opened("dicom") for _ in range(a.dicom)]
    replaced = {"http": 0, "mllp": 0, "dicom": 0}
    print(json.dumps({"attack": "in place", "http": a.http, "mllp": a.mllp, "dicom": a.dicom}), flush=True)
    end = time.monotonic() + a.max_seconds
    while not stop and time.monotonic() < end:
        time.sleep(1)
        for s in dicom:
            try:
                s.send(b"\x00")
            except OSError:
                pass
        for kind, socks in (("http", http), ("mllp", mllp), ("dicom", dicom)):
            for i, s in enumerate(socks):
                if closed(s):
                    s.close()
                    try:
                        socks[i] = opened(kind)
                        replaced[kind] += 1
                    except OSError:
                        pass
    out = {"attack": "ended", "replaced_after_a_close": replaced}
    for s in http + mllp + dicom:
        s.close()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
