"""transport.python_client: the Python client (transport/python/brigade.py)
against a real node, tests/tools/python_peer.c, started as a child process.

Run by CTest with BRG_PYTHON_PEER (the peer's path) and BRG_SOURCE_DIR set;
by hand:
    BRG_PYTHON_PEER=build/tests/python_peer /usr/bin/python3 tests/python/test_client.py -v
Without pyzmq or msgpack it exits 77, which CTest reports as skipped.

The node service (brg.node) assertions are in their own test methods
(test_node_service_*): a later change restricts what clients may reach.
"""

import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid

try:
    import msgpack
    import zmq
except ImportError as e:
    sys.stderr.write("SKIPPED: transport.python_client needs python3-zmq and python3-msgpack "
                     "for %s (%s)\n" % (sys.executable, e))
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("BRG_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SOURCE_DIR, "transport", "python"))
import brigade  # noqa: E402

# Generous: the peer may run under ASan or TSan on a busy machine.
ASK_MS = 20000


def start_peer(*listen):
    """Start python_peer; returns (process, endpoints, node uuid bytes)."""
    exe = os.environ.get("BRG_PYTHON_PEER") or os.path.join(SOURCE_DIR, "build", "tests",
                                                             "python_peer")
    args = [exe]
    for ep in listen:
        args += ["--listen", ep]
    # Unbuffered: select() must see every line that readline() has not read.
    p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    endpoints, node = [], None
    deadline = time.monotonic() + 60
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([p.stdout], [], [], left)[0]:
            p.kill()
            p.wait()
            raise RuntimeError("python_peer did not start")
        line = p.stdout.readline().decode().strip()
        if not line:
            raise RuntimeError("python_peer exited: %s" % p.wait())
        if line == "ready":
            return p, endpoints, node
        key, _, value = line.partition(" ")
        if key == "endpoint":
            endpoints.append(value)
        elif key == "key":
            p.server_key = value  # the node's CURVE public key (Z85)
        elif key == "uuid":
            node = uuid.UUID(value).bytes


def stop_peer(p):
    """EOF on its stdin: the peer destroys its system and exits 0."""
    p.stdin.close()
    p.stdout.close()
    try:
        return p.wait(timeout=120)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        return "killed"


PEER = None


def setUpModule():
    global PEER, ENDPOINTS, TCP, IPC, NODE, TMP, KEYS, CLIENT_CERT, CURVE
    TMP = tempfile.mkdtemp(prefix="brg-py-")
    # The peers' key directory (PROTOCOL.md section 22), with this client's
    # certificate in allowed/ as a client key; every peer started here
    # inherits it, so all share one node key pair.
    KEYS = os.path.join(TMP, "keys")
    os.makedirs(os.path.join(KEYS, "allowed"), mode=0o700)
    os.environ["BRG_KEY_DIR"] = KEYS
    public, secret = zmq.curve_keypair()
    CLIENT_CERT = os.path.join(KEYS, "allowed", "client.key")
    write_zcert(CLIENT_CERT, public, secret, "py-tests")
    PEER, ENDPOINTS, NODE = start_peer("tcp://127.0.0.1:0", "ipc://%s/node.sock" % TMP)
    TCP, IPC = ENDPOINTS
    CURVE = (public, secret, PEER.server_key)


def tearDownModule():
    rc = stop_peer(PEER)
    try:
        os.unlink(os.path.join(TMP, "node.sock"))
    except OSError:
        pass
    shutil.rmtree(TMP)
    # A sanitizer report, a leak or a crash of the node fails the run.
    if rc != 0:
        raise AssertionError("python_peer exited with %s" % rc)


def client(**kw):
    kw.setdefault("timeout_ms", ASK_MS)
    kw.setdefault("curve", CURVE)
    return brigade.Client(TCP, **kw)


def wait_for(fn, timeout=30.0, step=0.02):
    """Poll fn() until it returns something true; returns it."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(step)


class ErrorTable(unittest.TestCase):
    def test_table_equals_error_h(self):
        with open(os.path.join(SOURCE_DIR, "include", "brigade", "error.h")) as f:
            header = f.read()
        rows = re.findall(r'XX\(\s*(\w+)\s*,\s*(-?\d+)\s*,\s*"((?:[^"\\]|\\.)*)"\s*\)', header)
        self.assertGreater(len(rows), 10)
        table = tuple((name, int(code), text) for name, code, text in rows)
        self.assertEqual(brigade.ERRORS, table,
                         "brigade.ERRORS must be a copy of BRG_ERRNO_MAP in error.h")

    def test_every_code_has_its_class(self):
        self.assertEqual(set(brigade.ERROR_CLASSES), {n for n, _, _ in brigade.ERRORS})
        for name, code, text in brigade.ERRORS:
            e = brigade.error_for(code, "brg.error")
            self.assertIs(type(e), brigade.ERROR_CLASSES[name])
            self.assertIsInstance(e, brigade.ReplyError)
            self.assertEqual((e.code, e.name, e.text, e.tag), (code, "BRG_" + name, text,
                                                               "brg.error"))
        self.assertIsInstance(brigade.error_for(-3), brigade.NotFound)
        self.assertIsInstance(brigade.error_for(-4), brigade.Timeout)
        e = brigade.error_for(-1000)
        self.assertIs(type(e), brigade.ReplyError)
        self.assertEqual((e.code, e.name), (-1000, "BRG_EUNKNOWN"))
        self.assertEqual(brigade.error_name(0), "BRG_OK")


class RefClass(unittest.TestCase):
    def test_ref(self):
        node = uuid.uuid4()
        r = brigade.Ref(node, (7 << 32) | 3)
        self.assertEqual((r.slot, r.generation, r.uuid), (3, 7, node))
        self.assertEqual(str(r), "%s/3.7" % node)
        self.assertEqual(r, brigade.Ref(node.bytes, (7 << 32) | 3))
        self.assertEqual(r, brigade.Ref(str(node), (7 << 32) | 3))
        self.assertEqual(len({r, brigade.Ref(node, (7 << 32) | 3)}), 1)
        ext = r.to_ext()
        self.assertEqual((ext.code, ext.data), (1, node.bytes + ((7 << 32) | 3).to_bytes(8, "big")))
        # packed as c7 18 01 + 24 bytes, and back
        self.assertEqual(brigade.pack(r)[:3], b"\xc7\x18\x01")
        self.assertEqual(brigade.unpack(brigade.pack({"r": [r]})), {"r": [r]})
        # an ext 1 that is not 24 bytes, and other ext types, are just values
        for other in (msgpack.ExtType(1, b"short"), msgpack.ExtType(2, bytes(24))):
            self.assertEqual(brigade.unpack(brigade.pack(other)), other)
        with self.assertRaises(ValueError):
            brigade.Ref(b"short", 1)
        with self.assertRaises(ValueError):
            brigade.Ref(node, -1)
        with self.assertRaises(AttributeError):
            r.id = 4


class Basics(unittest.TestCase):
    def setUp(self):
        self.c = client()

    def tearDown(self):
        self.c.close()

    def test_handshake(self):
        c = self.c
        self.assertEqual(c.node_name, "python-peer")
        self.assertEqual(c.node_ref, brigade.Ref(NODE, 0))
        self.assertEqual(c.welcome["role"], "node")
        self.assertEqual(c.welcome["cluster"], "brigade")
        self.assertEqual(c.ref, brigade.Ref(c.uuid, 1))
        self.assertIsNone(c.closed)

    def test_every_msgpack_type_round_trips(self):
        values = [
            None, True, False,
            0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63, 2**64 - 1,
            -1, -32, -33, -128, -129, -32768, -32769, -2**31, -2**31 - 1, -2**63,
            0.0, -0.0, 1.5, -2.25, 1e300, float("inf"), float("-inf"),
            "", "a", "é☃", "x" * 31, "y" * 32, "z" * 255, "w" * 256, "v" * 70000,
            b"", b"\x00", bytes(range(256)), b"\xff" * 70000,
            [], [1, [2, [3, [4]]]], list(range(20)), [None] * 70000,
            {}, {"a": 1}, {1: "int key", -2: b"bin value", "s": [1, {"x": None}]},
            {"k%d" % i: i for i in range(20)},
            {"a": {"b": {"c": [1, {"d": b"x", "e": [{}, []]}]}}},
            msgpack.ExtType(5, b"abc"), msgpack.Timestamp(1700000000, 123),  # ext -1
            msgpack.ExtType(1, b"not a ref: 24 bytes is"),
            msgpack.ExtType(127, b""),
        ]
        for v in values:
            tag, args = self.c.ask("echo", "one", v)
            self.assertEqual((tag, args), ("one", [v]), repr(v)[:80])
            self.assertEqual([type(a) for a in args], [type(v)])
        tag, args = self.c.ask("echo", "all", *values)
        self.assertEqual((tag, args), ("all", values))
        self.assertEqual(self.c.ask("echo", "none"), ("none", []))
        self.assertEqual(self.c.ask("echo", "t" * 31), ("t" * 31, []))
        # nested 64 deep is the limit of one value (PROTOCOL.md section 19)
        deep = 1
        for _ in range(64):
            deep = [deep]
        self.assertEqual(self.c.ask("echo", "deep", deep), ("deep", [deep]))

    def test_refs_round_trip(self):
        other = brigade.Ref(uuid.uuid4(), (2 << 32) | 9)
        payload = [self.c.ref, other, {"refs": [other, self.c.node_ref], "r": other}]
        tag, args = self.c.ask("echo", "refs", *payload)
        self.assertEqual(args, payload)
        self.assertIsInstance(args[0], brigade.Ref)
        # the node sends to the client's ref: a plain message, from echo
        self.c.send("echo", "send_to", self.c.ref, 1, "two", other)
        m = self.c.recv(ASK_MS)
        self.assertIsNotNone(m)
        self.assertEqual((m.tag, m.args, m.corr, m.to), ("value", [1, "two", other], 0, 1))
        self.assertEqual(m.sender.node, NODE)
        self.assertNotEqual(m.sender.id, 0)
        # a client reaches actors by exported names only, not by ref or id
        # (PROTOCOL.md section 22)
        with self.assertRaises(brigade.NotPermitted):
            self.c.ask(m.sender, "by-ref", 5)
        with self.assertRaises(brigade.NotPermitted):
            self.c.ask(m.sender.id, "by-id", 6)

    def test_node_asks_the_client(self):
        a = self.c.ask_async("echo", "ask_back", self.c.ref, "meaning?")
        q = self.c.recv(ASK_MS)
        self.assertEqual((q.tag, q.args), ("question", ["meaning?"]))
        self.assertNotEqual(q.corr, 0)
        self.c.reply(q, "yes", 42)
        self.assertEqual(a.result(), ("answer", [42]))
        a = self.c.ask_async("echo", "ask_back", self.c.ref)
        q = self.c.recv(ASK_MS)
        self.c.reply_error(q, -8)
        with self.assertRaises(brigade.AlreadyExists):
            a.result()

    def test_send_then_ask_is_ordered(self):
        base = self.c.ask("counter", "get")[1][0]
        for i in range(1, 101):
            self.c.send("counter", "add", i)
        self.assertEqual(self.c.ask("counter", "get"), ("value", [base + 5050]))

    def test_unknown_name(self):
        with self.assertRaises(brigade.NoActor) as cm:
            self.c.ask("nobody", "hello")
        e = cm.exception
        self.assertEqual((e.code, e.name, e.tag), (-3, "BRG_ENOACTOR", "brg.error"))
        self.assertIsInstance(e, brigade.NotFound)
        # a plain send to nobody is a dead letter on the node, not an error
        self.c.send("nobody", "hello")
        self.assertEqual(self.c.ask("echo", "still"), ("still", []))

    def test_unhandled_tag_is_noactor(self):
        # counter returns BRG_UNHANDLED: a dead letter, the ask answered -3
        with self.assertRaises(brigade.NoActor):
            self.c.ask("counter", "no-such-tag")

    def test_error_replies(self):
        for name, code, _ in brigade.ERRORS:
            with self.assertRaises(brigade.ERROR_CLASSES[name]) as cm:
                self.c.ask("fail", "fail", code)
            self.assertEqual((cm.exception.code, cm.exception.name), (code, "BRG_" + name))
        with self.assertRaises(brigade.ReplyError) as cm:
            self.c.ask("fail", "fail", -123456)
        self.assertEqual((cm.exception.code, cm.exception.name), (-123456, "BRG_EUNKNOWN"))

    def test_timeout_and_late_reply_discarded(self):
        t0 = time.monotonic()
        with self.assertRaises(brigade.Timeout) as cm:
            self.c.ask("slow", "sleep", 600, timeout_ms=100)
        self.assertGreaterEqual(time.monotonic() - t0, 0.1)
        self.assertEqual(cm.exception.code, -4)
        self.assertEqual(self.c.late_replies, 0)
        # the next ask gets its own reply, never the late "slept"
        self.assertEqual(self.c.ask("slow", "sleep", 0), ("slept", [0]))
        self.assertEqual(self.c.late_replies, 1)
        self.assertEqual(self.c.ask("echo", "after"), ("after", []))
        self.assertEqual(self.c.poll(100), 0)  # nothing left over for recv

    def test_a_reply_that_came_in_time_is_kept(self):
        # The owner was busy past the deadline, but the reply had arrived.
        a = self.c.ask_async("echo", "busy", timeout_ms=300)
        time.sleep(1.0)
        self.assertEqual(a.result(), ("busy", []))
        # poll(0) reads what arrived without waiting
        b = self.c.ask_async("echo", "polled")
        wait_for(lambda: self.c.poll(0) == 0 and b.done())
        self.assertTrue(b.done())
        self.assertEqual(b.result(), ("polled", []))

    def test_many_asks_in_flight(self):
        asks = [self.c.ask_async("echo", "n", i, "x" * (i % 7)) for i in range(1000)]
        for i, a in reversed(list(enumerate(asks))):
            self.assertEqual(a.result(), ("n", [i, "x" * (i % 7)]))
        self.assertEqual(self.c.late_replies, 0)

    def test_replies_out_of_order(self):
        slow = self.c.ask_async("slow", "sleep", 300)
        fast = self.c.ask_async("echo", "fast")
        self.assertEqual(fast.result(), ("fast", []))
        self.assertFalse(slow.done())
        self.assertEqual(slow.result(), ("slept", [300]))

    def test_bad_arguments_are_refused_here(self):
        with self.assertRaises(ValueError):
            self.c.send("echo", "t" * 32)
        with self.assertRaises(ValueError):
            self.c.send("n" * 64, "tag")
        with self.assertRaises(ValueError):
            self.c.send("echo", "")
        with self.assertRaises(TypeError):
            self.c.send(1.5, "tag")
        with self.assertRaises(TypeError):
            self.c.send("echo", "tag", object())
        self.assertEqual(self.c.ask("echo", "fine"), ("fine", []))


class Transports(unittest.TestCase):
    def test_ipc(self):
        with brigade.Client(IPC, timeout_ms=ASK_MS) as c:
            self.assertEqual(c.ask("echo", "ipc", 1), ("ipc", [1]))

    def test_more_client_sessions_than_the_peer_table_holds(self):
        # Every session is a fresh node UUID; the node takes an ended
        # client's entry out of its peer table (1024 live entries), so a
        # tool that polls a node (brgctl) is never refused.
        for i in range(1100):
            with brigade.Client(IPC, timeout_ms=ASK_MS) as c:
                if i % 100 == 0 or i >= 1090:
                    self.assertEqual(c.ask("echo", "n", i), ("n", [i]))

    def test_two_clients_are_two_sessions(self):
        with client(name="a") as a, client(name="b") as b:
            self.assertNotEqual(a.uuid, b.uuid)
            pa = a.ask_async("echo", "a")
            pb = b.ask_async("echo", "b")
            self.assertEqual((pa.result(), pb.result()), (("a", []), ("b", [])))


class Permissions(unittest.TestCase):
    """What a client key may reach (PROTOCOL.md section 22): the names the
    node exports, never the node service, never an actor by its id; and
    over tcp:// only with CURVE and an allowed key."""

    def setUp(self):
        self.c = client()

    def tearDown(self):
        self.c.close()

    def test_node_service_is_not_permitted(self):
        for tag in ("ping", "info"):
            with self.assertRaises(brigade.NotPermitted) as cm:
                self.c.ask("brg.node", tag)
            self.assertEqual(cm.exception.code, -20)

    def test_a_name_not_exported_is_not_permitted(self):
        with self.assertRaises(brigade.NotPermitted):
            self.c.ask("not-exported", "hi")
        # exported with no actor behind it: the name is reachable, no actor
        with self.assertRaises(brigade.NoActor):
            self.c.ask("nobody", "hi")
        self.assertEqual(self.c.ask("echo", "still"), ("still", []))

    def test_an_actor_by_id_is_not_permitted(self):
        with self.assertRaises(brigade.NotPermitted):
            self.c.ask(brigade.Ref(NODE, 0x100000001), "hi")

    def test_plaintext_over_tcp_is_refused(self):
        with self.assertRaises(brigade.Timeout):
            brigade.Client(TCP, timeout_ms=500)

    def test_an_unknown_key_is_refused(self):
        public, secret = zmq.curve_keypair()
        with self.assertRaises(brigade.Timeout):
            brigade.Client(TCP, timeout_ms=500, curve=(public, secret, CURVE[2]))

    def test_ipc_needs_no_keys(self):
        with brigade.Client(IPC, timeout_ms=ASK_MS) as c:
            self.assertEqual(c.ask("echo", "plain"), ("plain", []))


class SessionEnd(unittest.TestCase):
    def reason(self, node):
        """Why the node says the session of the client node ended."""
        with client(name="watcher") as w:
            def ask():
                try:
                    return w.ask("stats", "reason", brigade.Ref(node, 0))[1][0]
                except brigade.NotFound:
                    return None
            return wait_for(ask)

    def test_malformed_frame_ends_the_session(self):
        c = client()
        pending = c.ask_async("slow", "sleep", 200)
        c._sock.send(b"\xc1")  # not msgpack
        with self.assertRaises(brigade.SessionEnded) as cm:
            pending.result()
        e = cm.exception
        self.assertEqual((e.reason, e.code), ("error", 3))
        with self.assertRaises(brigade.SessionEnded):
            c.ask("echo", "after")
        with self.assertRaises(brigade.SessionEnded):
            c.send("echo", "after")
        self.assertIs(c.closed, e)
        c.close()
        self.assertEqual(self.reason(c.uuid), "protocol")

    def test_sequence_gap_ends_the_session(self):
        with client() as c:
            c._out_seq += 1  # skip a BATCH number
            with self.assertRaises(brigade.SessionEnded) as cm:
                c.ask("echo", "gap")
            self.assertEqual((cm.exception.reason, cm.exception.code), ("error", 2))

    def test_control_kind_is_not_allowed(self):
        with client() as c:
            c._batch([[3, "echo", 1, 0, "brg.exit"]])  # LINK
            with self.assertRaises(brigade.SessionEnded) as cm:
                c.ask("echo", "after")
            self.assertEqual((cm.exception.reason, cm.exception.code), ("error", 4))

    def test_cluster_mismatch_is_refused(self):
        with self.assertRaises(brigade.SessionEnded) as cm:
            client(cluster="elsewhere")
        self.assertEqual((cm.exception.reason, cm.exception.code), ("error", 4))

    def test_no_welcome_is_a_timeout(self):
        ctx = zmq.Context.instance()
        mute = ctx.socket(zmq.ROUTER)
        mute.setsockopt(zmq.LINGER, 0)
        port = mute.bind_to_random_port("tcp://127.0.0.1")
        try:
            t0 = time.monotonic()
            with self.assertRaises(brigade.Timeout):
                brigade.Client("tcp://127.0.0.1:%d" % port, timeout_ms=200)
            self.assertLess(time.monotonic() - t0, 5)
        finally:
            mute.close()

    def test_bye_on_close(self):
        with client(name="stats") as s:
            before = s.ask("stats", "get")[1][0]
        with client() as c:
            self.assertEqual(c.ask("echo", "x"), ("x", []))
            for i in range(10):
                c.send("counter", "add", 0)
            self.assertEqual(c.ask("echo", "y"), ("y", []))
        self.assertEqual(c.closed.reason, "closed")
        with self.assertRaises(brigade.SessionEnded):
            c.ask("echo", "after close")
        c.close()  # again: nothing
        self.assertEqual(self.reason(c.uuid), "bye")
        with client(name="stats") as s:
            after = s.ask("stats", "get")[1][0]
        # close() acknowledged the node's replies before BYE: none lost
        self.assertEqual(after["lost_in_flight"], before["lost_in_flight"])

    def test_node_shutdown_is_bye(self):
        p, (ep,), _ = start_peer("tcp://127.0.0.1:0")
        try:
            c = brigade.Client(ep, timeout_ms=ASK_MS, curve=CURVE[:2] + (p.server_key,))
            self.assertEqual(c.ask("echo", "x"), ("x", []))
        finally:
            rc = stop_peer(p)
        self.assertEqual(rc, 0)
        with self.assertRaises(brigade.SessionEnded) as cm:
            c.poll(ASK_MS)
        self.assertEqual((cm.exception.reason, cm.exception.code), ("bye", None))
        c.close()


# ---------------------------------------------------------------------------
# docs/PROTOCOL.md section 17: its example is transport/python/example.py,
# and its raw walk-through and hex dump are what the node really does.


def protocol_section(title):
    with open(os.path.join(SOURCE_DIR, "docs", "PROTOCOL.md")) as f:
        text = f.read()
    start = text.index("\n" + title)
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else len(text)]


def code_blocks(section, lang):
    """The fenced blocks of a language ("" for plain ```), in order."""
    blocks, current = [], None
    for line in section.splitlines(keepends=True):
        if line.startswith("```"):
            if current is None:
                current = (line[3:].strip(), [])
            else:
                if current[0] == lang:
                    blocks.append("".join(current[1]))
                current = None
        elif current is not None:
            current[1].append(line)
    return blocks


class RecordingSocket:
    """A DEALER that records every frame sent and received."""

    def __init__(self, sock, frames):
        self.sock, self.frames = sock, frames

    def __getattr__(self, name):
        return getattr(self.sock, name)

    def send(self, data, *a, **kw):
        self.frames.append(("client → node", bytes(data)))
        return self.sock.send(data, *a, **kw)

    def recv(self, *a, **kw):
        data = self.sock.recv(*a, **kw)
        self.frames.append(("node → client", bytes(data)))
        return data


def match_hex(rows, data):
    """Match the dump's rows (hex bytes, "text", <N bytes>, <str>, then a
    comment) against data; returns None or what did not match."""
    pos = 0
    token = re.compile(r'\s*([0-9a-f]{2}|"[^"]*"|<\d+ bytes>|<str>)(?=\s|$)')
    for row in rows:
        at = 0
        while True:
            m = token.match(row, at)
            if not m:
                break
            at = m.end()
            t = m.group(1)
            if t.startswith('"'):
                want = t[1:-1].encode()
            elif t == "<str>":
                head = data[pos]
                if not 0xa0 <= head <= 0xbf:
                    return "a fixstr at %d" % pos
                pos += 1 + (head & 0x1f)
                continue
            elif t.startswith("<"):
                pos += int(t[1:].split()[0])
                continue
            else:
                want = bytes([int(t, 16)])
            if data[pos:pos + len(want)] != want:
                return "%s at byte %d of %s" % (t, pos, data.hex(" "))
            pos += len(want)
    return None if pos == len(data) else "%d bytes left over" % (len(data) - pos)


class ProtocolSection17(unittest.TestCase):
    def setUp(self):
        self.section = protocol_section("## 17. ")

    def test_example_file_is_the_doc(self):
        with open(os.path.join(SOURCE_DIR, "transport", "python", "example.py")) as f:
            self.assertEqual(code_blocks(self.section, "python")[0], f.read())

    def test_example_runs(self):
        p, (ep,), node = start_peer("tcp://127.0.0.1:0")  # a fresh counter
        try:
            out = subprocess.run([sys.executable,
                                  os.path.join(SOURCE_DIR, "transport", "python", "example.py"),
                                  ep, p.server_key, CLIENT_CERT],
                                 stdout=subprocess.PIPE, timeout=120, check=True)
        finally:
            self.assertEqual(stop_peer(p), 0)
        u = uuid.UUID(bytes=node)
        self.assertEqual(out.stdout.decode().splitlines(), [
            "connected to python-peer %s/0.0" % u,
            "('greet', ['hello', 42, {'k': [1, 2]}, b'\\x00'])",
            "('value', [5])",
            "4950",
            "BRG_ENOACTOR -3",
            "no answer in 100 ms",
            "value ['hi'] %s/1.1" % u])

    def test_raw_walkthrough_is_byte_exact(self):
        source = code_blocks(self.section, "python")[1]
        frames, contexts = [], []
        real_context = zmq.Context

        class Context(real_context):
            def __init__(self, *a, **kw):
                super().__init__(*a, **kw)
                contexts.append(self)

            def socket(self, kind, **kw):
                return RecordingSocket(real_context.socket(self, kind, **kw), frames)

        shim = type(sys)("zmq")
        shim.__dict__.update({k: getattr(zmq, k) for k in dir(zmq) if not k.startswith("__")})
        shim.Context = Context
        saved_zmq, saved_argv = sys.modules["zmq"], sys.argv
        out = []
        sys.modules["zmq"], sys.argv = shim, ["raw.py", IPC]
        try:
            exec(compile(source, "PROTOCOL.md section 17.2", "exec"),
                 {"__name__": "__main__", "print": lambda *a: out.append(" ".join(map(str, a)))})
        finally:
            sys.modules["zmq"], sys.argv = saved_zmq, saved_argv
            for ctx in contexts:
                ctx.term()
        # what it prints is the comment under each print
        expected = re.findall(r"^print\(.*\n# (.*)$", source, re.M)
        self.assertEqual(out, expected)
        # the dump: a header line per frame, then its rows
        dump = code_blocks(self.section, "")[-1]
        doc = []
        for line in dump.splitlines():
            if line.startswith(("client → node", "node → client")):
                doc.append((line[:13], line[13:].strip(), []))
            elif line.strip():
                doc[-1][2].append(line)
        self.assertEqual([(d, name.split()[0]) for d, name, _ in doc],
                         [(d, ["HELLO", "WELCOME", "BATCH", "TICK", "", "BYE", "ERROR"][f[1]])
                          for d, f in ((d, msgpack.unpackb(b)) for d, b in frames)])
        for (direction, name, rows), (_, data) in zip(doc, frames):
            self.assertIsNone(match_hex(rows, data), "%s %s" % (direction, name))


# ---------------------------------------------------------------------------
# CURVE: nodes do not speak CURVE yet; the option's plumbing is tested
# against a pyzmq ROUTER with curve_server that plays a node.


class FakeCurveNode(threading.Thread):
    """A CURVE ROUTER that answers HELLO with WELCOME and echoes asks."""

    def __init__(self, server_secret):
        super().__init__(daemon=True)
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.curve_server = True
        self.sock.curve_secretkey = server_secret
        self.port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.node = uuid.uuid4().bytes
        self.hellos = []
        self.stop = False
        self.start()

    def run(self):
        seq = 0
        while not self.stop:
            if not self.sock.poll(50):
                continue
            rid, data = self.sock.recv_multipart()
            f = msgpack.unpackb(data, raw=False)
            if f[1] == 0:
                self.hellos.append(f[2])
                welcome = {"node": self.node, "sess": 1, "role": "node", "name": "fake",
                           "cluster": "brigade", "ep": None}
                self.sock.send_multipart([rid, msgpack.packb([1, 1, welcome])])
            elif f[1] == 2:
                for kind, to, frm, corr, tag, *args in f[3:]:
                    if kind == 0 and corr:
                        seq += 1
                        self.sock.send_multipart(
                            [rid, msgpack.packb([1, 2, seq, [1, frm, 0, corr, tag] + args])])

    def close(self):
        self.stop = True
        self.join()
        self.sock.close()
        self.ctx.term()


CERT_HEADER_SECRET = """#   ****  Generated on 2026-01-01 00:00:00 by CZMQ  ****
#   ZeroMQ CURVE **Secret** Certificate
#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.

"""
CERT_HEADER_PUBLIC = """#   ****  Generated on 2026-01-01 00:00:00 by CZMQ  ****
#   ZeroMQ CURVE Public Certificate
#   Exchange securely, or use a secure mechanism to verify the contents
#   of this file after exchange. Store public certificates in your home
#   directory, in the .curve subdirectory.

"""


def write_zcert(path, public, secret, name):
    """Write path and path_secret as czmq's zcert_save does."""
    meta = 'metadata\n    name = "%s"\n    role = "client"\n' % name
    with open(path, "w") as f:
        f.write(CERT_HEADER_PUBLIC + meta + 'curve\n    public-key = "%s"\n' % public.decode())
    with open(path + "_secret", "w") as f:
        f.write(CERT_HEADER_SECRET + meta + 'curve\n    public-key = "%s"\n    secret-key = "%s"\n'
                % (public.decode(), secret.decode()))


@unittest.skipUnless(zmq.has("curve"), "libzmq without CURVE")
class Curve(unittest.TestCase):
    def setUp(self):
        self.server_public, self.server_secret = zmq.curve_keypair()
        self.public, self.secret = zmq.curve_keypair()
        self.node = FakeCurveNode(self.server_secret)
        self.ep = "tcp://127.0.0.1:%d" % self.node.port

    def tearDown(self):
        self.node.close()

    def check(self, curve):
        with brigade.Client(self.ep, curve=curve, timeout_ms=ASK_MS) as c:
            self.assertEqual(c.node_name, "fake")
            self.assertEqual(c.ask("echo", "over curve", [1, b"2"]), ("over curve", [[1, b"2"]]))
        self.assertEqual(self.node.hellos[-1]["role"], "client")

    def test_z85_strings(self):
        self.check((self.public.decode(), self.secret.decode(), self.server_public.decode()))

    def test_raw_keys_in_a_dict(self):
        z = zmq.utils.z85.decode
        self.check({"public": z(self.public), "secret": z(self.secret),
                    "server": z(self.server_public)})

    def test_wrong_server_key_is_a_timeout(self):
        other, _ = zmq.curve_keypair()
        with self.assertRaises(brigade.Timeout):
            brigade.Client(self.ep, curve=(self.public, self.secret, other), timeout_ms=300)
        self.assertEqual(self.node.hellos, [])

    def test_no_curve_against_a_curve_server_is_a_timeout(self):
        with self.assertRaises(brigade.Timeout):
            brigade.Client(self.ep, timeout_ms=300)

    def test_load_cert(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "client.cert")
            write_zcert(path, self.public, self.secret, "py-test")
            spath = os.path.join(d, "server.cert")
            write_zcert(spath, self.server_public, self.server_secret, "node")
            mine = brigade.load_cert(path)
            self.assertEqual(mine, brigade.load_cert(path + "_secret"))
            self.assertEqual((mine.public, mine.secret), (self.public.decode(),
                                                          self.secret.decode()))
            self.assertEqual(mine.metadata, {"name": "py-test", "role": "client"})
            os.unlink(spath + "_secret")
            server = brigade.load_cert(spath)
            self.assertIsNone(server.secret)
            self.check((mine.public, mine.secret, server.public))
            # pyzmq's own writer (zmq.auth) writes the same format
            import zmq.auth
            pub, sec = zmq.auth.create_certificates(d, "pyzmq")
            cert = brigade.load_cert(pub)
            self.assertEqual(cert.public.encode(), zmq.auth.load_certificate(sec)[0])
            self.assertEqual(cert.secret.encode(), zmq.auth.load_certificate(sec)[1])

    def test_load_cert_rejects_garbage(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "bad")
            with open(path, "w") as f:
                f.write("curve\n    secret-key = \"x\"\n")
            with self.assertRaises(ValueError):
                brigade.load_cert(path)


if __name__ == "__main__":
    unittest.main()
