#!/usr/bin/env python3
"""Generates Noise test vectors with an independent implementation (PyPI `noiseprotocol`).

Writes vectors/noise/noiseprotocol-25519-ChaChaPoly-BLAKE2b.json in the layout of the shared
cacophony file, so NoiseVectorTests can check turf's Noise against them:

    pip install noiseprotocol==0.3.1
    python3 scripts/gen-noise-vectors.py
    NOISE_VECTORS_FILE=vectors/noise/noiseprotocol-25519-ChaChaPoly-BLAKE2b.json \
        swift test --filter NoiseVectorTests

Keys, psks, prologues and payloads are derived from labels with BLAKE2b, so the file is
reproducible and its keys differ from cacophony's.
"""
import hashlib
import json
import os
import sys

from noise.connection import NoiseConnection, Keypair
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives import serialization

PATTERNS = ["NN", "NK", "NX", "KN", "KK", "KX", "XN", "XK", "XX", "IN", "IK", "IX"]
PSK_VARIANTS = {
    "NN": ["psk0", "psk2", "psk0+psk2"], "NK": ["psk0", "psk2"], "NX": ["psk2"], "KN": ["psk0", "psk2"],
    "KK": ["psk0", "psk2"], "KX": ["psk2"], "XN": ["psk3"], "XK": ["psk3"], "XX": ["psk3", "psk0+psk3"],
    "IN": ["psk1", "psk2"], "IK": ["psk1", "psk2"], "IX": ["psk2"],
}
# Which side holds which static key, from the Noise spec's pattern definitions.
INIT_STATIC = {"KN", "KK", "KX", "XN", "XK", "XX", "IN", "IK", "IX"}
RESP_STATIC = {"NK", "NX", "KK", "KX", "XK", "XX", "IK", "IX"}
INIT_PRE = {"KN", "KK", "KX"}   # responder knows the initiator's static in advance
RESP_PRE = {"NK", "KK", "XK", "IK"}  # initiator knows the responder's static in advance
HANDSHAKE_LEN = {p: (3 if p[0] == "X" else 2) for p in PATTERNS}


def derive(label, n=32):
    return hashlib.blake2b(label.encode(), digest_size=n).digest()


def public(priv):
    k = x25519.X25519PrivateKey.from_private_bytes(priv)
    return k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def vector(base, modifiers):
    pname = base + modifiers
    name = f"Noise_{pname}_25519_ChaChaPoly_BLAKE2b"
    tag = "turf-independent/" + pname
    prologue = derive(tag + "/prologue", 16)[: 3 + len(pname)]
    ie, re_ = derive(tag + "/ie"), derive(tag + "/re")
    is_, rs = derive(tag + "/is"), derive(tag + "/rs")
    npsk = modifiers.count("psk")
    psks = [derive(f"{tag}/psk{i}") for i in range(npsk)]

    init, resp = NoiseConnection.from_name(name.encode()), NoiseConnection.from_name(name.encode())
    init.set_as_initiator()
    resp.set_as_responder()
    for c in (init, resp):
        c.set_prologue(prologue)
        if npsk:
            c.set_psks(psks=psks)
    init.set_keypair_from_private_bytes(Keypair.EPHEMERAL, ie)
    resp.set_keypair_from_private_bytes(Keypair.EPHEMERAL, re_)
    v = {"protocol_name": name, "init_prologue": prologue.hex(), "resp_prologue": prologue.hex(),
         "init_ephemeral": ie.hex(), "resp_ephemeral": re_.hex()}
    if npsk:
        v["init_psks"] = [p.hex() for p in psks]
        v["resp_psks"] = [p.hex() for p in psks]
    if base in INIT_STATIC:
        init.set_keypair_from_private_bytes(Keypair.STATIC, is_)
        v["init_static"] = is_.hex()
    if base in RESP_STATIC:
        resp.set_keypair_from_private_bytes(Keypair.STATIC, rs)
        v["resp_static"] = rs.hex()
    if base in INIT_PRE:
        resp.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, public(is_))
        v["resp_remote_static"] = public(is_).hex()
    if base in RESP_PRE:
        init.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, public(rs))
        v["init_remote_static"] = public(rs).hex()
    init.start_handshake()
    resp.start_handshake()

    messages = []
    sizes = [0, 1, 17, 64, 300, 5, 1000, 33]
    for i, size in enumerate(sizes[: HANDSHAKE_LEN[base] + 4]):
        payload = derive(f"{tag}/payload{i}", 64) * (size // 64 + 1)
        payload = payload[:size]
        sender, receiver = (init, resp) if i % 2 == 0 else (resp, init)
        if i < HANDSHAKE_LEN[base]:
            ct = sender.write_message(payload)
            assert receiver.read_message(ct) == payload
        else:
            ct = sender.encrypt(payload)
            assert receiver.decrypt(ct) == payload
        messages.append({"payload": payload.hex(), "ciphertext": bytes(ct).hex()})
    assert init.handshake_finished and resp.handshake_finished
    assert init.get_handshake_hash() == resp.get_handshake_hash()
    v["handshake_hash"] = init.get_handshake_hash().hex()
    v["messages"] = messages
    return v


def main():
    vectors = []
    for base in PATTERNS:
        for mods in [""] + PSK_VARIANTS[base]:
            vectors.append(vector(base, mods))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = os.path.join(root, "vectors", "noise", "noiseprotocol-25519-ChaChaPoly-BLAKE2b.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"generator": "noiseprotocol 0.3.1 via scripts/gen-noise-vectors.py", "vectors": vectors}, f, indent=1)
        f.write("\n")
    print(f"wrote {len(vectors)} vectors to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
