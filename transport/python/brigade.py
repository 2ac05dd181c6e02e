"""brigade - a Python client for Brigade nodes.

Speaks the Brigade wire protocol 1.0 (docs/PROTOCOL.md) over one ZeroMQ
DEALER socket, as a *client* (PROTOCOL.md sections 3, 5, 10): it hosts no
actors anyone must reach unasked, it is never dialed, and everything the node
sends it (WELCOME, replies, ERROR, BYE) comes back on the same connection.
Needs only the standard library, pyzmq and msgpack (Debian: python3-zmq,
python3-msgpack).

    import brigade
    with brigade.Client("tcp://127.0.0.1:7400") as c:
        tag, args = c.ask("echo", "greet", "hello", 42)
        c.send("counter", "add", 5)
        try:
            c.ask("nobody", "greet")
        except brigade.NoActor as e:
            print(e.code, e.name)            # -3 BRG_ENOACTOR

Threads: a Client is not thread-safe (a ZeroMQ socket must not be shared
between threads): use one Client per thread. There is no background thread:
the client reads its socket whenever one of its methods waits (ask, result,
recv, poll).

Errors: BrigadeError is the base of everything raised here. ReplyError and
its subclasses (one per BRG_E... code of include/brigade/error.h: NoActor,
NotFound, ...) mean an actor, or the node on its behalf, answered an ask with
REPLY_ERROR; Timeout means no reply by the ask's deadline; SessionEnded means
the session is over (the node sent ERROR or BYE, the client refused a frame
of the node, or close() was called): every ask in flight fails with it and
the Client cannot be used again (make a new one: a new session).
"""

import collections
import heapq
import os
import time
import uuid

import msgpack
import zmq

__all__ = [
    "Client", "Ask", "Message", "Ref", "Cert", "load_cert",
    "BrigadeError", "ReplyError", "Timeout", "SessionEnded",
    "ERRORS", "SESSION_ERRORS", "error_name", "error_text", "error_for",
    "PROTOCOL_VERSION",
]

PROTOCOL_VERSION = 1

# Frame types (PROTOCOL.md section 4).
HELLO, WELCOME, BATCH, TICK, BYE, ERROR = 0, 1, 2, 3, 5, 6
# Envelope kinds a client sends or takes (section 7); 3 to 11 are control
# kinds, which a client must not send.
SEND, REPLY, REPLY_ERROR = 0, 1, 2
# A ref is msgpack ext type 1 with a 24-byte body (section 8).
EXT_REF = 1

TAG_MAX = 31    # bytes (section 6)
NAME_MAX = 63   # bytes: names in `to`, HELLO name and cluster
TEXT_MAX = 255  # BYE and ERROR text: what a receiver keeps

# The client's own actor id: the `from` of everything it sends, so replies
# and messages for the client are addressed to Ref(client uuid, SELF_ID).
SELF_ID = 1

# ERROR frame codes (section 12).
SESSION_ERRORS = {
    1: "version",
    2: "sequence",
    3: "malformed",
    4: "not allowed",
    5: "no session",
    6: "busy",
    7: "self",
}

# The BRG_E... codes, a copy of BRG_ERRNO_MAP in include/brigade/error.h:
# (name without BRG_, code, text). tests/python/test_client.py checks that
# this table equals the header's, so the two cannot drift apart.
ERRORS = (
    ("EINVAL", -1, "invalid argument"),
    ("ENOMEM", -2, "out of memory"),
    ("ENOACTOR", -3, "no such actor (dead, unknown or stale address)"),
    ("ETIMEDOUT", -4, "deadline expired"),
    ("ETYPE", -5, "payload value has another type"),
    ("EBADMSG", -6, "malformed msgpack payload"),
    ("ERANGE", -7, "value out of range for the requested type"),
    ("EEXIST", -8, "already exists"),
    ("ENOTFOUND", -9, "not found"),
    ("ECLOSED", -10, "system is shutting down"),
    ("EMSGSIZE", -11, "message too large"),
    ("ENODATA", -12, "no more values in the payload"),
    ("EFAILED", -13, "actor failed"),
    ("EBUSY", -14, "resource busy"),
    ("EPROTO", -15, "protocol error"),
    ("ESYS", -16, "operating system call failed"),
    ("ENETWORK", -17, "network failure (resolve, connect, TLS or transfer)"),
    ("EHTTP", -18, "HTTP error status (not 2xx)"),
    ("EDEADLK", -19, "blocking call refused on a thread of its own system (would deadlock)"),
    ("EPERM", -20, "not permitted (the peer's key or role may not do this)"),
    ("ECANCELED", -21, "cancelled by the requester"),
)
_ERROR_BY_CODE = {code: (name, text) for name, code, text in ERRORS}


def error_name(code):
    """The symbolic name of a BRG_E... code ("BRG_ENOACTOR"), as brg_err_name."""
    if code == 0:
        return "BRG_OK"
    entry = _ERROR_BY_CODE.get(code)
    return "BRG_" + entry[0] if entry else "BRG_EUNKNOWN"


def error_text(code):
    """The text of a BRG_E... code, as brg_strerror."""
    entry = _ERROR_BY_CODE.get(code)
    return entry[1] if entry else "unknown error"


# ---------------------------------------------------------------------------
# Exceptions


class BrigadeError(Exception):
    """Base of every error of this module. code: a BRG_E... code (negative),
    an ERROR frame code (1-7, SessionEnded) or None; text: what it says."""

    def __init__(self, message, code=None, text=None):
        super().__init__(message)
        self.code = code
        self.text = text if text is not None else message


class Timeout(BrigadeError):
    """No answer by the deadline: an ask's reply, or the node's WELCOME.
    code is BRG_ETIMEDOUT (-4). A reply that comes after its ask timed out
    is discarded (Client.late_replies counts them)."""

    name = "BRG_ETIMEDOUT"

    def __init__(self, message):
        super().__init__(message, -4, message)


class ReplyError(BrigadeError):
    """An ask was answered with REPLY_ERROR [status]. code: the status (a
    negative BRG_E... code, or an application's own negative code); name:
    its BRG_E... name (BRG_EUNKNOWN for codes not in ERRORS); tag: the
    reply's tag ("brg.error" for Brigade's own error replies)."""

    def __init__(self, code, tag=None):
        self.name = error_name(code)
        # Not super(): TimedOut is a ReplyError and a Timeout.
        BrigadeError.__init__(self, "%s (%d): %s" % (self.name, code, error_text(code)), code,
                              error_text(code))
        self.tag = tag


# One ReplyError subclass per BRG_E... code. NoActor (-3, no such actor or
# an unregistered name) is a NotFound (-9), so `except NotFound` takes both;
# TimedOut (-4) is a Timeout too.
class InvalidArgument(ReplyError): pass      # noqa: E701  -1
class OutOfMemory(ReplyError): pass          # noqa: E701  -2
class NotFound(ReplyError): pass             # noqa: E701  -9
class NoActor(NotFound): pass                # noqa: E701  -3
class TimedOut(ReplyError, Timeout): pass    # noqa: E701  -4
class TypeMismatch(ReplyError): pass         # noqa: E701  -5
class BadMessage(ReplyError): pass           # noqa: E701  -6
class OutOfRange(ReplyError): pass           # noqa: E701  -7
class AlreadyExists(ReplyError): pass        # noqa: E701  -8
class Closed(ReplyError): pass               # noqa: E701 -10
class MessageTooLarge(ReplyError): pass      # noqa: E701 -11
class NoData(ReplyError): pass               # noqa: E701 -12
class ActorFailed(ReplyError): pass          # noqa: E701 -13
class Busy(ReplyError): pass                 # noqa: E701 -14
class ProtocolError(ReplyError): pass        # noqa: E701 -15
class SystemCallFailed(ReplyError): pass     # noqa: E701 -16
class NetworkError(ReplyError): pass         # noqa: E701 -17
class HTTPError(ReplyError): pass            # noqa: E701 -18
class WouldDeadlock(ReplyError): pass        # noqa: E701 -19
class NotPermitted(ReplyError): pass         # noqa: E701 -20
class Cancelled(ReplyError): pass            # noqa: E701 -21


# BRG_E... name -> class; every name of ERRORS has one (the test checks).
ERROR_CLASSES = {
    "EINVAL": InvalidArgument, "ENOMEM": OutOfMemory, "ENOACTOR": NoActor,
    "ETIMEDOUT": TimedOut, "ETYPE": TypeMismatch, "EBADMSG": BadMessage,
    "ERANGE": OutOfRange, "EEXIST": AlreadyExists, "ENOTFOUND": NotFound,
    "ECLOSED": Closed, "EMSGSIZE": MessageTooLarge, "ENODATA": NoData,
    "EFAILED": ActorFailed, "EBUSY": Busy, "EPROTO": ProtocolError,
    "ESYS": SystemCallFailed, "ENETWORK": NetworkError, "EHTTP": HTTPError,
    "EDEADLK": WouldDeadlock, "EPERM": NotPermitted, "ECANCELED": Cancelled,
}
__all__ += [cls.__name__ for cls in ERROR_CLASSES.values()]


def error_for(code, tag=None):
    """The ReplyError (subclass) instance for a REPLY_ERROR status."""
    entry = _ERROR_BY_CODE.get(code)
    cls = ERROR_CLASSES.get(entry[0], ReplyError) if entry else ReplyError
    return cls(code, tag)


class SessionEnded(BrigadeError):
    """The session is over. reason: "error" (the node sent ERROR [code,
    text]: code is its ERROR code, 1-7, section 12), "bye" (the node sent
    BYE [text], e.g. it is shutting down), "protocol" (the node sent a frame
    this client refused: it sent ERROR code to the node), or "closed"
    (close() was called). code is None for "bye" and "closed"."""

    def __init__(self, reason, code=None, text=""):
        if code is not None:
            what = "%s %d (%s)" % (reason, code, SESSION_ERRORS.get(code, "?"))
        else:
            what = reason
        super().__init__("session ended: %s: %s" % (what, text), code, text)
        self.reason = reason


# ---------------------------------------------------------------------------
# Refs and values


class Ref:
    """An actor's address: its node's UUID (16 bytes) and a 64-bit local id
    (generation << 32 | slot). Id 0 names the node itself. On the wire a
    msgpack ext 1 with a 24-byte body: the UUID, then the id big-endian.
    Refs anywhere in a payload are packed and unpacked as Ref (both ways)."""

    __slots__ = ("node", "id")

    def __init__(self, node, id):
        if isinstance(node, uuid.UUID):
            node = node.bytes
        elif isinstance(node, str):
            node = uuid.UUID(node).bytes
        node = bytes(node)
        if len(node) != 16:
            raise ValueError("a ref's node is 16 bytes")
        if not 0 <= id < 1 << 64:
            raise ValueError("a ref's id is a 64-bit unsigned integer")
        object.__setattr__(self, "node", node)
        object.__setattr__(self, "id", int(id))

    def __setattr__(self, name, value):
        raise AttributeError("Ref is immutable")

    @property
    def slot(self):
        return self.id & 0xFFFFFFFF

    @property
    def generation(self):
        return self.id >> 32

    @property
    def uuid(self):
        return uuid.UUID(bytes=self.node)

    def to_ext(self):
        return msgpack.ExtType(EXT_REF, self.node + self.id.to_bytes(8, "big"))

    @classmethod
    def from_ext(cls, data):
        return cls(data[:16], int.from_bytes(data[16:24], "big"))

    def __eq__(self, other):
        return isinstance(other, Ref) and self.node == other.node and self.id == other.id

    def __hash__(self):
        return hash((self.node, self.id))

    def __repr__(self):
        return "Ref(%r, 0x%x)" % (str(self.uuid), self.id)

    def __str__(self):
        # brg_ref_format: <uuid>/<slot>.<generation>
        return "%s/%d.%d" % (self.uuid, self.slot, self.generation)


def _default(obj):
    if isinstance(obj, Ref):
        return obj.to_ext()
    raise TypeError("cannot pack %r" % (obj,))


def _ext_hook(code, data):
    if code == EXT_REF and len(data) == 24:
        return Ref.from_ext(data)
    return msgpack.ExtType(code, data)  # any other ext is just a value


def pack(obj):
    """msgpack with Refs as ext 1. Strings that are not valid UTF-8 come
    back from unpack with surrogate escapes and pack to the same bytes."""
    return msgpack.packb(obj, default=_default, use_bin_type=True,
                         unicode_errors="surrogateescape")


def unpack(data):
    """One msgpack value, exactly (trailing bytes raise); ext 1 -> Ref."""
    return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False,
                           unicode_errors="surrogateescape")


# ---------------------------------------------------------------------------
# CURVE certificates


class Cert(collections.namedtuple("Cert", "public secret metadata")):
    """A CURVE certificate: public and secret keys as 40-character Z85
    strings (secret None for a public certificate) and the metadata map."""


def _zpl_parse(text):
    """ZPL (rfc.zeromq.org/spec:4, what czmq's zconfig writes): a tree of
    `name` or `name = value` lines, 4 spaces of indent per level, # comments.
    Returns nested dicts; a node's value is under the key "" if it has both
    a value and children."""
    root = {}
    stack = [(-1, root)]
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        stripped = line.lstrip(" ")
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line) - len(stripped)
        if indent % 4:
            raise ValueError("ZPL line %d: indent is not a multiple of 4" % lineno)
        level = indent // 4
        name, sep, value = stripped.partition("=")
        name = name.strip()
        if sep:
            value = value.strip()
            if value[:1] in ("\"", "'"):
                end = value.find(value[0], 1)
                if end < 0:
                    raise ValueError("ZPL line %d: unterminated quote" % lineno)
                value = value[1:end]
            else:
                cut = value.find(" #")
                value = (value[:cut] if cut >= 0 else value).strip()
        else:
            value = None
        while stack[-1][0] >= level:
            stack.pop()
        if stack[-1][0] != level - 1:
            raise ValueError("ZPL line %d: indented too far" % lineno)
        parent = stack[-1][1]
        node = {} if value is None else value
        parent[name] = node
        if value is None:
            stack.append((level, node))
    return root


def load_cert(path):
    """Read a CURVE certificate in CZMQ's zcert format (ZPL text, as
    zcert_save writes it: a `metadata` section and a `curve` section with
    `public-key = "..."` and, in the secret file, `secret-key = "..."`).
    path may be the public file (then path + "_secret" is read too, if it
    exists) or the "_secret" file itself. Returns a Cert."""
    def read(p):
        with open(p, "r", encoding="utf-8") as f:
            return _zpl_parse(f.read())

    tree = read(path)
    if not path.endswith("_secret") and os.path.exists(path + "_secret"):
        secret_tree = read(path + "_secret")
    else:
        secret_tree = tree
    curve = tree.get("curve")
    if not isinstance(curve, dict) or "public-key" not in curve:
        raise ValueError("%s: no curve public-key" % path)
    public = curve["public-key"]
    secret = (secret_tree.get("curve") or {}).get("secret-key")
    for key in (public, secret):
        if key is not None and len(key) != 40:
            raise ValueError("%s: a Z85 key is 40 characters" % path)
    meta = tree.get("metadata")
    meta = {k: v for k, v in meta.items() if isinstance(v, str)} if isinstance(meta, dict) else {}
    return Cert(public, secret, meta)


def _z85_key(key, what):
    if isinstance(key, str):
        key = key.encode("ascii")
    key = bytes(key)
    if len(key) == 32:
        return zmq.utils.z85.encode(key)
    if len(key) == 40:
        return key
    raise ValueError("CURVE %s key: 40 Z85 characters or 32 bytes" % what)


def _curve_keys(curve):
    if isinstance(curve, dict):
        return curve["public"], curve["secret"], curve["server"]
    public, secret, server = curve
    return public, secret, server


# ---------------------------------------------------------------------------
# The client


class Message:
    """A message the node sent to the client unasked (kind SEND), read by
    Client.recv. sender: a Ref or None; corr: nonzero if it is a request
    (answer it with Client.reply or Client.reply_error); to: the client id
    it was addressed to (SELF_ID unless the client gave out other ids)."""

    __slots__ = ("tag", "args", "sender", "corr", "to")

    def __init__(self, tag, args, sender, corr, to):
        self.tag, self.args, self.sender, self.corr, self.to = tag, args, sender, corr, to

    def __repr__(self):
        return "Message(%r, %r, sender=%r, corr=%d)" % (self.tag, self.args, self.sender,
                                                        self.corr)


class Ask:
    """An ask in flight (Client.ask_async). result() waits for it."""

    __slots__ = ("_client", "corr", "to", "tag", "deadline", "_done", "_value", "_error")

    def __init__(self, client, corr, to, tag, deadline):
        self._client = client
        self.corr, self.to, self.tag, self.deadline = corr, to, tag, deadline
        self._done = False
        self._value = None
        self._error = None

    def done(self):
        """True once a reply, an error, a timeout or the session's end came."""
        return self._done

    def _set(self, value=None, error=None):
        if not self._done:
            self._done, self._value, self._error = True, value, error

    def result(self):
        """The reply as (tag, args), waiting up to the ask's deadline.
        Raises a ReplyError subclass, Timeout, or SessionEnded."""
        if not self._done:
            self._client._wait(self.done, self.deadline)
            if not self._done:
                self._client._expire(self)
        if self._error is not None:
            raise self._error
        return self._value


class Client:
    """One client session with a node (PROTOCOL.md section 3: one DEALER).

    endpoint: the node's listen endpoint ("tcp://127.0.0.1:7400",
    "ipc:///run/brigade.sock"). name: the client's name (1-63 bytes, for the
    node's logs). cluster: must be the node's cluster (else the node refuses
    with ERROR 4). timeout_ms: the handshake's deadline and the default
    deadline of ask. curve: None (ZeroMQ's NULL mechanism) or the CURVE keys
    (client public, client secret, server public) as a tuple or a dict with
    keys "public", "secret", "server"; each a 40-character Z85 string or 32
    raw bytes (load_cert reads them from CZMQ certificate files). context: a
    zmq.Context to use (default: one of the client's own).

    The constructor connects, says HELLO and waits for WELCOME: it raises
    SessionEnded (reason "error", with the node's ERROR code and text) if the
    node refuses, Timeout if no WELCOME comes within timeout_ms.

    Attributes after the handshake: ref (the client's own address, to give
    actors that should send to it), node_ref (the node's ref, id 0),
    node_name, welcome (the WELCOME map), late_replies (replies discarded
    because their ask had timed out), ignored (envelopes the client does
    not handle: control kinds, replies to ids it never asked from).
    """

    def __init__(self, endpoint, name="py", cluster="brigade", timeout_ms=5000, curve=None,
                 context=None):
        for what, text in (("name", name), ("cluster", cluster)):
            if not 1 <= len(text.encode()) <= NAME_MAX or "\0" in text:
                raise ValueError("%s: 1-%d bytes, no zero byte" % (what, NAME_MAX))
        self.timeout_ms = timeout_ms
        self.endpoint = endpoint
        self.name = name
        self.cluster = cluster
        self.uuid = uuid.uuid4().bytes  # this session's node UUID (section 5)
        self.sess = int.from_bytes(os.urandom(8), "big") or 1
        self.ref = Ref(self.uuid, SELF_ID)
        self.node_ref = None
        self.node_name = None
        self.welcome = None
        self.late_replies = 0
        self.ignored = 0
        self._out_seq = 0  # our BATCH frames, from 1 (section 11)
        self._in_seq = 0   # the node's BATCH frames we took
        self._corr = 0
        self._pending = {}  # corr -> Ask
        self._deadlines = []  # heap of (deadline, corr)
        self._inbox = collections.deque()
        self._ended = None  # the SessionEnded once the session is over
        self._own_context = context is None
        self._ctx = zmq.Context() if context is None else context
        self._sock = self._ctx.socket(zmq.DEALER)
        try:
            self._sock.setsockopt(zmq.LINGER, 0)
            # A connection the node refuses (CURVE, ZAP) can leave the DEALER
            # with no pipe, and then a send would block for ever: it times
            # out instead (raised as Timeout).
            self._sock.setsockopt(zmq.SNDTIMEO, max(1, int(timeout_ms)))
            if curve is not None:
                if not zmq.has("curve"):
                    raise RuntimeError("this libzmq has no CURVE support")
                public, secret, server = _curve_keys(curve)
                self._sock.curve_publickey = _z85_key(public, "public")
                self._sock.curve_secretkey = _z85_key(secret, "secret")
                self._sock.curve_serverkey = _z85_key(server, "server")
            self._sock.connect(endpoint)
            self._handshake()
        except BaseException:
            self._close_socket()
            raise

    # -- the handshake (sections 5 and 10) ---------------------------------

    def _handshake(self):
        hello = {"node": self.uuid, "sess": self.sess, "role": "client", "name": self.name,
                 "cluster": self.cluster, "ep": None, "minor": 0}
        self._send_raw(pack([PROTOCOL_VERSION, HELLO, hello]))
        deadline = time.monotonic() + self.timeout_ms / 1000.0
        while True:
            ms = int((deadline - time.monotonic()) * 1000) + 1
            if ms <= 0 or not self._sock.poll(ms, zmq.POLLIN):
                raise Timeout("no WELCOME from %s in %d ms" % (self.endpoint, self.timeout_ms))
            parts = self._sock.recv_multipart()
            if len(parts) != 1:
                continue  # not a frame (section 2)
            frame = self._decode(parts[0])
            if frame is None:
                raise self._ended
            if frame[1] == WELCOME:
                self._on_welcome(frame)
                return
            if frame[1] == ERROR:
                self._ended = SessionEnded("error", frame[2], frame[3])
                raise self._ended
            if frame[1] == BYE:
                self._ended = SessionEnded("bye", None, frame[2])
                raise self._ended
            self._refuse(3, "expected WELCOME")
            raise self._ended

    def _on_welcome(self, frame):
        w = frame[2]
        ok = (isinstance(w, dict) and isinstance(w.get("node"), bytes) and len(w["node"]) == 16
              and w.get("role") == "node" and isinstance(w.get("sess"), int)
              and isinstance(w.get("name"), str) and w.get("cluster") == self.cluster)
        if not ok:
            self._refuse(3, "bad WELCOME")
            raise self._ended
        self.welcome = w
        self.node_ref = Ref(w["node"], 0)
        self.node_name = w["name"]

    # -- sending ------------------------------------------------------------

    def _check_open(self):
        if self._ended is not None:
            raise self._ended

    def _send_raw(self, data):
        try:
            self._sock.send(data)
        except zmq.Again:
            raise Timeout("the node takes no frames (connection refused or lost)") from None

    def _send_frame(self, frame):
        self._send_raw(pack(frame))

    def _batch(self, envelopes):
        # Packed before the number is taken: a value that cannot be packed
        # (TypeError) must not leave a gap in the sequence.
        data = pack([PROTOCOL_VERSION, BATCH, self._out_seq + 1] + envelopes)
        self._send_raw(data)
        self._out_seq += 1

    @staticmethod
    def _target(to):
        if isinstance(to, str):
            if not 1 <= len(to.encode("utf-8", "surrogateescape")) <= NAME_MAX or "\0" in to:
                raise ValueError("a name is 1-%d bytes, no zero byte" % NAME_MAX)
            return to
        if isinstance(to, Ref):
            return to
        if isinstance(to, int) and 0 <= to < 1 << 64:
            return to
        raise TypeError("to: a registered name (str), a Ref or a local id (int)")

    @staticmethod
    def _tag(tag):
        if not isinstance(tag, str) or not 1 <= len(tag.encode()) <= TAG_MAX or "\0" in tag:
            raise ValueError("a tag is a str of 1-%d bytes, no zero byte" % TAG_MAX)
        return tag

    def send(self, to, tag, *args):
        """Send a message to `to` (a name registered on the node, a Ref of an
        actor on the node, or its local id): one SEND envelope, corr 0, from
        the client's own id. Never waits; delivery is at most once (a name
        nobody registered is a dead letter on the node, no error here)."""
        self._check_open()
        self._batch([[SEND, self._target(to), SELF_ID, 0, self._tag(tag)] + list(args)])

    def ask_async(self, to, tag, *args, timeout_ms=None):
        """Send a request and return its Ask at once; Ask.result() waits for
        the reply. Any number may be in flight; replies are matched by corr."""
        self._check_open()
        to, tag = self._target(to), self._tag(tag)
        self._corr += 1
        corr = self._corr
        ms = self.timeout_ms if timeout_ms is None else timeout_ms
        a = Ask(self, corr, to, tag, time.monotonic() + ms / 1000.0)
        self._batch([[SEND, to, SELF_ID, corr, tag] + list(args)])
        self._pending[corr] = a
        heapq.heappush(self._deadlines, (a.deadline, corr))
        return a

    def ask(self, to, tag, *args, timeout_ms=None):
        """Ask and wait: the reply's (tag, args). Raises the ReplyError
        subclass of the REPLY_ERROR status (NoActor for an unknown name...),
        Timeout after timeout_ms (default: the client's), SessionEnded."""
        return self.ask_async(to, tag, *args, timeout_ms=timeout_ms).result()

    def reply(self, request, tag, *args):
        """Answer a request (a Message with corr != 0) read by recv()."""
        self._answer(request, [REPLY, None, SELF_ID, request.corr, self._tag(tag)] + list(args))

    def reply_error(self, request, code):
        """Answer a request with REPLY_ERROR [code], code a negative int32."""
        if not -(1 << 31) <= code <= -1:
            raise ValueError("an error status is a negative 32-bit int")
        self._answer(request, [REPLY_ERROR, None, SELF_ID, request.corr, "brg.error", code])

    def _answer(self, request, env):
        self._check_open()
        if not request.corr or request.sender is None:
            raise ValueError("not a request: it has no corr or no sender")
        s = request.sender
        env[1] = s.id if s.node == self.node_ref.node else s
        self._batch([env])

    def keepalive(self):
        """Send TICK [acked seq] (section 11): acknowledges the node's frames
        and keeps an idle session alive. A node ends a client session after
        10 minutes without a frame from it; asks and sends count too."""
        self._check_open()
        self._send_frame([PROTOCOL_VERSION, TICK, self._in_seq])

    # -- receiving ----------------------------------------------------------

    def recv(self, timeout_ms=None):
        """The next message sent to the client unasked (a Message), waiting
        up to timeout_ms (default the client's timeout); None if none came."""
        ms = self.timeout_ms if timeout_ms is None else timeout_ms
        self._wait(lambda: bool(self._inbox), time.monotonic() + ms / 1000.0)
        return self._inbox.popleft() if self._inbox else None

    def poll(self, timeout_ms=0):
        """Read what the node sent, up to timeout_ms; returns how many
        unasked messages are waiting for recv()."""
        self._wait(lambda: False, time.monotonic() + timeout_ms / 1000.0)
        return len(self._inbox)

    def _wait(self, pred, deadline):
        """Read frames until pred() or the deadline. What has arrived is
        read before any ask is declared timed out: a reply that was there
        in time is not dropped because the owner called late."""
        while True:
            self._read_all()
            if pred():
                return
            self._check_open()
            now = time.monotonic()
            self._expire_due(now)
            if pred() or now >= deadline:
                return
            self._sock.poll(int((deadline - now) * 1000) + 1, zmq.POLLIN)

    def _read_all(self):
        """Handle every frame that has arrived, without waiting."""
        while self._ended is None:
            try:
                parts = self._sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            if len(parts) != 1:
                self.ignored += 1  # a multi-part message is not a frame (section 2)
                continue
            frame = self._decode(parts[0])
            if frame is not None:
                self._on_frame(frame)
        if self._ended is not None:
            self._fail_pending()

    def _decode(self, data):
        """The frame as a list, checked as far as the client relies on it;
        None after refusing it (the session has ended)."""
        try:
            f = unpack(data)
        except Exception:
            return self._refuse(3, "malformed msgpack")
        if not isinstance(f, list) or len(f) < 2 or not isinstance(f[0], int) \
                or isinstance(f[0], bool):
            return self._refuse(3, "not a frame")
        if f[0] != PROTOCOL_VERSION:
            return self._refuse(1, "version %r" % (f[0],))
        t = f[1]
        ok = {HELLO: len(f) == 3, WELCOME: len(f) == 3,
              BATCH: len(f) >= 3 and _is_uint(f[2]),
              TICK: len(f) == 3 and _is_uint(f[2]),
              BYE: len(f) == 3 and isinstance(f[2], str),
              ERROR: len(f) == 4 and _is_uint(f[2]) and 1 <= f[2] < 1 << 31
              and isinstance(f[3], str)}.get(t, False) if _is_uint(t) else False
        if not ok:
            return self._refuse(3, "malformed frame")
        return f

    def _refuse(self, code, text):
        """Refuse a frame of the node (section 12): ERROR, and the end."""
        try:
            self._send_frame([PROTOCOL_VERSION, ERROR, code, text])
        except zmq.ZMQError:
            pass
        self._ended = SessionEnded("protocol", code, text)
        return None

    def _on_frame(self, f):
        t = f[1]
        if t == BATCH:
            if f[2] != self._in_seq + 1:
                self._refuse(2, "sequence gap: %d after %d" % (f[2], self._in_seq))
                return
            for env in f[3:]:
                if not (isinstance(env, list) and len(env) >= 5 and _is_uint(env[0])
                        and _is_uint(env[3]) and isinstance(env[4], str)):
                    self._refuse(3, "malformed envelope")
                    return
            self._in_seq = f[2]
            for env in f[3:]:
                self._on_envelope(env)
        elif t == TICK:
            pass  # nodes send clients no TICKs; one would only acknowledge
        elif t == BYE:
            self._ended = SessionEnded("bye", None, f[2])
        elif t == ERROR:
            self._ended = SessionEnded("error", f[2], f[3])
        else:
            self._refuse(3, "unexpected %s" % ("HELLO" if t == HELLO else "WELCOME"))

    def _on_envelope(self, env):
        kind, to, frm, corr, tag = env[:5]
        args = env[5:]
        if kind in (REPLY, REPLY_ERROR):
            a = self._pending.pop(corr, None)
            if a is None:
                self.late_replies += 1  # its ask timed out: discarded
            elif kind == REPLY:
                a._set(value=(tag, args))
            elif len(args) == 1 and _is_int(args[0]) and args[0] < 0:
                a._set(error=error_for(args[0], tag))
            else:
                a._set(error=ReplyError(-15, tag))  # a REPLY_ERROR not [status]
        elif kind == SEND:
            if frm is None:
                sender = None
            elif isinstance(frm, Ref):
                sender = frm
            elif _is_uint(frm):
                sender = Ref(self.node_ref.node, frm)
            else:
                sender = None
            self._inbox.append(Message(tag, args, sender, corr, to))
        else:
            self.ignored += 1  # control kinds: a client takes part in no link

    def _timeout_text(self, a):
        return "no reply to %r from %r by the deadline" % (a.tag, a.to)

    def _expire(self, a):
        if self._pending.get(a.corr) is a:
            del self._pending[a.corr]
        a._set(error=Timeout(self._timeout_text(a)))

    def _expire_due(self, now):
        while self._deadlines and self._deadlines[0][0] < now:
            _, corr = heapq.heappop(self._deadlines)
            a = self._pending.get(corr)
            if a is not None and a.deadline < now:
                self._expire(a)

    def _fail_pending(self):
        for a in self._pending.values():
            a._set(error=self._ended)
        self._pending.clear()
        self._deadlines.clear()

    # -- the end ------------------------------------------------------------

    def close(self, text="close"):
        """End the session: acknowledge what the node sent (TICK), say BYE
        (section 13), close the socket. Every ask still in flight fails
        with SessionEnded. Safe to call more than once."""
        if self._sock is None:
            return
        if self._ended is None:
            try:
                self._send_frame([PROTOCOL_VERSION, TICK, self._in_seq])
                self._send_frame([PROTOCOL_VERSION, BYE, text[:TEXT_MAX]])
            except zmq.ZMQError:
                pass
            self._ended = SessionEnded("closed", None, text)
            self._fail_pending()
            self._sock.setsockopt(zmq.LINGER, 1000)  # let the BYE leave
        self._close_socket()

    def _close_socket(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._own_context and self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    @property
    def closed(self):
        """The SessionEnded if the session is over, else None."""
        return self._ended

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        try:
            if getattr(self, "_sock", None) is not None:
                self._close_socket()
        except Exception:
            pass


def _is_uint(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)
