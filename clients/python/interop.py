"""Interop driver for the Go test in this folder (interop_test.go).

    python3 interop.py HOST:PORT write PREFIX N [binary|compact]
        writes PREFIX<i> = "py-<i>" for i < N (half one by one, half in one
        batch), a hash PREFIXh and a binary value PREFIXbin, pages through
        them with a prefix scan, then prints "ok".
    python3 interop.py HOST:PORT read PREFIX N [binary|compact]
        reads the keys the Go side wrote (PREFIX<i> = "go-<i>", hash PREFIXh,
        counter PREFIXn) and prints them as one JSON object (bytes as
        latin-1 strings).
    python3 interop.py HOST:PORT auth PREFIX
        connects with TLS and logs in from the environment (DIALKV_TLS_CA,
        DIALKV_USER with DIALKV_PASSWORD, or DIALKV_TOKEN), prints the
        principal, sets PREFIXk = "auth" and prints "ok"; prints
        "unauthenticated" if the login or the SET is refused as such and
        "forbidden" if the SET is refused by the grants.
"""

import json
import os
import sys

from dialkv_client import Client, ttypes


def auth(host, port, prefix):
    env = os.environ.get
    kw = {"tls_ca": env("DIALKV_TLS_CA")}
    if env("DIALKV_USER"):
        kw.update(user=env("DIALKV_USER"), password=env("DIALKV_PASSWORD", ""))
    if env("DIALKV_TOKEN"):
        kw["token"] = env("DIALKV_TOKEN")
    try:
        with Client(host, port, **kw) as c:
            print(c.principal)
            assert c.set(prefix + "k", "auth") == "OK"
            print("ok")
    except ttypes.Unauthenticated:
        print("unauthenticated")
    except ttypes.Forbidden:
        print("forbidden")
    return 0


def main(argv):
    if len(argv) < 5 and not (len(argv) == 4 and argv[2] == "auth"):
        print(__doc__, file=sys.stderr)
        return 2
    host, port = argv[1].rsplit(":", 1)
    if len(argv) == 4 and argv[2] == "auth":
        return auth(host, int(port), argv[3])
    mode, prefix, n = argv[2], argv[3], int(argv[4])
    proto = argv[5] if len(argv) > 5 else "binary"
    with Client(host, int(port), protocol=proto) as c:
        if mode == "write":
            half = n // 2
            for i in range(half):
                assert c.set("%s%d" % (prefix, i), "py-%d" % i) == "OK"
            batch = [("SET", "%s%d" % (prefix, i), "py-%d" % i) for i in range(half, n)]
            assert c.execute(batch) == ["OK"] * len(batch)
            c.call("HSET", prefix + "h", "lang", "python", "n", 3)
            c.set(prefix + "bin", b"\x00\xff\n")
            # Page through the prefix: every key once, in byte order.
            keys, cursor = [], None
            while True:
                page, values, cursor = c.scan(prefix=prefix, limit=7, cursor=cursor)
                keys.extend(page)
                if cursor is None:
                    break
            want = sorted([("%s%d" % (prefix, i)).encode() for i in range(n)] + [(prefix + "h").encode(), (prefix + "bin").encode()])
            assert keys == want, (keys, want)
            print("ok")
        elif mode == "read":
            out = {}
            for i in range(n):
                out["%s%d" % (prefix, i)] = c.get("%s%d" % (prefix, i)).decode("latin-1")
            h = c.call("HGETALL", prefix + "h")
            out[prefix + "h"] = dict(zip([x.decode() for x in h[0::2]], [x.decode() for x in h[1::2]]))
            out[prefix + "n"] = c.call("GET", prefix + "n").decode()
            print(json.dumps(out, sort_keys=True))
        else:
            print("unknown mode %r" % mode, file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
