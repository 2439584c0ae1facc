"""A thin Python client for dialkv.

The Thrift code generated from transport/thrift/dialkv.thrift lives in
dialkv_gen/ (regenerate with `make gen`); this module wraps it:

    from dialkv_client import Client
    with Client("127.0.0.1", 7379) as c:
        c.set("greeting", "hello")
        c.get("greeting")              # b'hello'
        c.call("INCR", "n")            # 1
        c.execute([("SET", "a", "1"), ("GET", "a")])   # ['OK', b'1']

Replies become Python values: NIL -> None, STATUS -> str, INT -> int,
FLOAT -> float, BULK -> bytes, ARRAY -> list. `call` raises the typed
exceptions of the IDL (dialkv.ttypes.WrongType, ConditionFailed, ...);
inside `execute` a failed command's entry is a ReplyFailure instead, as
in a Redis pipeline. The session token of each response is sent with the
next request automatically (read-your-writes across replicas).
Nothing is retried: a failed call raises, and the caller decides.

TLS and logins (docs/security.md): tls_ca turns TLS on and verifies the
node against that CA; tls_cert/tls_key present a client certificate (its
common name is the principal). user with password, or token, log the
connection in with the IDL's `login` call right after connecting (a
refused login raises ttypes.Unauthenticated); they need TLS, so that no
secret crosses the network in clear. Secrets are not kept on the object.

    with Client("127.0.0.1", 7379, tls_ca="certs/ca.crt",
                user="bob", password=open("pw.txt").read().strip()) as c:
        c.principal                    # 'bob'
"""

import os
import ssl
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "dialkv_gen"))

from thrift.protocol import TBinaryProtocol, TCompactProtocol  # noqa: E402
from thrift.transport import TSocket, TSSLSocket, TTransport  # noqa: E402

from dialkv import DialKV  # noqa: E402
from dialkv import ttypes  # noqa: E402

__all__ = ["Client", "ReplyFailure", "to_python", "ttypes"]


class ReplyFailure(Exception):
    """A command inside a batch that failed on its own (a Reply of kind ERROR)."""

    def __init__(self, code, message="", condition="", version=0):
        super().__init__("%s %s" % (code, message) if message else code)
        self.code = code
        self.message = message
        self.condition = condition
        self.version = version

    def __eq__(self, other):
        return isinstance(other, ReplyFailure) and (self.code, self.message) == (other.code, other.message)

    def __repr__(self):
        return "ReplyFailure(%r, %r)" % (self.code, self.message)


def to_python(reply):
    """Converts a ttypes.Reply to a Python value (see the module doc)."""
    k = reply.kind
    if k == ttypes.ReplyKind.NIL:
        return None
    if k == ttypes.ReplyKind.STATUS:
        return (reply.str or b"").decode("utf-8", "replace")
    if k == ttypes.ReplyKind.INT:
        return reply.int_val or 0
    if k == ttypes.ReplyKind.FLOAT:
        return reply.dbl or 0.0
    if k == ttypes.ReplyKind.BULK:
        return reply.str if reply.str is not None else b""
    if k == ttypes.ReplyKind.ARRAY:
        return [to_python(r) for r in (reply.array or [])]
    if k == ttypes.ReplyKind.ERROR:
        e = reply.error or ttypes.ReplyError(code="ERR")
        return ReplyFailure(e.code, e.message or "", e.condition or "", e.version or 0)
    raise ValueError("unknown reply kind %r" % (k,))


def _b(x):
    """Arguments may be bytes, str or numbers; the wire takes bytes."""
    if isinstance(x, bytes):
        return x
    if isinstance(x, str):
        return x.encode("utf-8")
    if isinstance(x, (int, float)):
        return repr(x).encode("ascii")
    raise TypeError("argument %r: want bytes, str, int or float" % (x,))


def command(name, *args):
    """Builds a ttypes.Command."""
    return ttypes.Command(name=name.upper(), argv=[_b(a) for a in args])


class Client(object):
    """One connection to a dialkv node (framed transport).

    protocol is "binary" (default) or "compact"; namespace "" means the
    default namespace; timeout is in seconds. tls_ca, tls_cert, tls_key and
    server_hostname (default: host) set up TLS; user and password, or
    token, log in (see the module doc). principal is the name the node
    logged the connection in as (None without a login).
    """

    def __init__(self, host="127.0.0.1", port=7379, namespace="", protocol="binary", timeout=10.0,
                 tls_ca=None, tls_cert=None, tls_key=None, server_hostname=None,
                 user=None, password=None, token=None):
        if (password is None) != (user is None):
            raise ValueError("user and password go together")
        if user is not None and token is not None:
            raise ValueError("log in with user and password, or with a token, not both")
        if (user is not None or token is not None) and tls_ca is None:
            raise ValueError("a login needs TLS (tls_ca): secrets must not cross the network in clear")
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if tls_ca is not None:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=tls_ca)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            if tls_cert is not None:
                ctx.load_cert_chain(tls_cert, tls_key)
            # The context checks the node's certificate and name; thrift's
            # own extra check (validate_callback) would repeat it.
            sock = TSSLSocket.TSSLSocket(host, port, ssl_context=ctx,
                                         server_hostname=server_hostname or host,
                                         validate_callback=lambda cert, hostname: None)
        elif tls_cert is not None:
            raise ValueError("tls_cert needs tls_ca")
        else:
            sock = TSocket.TSocket(host, port)
        sock.setTimeout(timeout * 1000.0)
        self._transport = TTransport.TFramedTransport(sock)
        if protocol == "binary":
            proto = TBinaryProtocol.TBinaryProtocol(self._transport)
        elif protocol == "compact":
            proto = TCompactProtocol.TCompactProtocol(self._transport)
        else:
            raise ValueError("protocol %r: want binary or compact" % (protocol,))
        self._client = DialKV.Client(proto)
        self.namespace = namespace
        self.token = None
        self.last_version = 0
        self.principal = None
        self._transport.open()
        try:
            if token is not None:
                self.login("", token)
            elif user is not None:
                self.login(user, password)
        except Exception:
            self._transport.close()
            raise

    def close(self):
        self._transport.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _opts(self):
        return ttypes.RequestOptions(ns=self.namespace or None, token=self.token)

    def _keep(self, resp):
        if resp.token:
            self.token = resp.token
        return resp

    def ping(self):
        """Returns the serving node's ttypes.NodeInfo."""
        return self._client.ping()

    def login(self, user, secret):
        """Logs this connection in: user with its password, or user "" with
        a token (str or bytes). Returns the principal and keeps it in
        self.principal; raises ttypes.Unauthenticated if refused (the
        connection is then unauthenticated)."""
        self.principal = None
        self.principal = self._client.login(user, _b(secret))
        return self.principal

    def call(self, name, *args):
        """Runs one command; raises the IDL's typed exceptions on errors."""
        resp = self._keep(self._client.call(self._opts(), command(name, *args)))
        r = resp.replies[0]
        self.last_version = r.version or 0
        return to_python(r)

    def execute(self, commands):
        """Runs a batch (not atomic): commands is a list of (name, arg, ...)
        tuples; returns one value per command, ReplyFailure for the failed ones."""
        cmds = [command(c[0], *c[1:]) for c in commands]
        resp = self._keep(self._client.execute(self._opts(), cmds))
        return [to_python(r) for r in resp.replies]

    def transaction(self, commands, conditions=()):
        """Applies commands atomically if every ttypes.Condition holds;
        raises ttypes.ConditionFailed otherwise."""
        cmds = [command(c[0], *c[1:]) for c in commands]
        resp = self._keep(self._client.transaction(self._opts(), list(conditions), cmds))
        return [to_python(r) for r in resp.replies]

    def scan(self, prefix=b"", start=b"", end=b"", limit=0, keys_only=False, cursor=None):
        """One page of a scan: (keys, values or None, cursor of the next page
        or None at the end). Pass the cursor back, with the same bounds, to
        continue."""
        req = ttypes.ScanRequest(prefix=_b(prefix), start_key=_b(start), end_key=_b(end),
                                 limit=limit, keys_only=keys_only,
                                 cursor=None if cursor is None else _b(cursor))
        resp = self._keep(self._client.scan(self._opts(), req))
        values = None if resp.values is None else [to_python(v) for v in resp.values]
        return resp.keys, values, (resp.next_key or None)

    def publish(self, channel, payload):
        return self._client.publish(self._opts(), channel, _b(payload))

    # Shorthands for the commonest commands.
    def get(self, key):
        return self.call("GET", key)

    def set(self, key, value, *options):
        return self.call("SET", key, value, *options)

    def delete(self, *keys):
        return self.call("DEL", *keys)

    def incr(self, key):
        return self.call("INCR", key)
