"""Offline tests of the wrapper: reply conversion and argument encoding."""

import unittest

from dialkv_client import Client, ReplyFailure, command, to_python, ttypes

K = ttypes.ReplyKind


class ToPythonTest(unittest.TestCase):
    def test_scalars(self):
        cases = [
            (ttypes.Reply(kind=K.NIL), None),
            (ttypes.Reply(kind=K.STATUS, str=b"OK"), "OK"),
            (ttypes.Reply(kind=K.INT, int_val=-3), -3),
            (ttypes.Reply(kind=K.INT), 0),
            (ttypes.Reply(kind=K.FLOAT, dbl=1.5), 1.5),
            (ttypes.Reply(kind=K.BULK, str=b"\x00v"), b"\x00v"),
            (ttypes.Reply(kind=K.BULK), b""),
        ]
        for reply, want in cases:
            self.assertEqual(to_python(reply), want, reply)

    def test_nested_array(self):
        r = ttypes.Reply(kind=K.ARRAY, array=[
            ttypes.Reply(kind=K.BULK, str=b"a"),
            ttypes.Reply(kind=K.ARRAY, array=[ttypes.Reply(kind=K.INT, int_val=2)]),
            ttypes.Reply(kind=K.ARRAY),
        ])
        self.assertEqual(to_python(r), [b"a", [2], []])

    def test_error_in_batch(self):
        r = ttypes.Reply(kind=K.ERROR, error=ttypes.ReplyError(code="WRONGTYPE", message="wrong kind"))
        got = to_python(r)
        self.assertIsInstance(got, ReplyFailure)
        self.assertEqual(got.code, "WRONGTYPE")
        self.assertEqual(str(got), "WRONGTYPE wrong kind")

    def test_unknown_kind(self):
        with self.assertRaises(ValueError):
            to_python(ttypes.Reply(kind=99))


class CommandTest(unittest.TestCase):
    def test_encoding(self):
        c = command("set", "k", b"\xff", 3, 1.5)
        self.assertEqual(c.name, "SET")
        self.assertEqual(c.argv, [b"k", b"\xff", b"3", b"1.5"])

    def test_bad_argument(self):
        with self.assertRaises(TypeError):
            command("SET", "k", object())


class LoginArgumentsTest(unittest.TestCase):
    """Bad credential arguments are refused before any connection is made
    (port 1 would refuse it anyway)."""

    def test_refused(self):
        for kw in [
            {"user": "bob", "password": "pw"},          # no TLS: secrets in clear
            {"token": "tok"},                           # no TLS
            {"user": "bob", "tls_ca": "ca.crt"},        # user without password
            {"user": "bob", "password": "pw", "token": "t", "tls_ca": "ca.crt"},
            {"tls_cert": "c.crt", "tls_ca": "ca.crt"},  # cert without key
            {"tls_cert": "c.crt", "tls_key": "c.key"},  # cert without CA
        ]:
            with self.assertRaises(ValueError, msg=repr(kw)):
                Client("127.0.0.1", 1, **kw)


if __name__ == "__main__":
    unittest.main()
