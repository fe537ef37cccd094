#!/usr/bin/env python3
"""Generates tlog_cosignature_vector.json: C2SP tlog-cosignature (Ed25519, cosignature/v1)
signatures computed independently of smpx, with Python's `cryptography` and `hashlib`.

No published cosignature vector comes with its private key (the C2SP example's witness key
is not public), so this file pins our output to a second implementation written from the
spec: key ID = SHA-256(name || 0x0A || 0x04 || public key)[:4]; signature bytes =
u64 big-endian timestamp || Ed25519(private key, "cosignature/v1\\ntime <t>\\n" || checkpoint
text); line = "— <name> base64(key ID || signature bytes)". Ed25519 is deterministic, so the
output is fixed. Run once: python3 tlog_cosignature_vector.py > tlog_cosignature_vector.json
"""
import base64
import hashlib
import json
import struct

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

NAME = "witness.example.com/w1"
SEED = hashlib.sha256(b"smpx tlog cosignature test vector").digest()
CHECKPOINTS = [
    ("example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n", 1679315147),
    ("example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\nan extension line\n", 0),
    ("smpx.example/dir1\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n", 2**63 - 1),
]

key = Ed25519PrivateKey.from_private_bytes(SEED)
public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
key_id = hashlib.sha256(NAME.encode() + b"\n" + b"\x04" + public).digest()[:4]
vkey = "%s+%s+%s" % (NAME, key_id.hex(), base64.b64encode(b"\x04" + public).decode())

vectors = []
for text, timestamp in CHECKPOINTS:
    message = b"cosignature/v1\ntime %d\n" % timestamp + text.encode()
    signature = struct.pack(">Q", timestamp) + key.sign(message)
    line = "— %s %s\n" % (NAME, base64.b64encode(key_id + signature).decode())
    vectors.append({"checkpoint": text, "timestamp": timestamp,
                    "message": message.decode(), "line": line})

json.dump({"source": "crates/core/src/testdata/tlog_cosignature_vector.py (Python cryptography)",
           "name": NAME, "seed": SEED.hex(), "vkey": vkey, "vectors": vectors},
          __import__("sys").stdout, indent=1, ensure_ascii=False)
print()
