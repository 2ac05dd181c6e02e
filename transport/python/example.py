"""Ask the actors of a node over CURVE:
/usr/bin/python3 example.py tcp://127.0.0.1:PORT NODE_KEY client.key"""
import sys

import brigade  # transport/python/brigade.py, next to this file

me = brigade.load_cert(sys.argv[3])  # our key pair (client.key + client.key_secret)
curve = (me.public, me.secret, sys.argv[2])  # ... and the node's public key

with brigade.Client(sys.argv[1], name="py-demo", timeout_ms=5000, curve=curve) as node:
    print("connected to", node.node_name, node.node_ref)
    print(node.ask("echo", "greet", "hello", 42, {"k": [1, 2]}, b"\x00"))
    # ('greet', ['hello', 42, {'k': [1, 2]}, b'\x00'])

    node.send("counter", "add", 5)  # no answer; arrives before the ask below
    print(node.ask("counter", "get"))  # ('value', [5])

    asks = [node.ask_async("echo", "n", i) for i in range(100)]  # 100 in flight
    print(sum(a.result()[1][0] for a in asks))  # 4950

    try:
        node.ask("nobody", "greet")
    except brigade.NoActor as e:  # REPLY_ERROR [-3]: no actor has that name
        print(e.name, e.code)  # BRG_ENOACTOR -3
    try:
        node.ask("slow", "sleep", 1000, timeout_ms=100)
    except brigade.Timeout:
        print("no answer in 100 ms")  # and its late reply will be dropped

    node.send("echo", "send_to", node.ref, "hi")  # give an actor our ref...
    m = node.recv()  # ...and it sends to us unasked
    print(m.tag, m.args, m.sender)  # value ['hi'] <node uuid>/1.1
