"""Signed tree heads as C2SP checkpoints in C2SP signed notes (the format of Go's sumdb, Sigstore and Tessera logs),
so tooling of those ecosystems can read them.

A checkpoint's text is ``<origin>\\n<tree size>\\n<base64 root hash>\\n`` followed by optional extension lines; the
note appends a blank line and ``— <key name> base64(key ID ‖ Ed25519 signature over the text)``. The key ID is
``SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ public key)[:4]`` and the verifier key string is
``<name>+<key ID hex>+base64(0x01 ‖ public key)``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.merkle import HASH_SIZE

__all__ = ["Checkpoint", "NoteError", "NoteSigner", "NoteVerifier", "key_id"]

_ED25519 = b"\x01"
_DASH = "\u2014 "
_MAX_NOTE = 16 * 1024


class NoteError(ValueError):
    """A note or checkpoint is malformed, or not signed by the expected key."""


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _check_name(name: str) -> None:
    if not name or any(c.isspace() or c == "+" for c in name):
        raise NoteError("a key name must be non-empty, without spaces or '+'")


def key_id(name: str, public: Ed25519PublicKey) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + _ED25519 + _raw(public)).digest()[:4]


class NoteSigner:
    """Signs note texts with the node's Ed25519 key under ``name``."""

    def __init__(self, name: str, key: Ed25519PrivateKey) -> None:
        _check_name(name)
        self.name = name
        self._key = key
        self.key_id = key_id(name, key.public_key())

    def sign(self, text: str) -> str:
        """The signed note: ``text`` (which must end in a newline), a blank line, the signature line."""
        if not text.endswith("\n") or len(text) > _MAX_NOTE:
            raise NoteError("a note text ends with a newline and is at most 16 KiB")
        signature = self._key.sign(text.encode("utf-8"))
        return f"{text}\n{_DASH}{self.name} {base64.b64encode(self.key_id + signature).decode()}\n"

    @property
    def verifier(self) -> NoteVerifier:
        return NoteVerifier(self.name, self._key.public_key())


class NoteVerifier:
    """Checks notes signed by one known key; signatures by other keys are ignored, as C2SP requires."""

    def __init__(self, name: str, public: Ed25519PublicKey) -> None:
        _check_name(name)
        self.name = name
        self.public = public
        self.key_id = key_id(name, public)

    @classmethod
    def from_key(cls, vkey: str) -> NoteVerifier:
        """Parse ``<name>+<hex key ID>+<base64(0x01 ‖ public key)>``."""
        name, _, rest = vkey.strip().partition("+")
        hex_id, _, material = rest.partition("+")
        try:
            raw = base64.b64decode(material, validate=True)
            expected = bytes.fromhex(hex_id)
        except (binascii.Error, ValueError) as exc:
            raise NoteError("malformed verifier key") from exc
        if len(raw) != 33 or raw[:1] != _ED25519 or len(expected) != 4:
            raise NoteError("not an Ed25519 verifier key")
        verifier = cls(name, Ed25519PublicKey.from_public_bytes(raw[1:]))
        if verifier.key_id != expected:
            raise NoteError("the verifier key's ID does not match its name and key")
        return verifier

    def to_key(self) -> str:
        material = base64.b64encode(_ED25519 + _raw(self.public)).decode()
        return f"{self.name}+{self.key_id.hex()}+{material}"

    def open(self, note: str) -> str:
        """Return the text of ``note`` if this key signed it; raise :class:`NoteError` otherwise."""
        if len(note) > _MAX_NOTE or not note.endswith("\n"):
            raise NoteError("malformed note")
        if any(ord(c) < 0x20 and c != "\n" for c in note):
            raise NoteError("a note must not contain control characters")
        cut = note.rfind("\n\n")
        if cut < 0:
            raise NoteError("malformed note: no signature block")
        text, sig_lines = note[:cut + 1], note[cut + 2:].splitlines()
        if not sig_lines:
            raise NoteError("malformed note: no signature")
        verified = False
        for line in sig_lines:
            if not line.startswith(_DASH):
                raise NoteError("malformed signature line")
            name, _, b64 = line[len(_DASH):].partition(" ")
            try:
                blob = base64.b64decode(b64, validate=True)
            except binascii.Error as exc:
                raise NoteError("malformed signature line") from exc
            if len(blob) < 5 or name != self.name or blob[:4] != self.key_id:
                continue  # someone else's signature
            try:
                self.public.verify(blob[4:], text.encode("utf-8"))
            except InvalidSignature as exc:
                raise NoteError("the signature does not verify with the node's key") from exc
            verified = True
        if not verified:
            raise NoteError("the note is not signed by the node's key")
        return text


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A tree head: the log ``origin``, its ``size`` and ``root`` hash, plus opaque extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def to_text(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode(), *self.extensions]
        return "\n".join(lines) + "\n"

    @classmethod
    def from_text(cls, text: str) -> Checkpoint:
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "" or any(line == "" for line in lines[:-1]):
            raise NoteError("malformed checkpoint")
        origin, size, root = lines[0], lines[1], lines[2]
        if not size.isdigit() or (size != "0" and size.startswith("0")):
            raise NoteError("malformed checkpoint size")
        try:
            digest = base64.b64decode(root, validate=True)
        except binascii.Error as exc:
            raise NoteError("malformed checkpoint root") from exc
        if len(digest) != HASH_SIZE:
            raise NoteError("malformed checkpoint root")
        return cls(origin, int(size), digest, tuple(lines[3:-1]))

    def sign(self, signer: NoteSigner) -> str:
        return signer.sign(self.to_text())

    @classmethod
    def open(cls, note: str, verifier: NoteVerifier, origin: str | None = None) -> Checkpoint:
        """Verify ``note`` with ``verifier`` and parse it; ``origin``, when given, must match."""
        checkpoint = cls.from_text(verifier.open(note))
        if origin is not None and checkpoint.origin != origin:
            raise NoteError("the checkpoint is for another log")
        return checkpoint
