"""The node's Ed25519 identity key: created once by ``dsnode init`` with mode 0600, loaded at start."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["create_key", "derive_secret", "load_key", "public_key_hex"]


def create_key(path: Path) -> Ed25519PrivateKey:
    """Write a new PKCS#8 PEM key; the file is created 0600 atomically (never world-readable, never replaced)."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    return key


def load_key(path: Path) -> Ed25519PrivateKey:
    """Load the key, refusing one that group or others can read."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise PermissionError(f"node key {path} has mode {mode:o}; run: chmod 600 {path}")
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 key")
    return key


def public_key_hex(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def derive_secret(key: Ed25519PrivateKey, purpose: str, context: bytes = b"") -> bytes:
    """32 bytes derived from the node key by HKDF-SHA256 for one ``purpose``; unlinkable across purposes."""
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption())
    return HKDF(hashes.SHA256(), 32, salt=purpose.encode(), info=context).derive(raw)
