"""Offline tests of the wrapper: reply conversion and argument encoding."""

import unittest

from dialkv_client import ReplyFailure, command, to_python, ttypes

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


if __name__ == "__main__":
    unittest.main()
