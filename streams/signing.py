"""Ed25519 keys that sign chain checkpoints. The key comes from settings or is generated on first run into
the data dir, readable by its owner only (0600). Verification needs nothing but the raw public key."""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from schemas.errors import ConfigError

ALGORITHM = "Ed25519"


def key_id_of(public_raw: bytes) -> str:
    """First 16 hex characters of sha256(raw 32-byte public key): short, and stable across file formats."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class SigningKey:
    private: Ed25519PrivateKey
    public_raw: bytes
    key_id: str

    @classmethod
    def from_private(cls, private: Ed25519PrivateKey) -> SigningKey:
        raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return cls(private, raw, key_id_of(raw))

    def sign(self, body: bytes) -> str:
        return base64.b64encode(self.private.sign(body)).decode("ascii")

    def public_info(self) -> dict[str, str]:
        return {"key_id": self.key_id, "algorithm": ALGORITHM,
                "public_key": base64.b64encode(self.public_raw).decode("ascii")}


def load_key_pem(data: bytes, where: str) -> SigningKey:
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: not an unencrypted PEM private key ({exc})") from exc
    if not isinstance(private, Ed25519PrivateKey):
        raise ConfigError(f"{where}: the signing key must be Ed25519, got {type(private).__name__}")
    return SigningKey.from_private(private)


def load_or_create_key(path: Path) -> SigningKey:
    """Read the PEM key at `path`, or create one there with mode 0600 (never readable by others, even
    for an instant: the file is created with that mode, not chmod'ed afterwards)."""
    if path.exists():
        return load_key_pem(path.read_bytes(), str(path))
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written whole beside the target, then linked into place: a process starting at the same moment (the
    # API and a worker sharing a key volume) sees no key or the whole key, never a half-written file.
    aside = path.with_name(f".{path.name}.{os.getpid()}.new")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(aside, path)
        except FileExistsError:  # another process created it first: use theirs
            return load_key_pem(path.read_bytes(), str(path))
    finally:
        aside.unlink(missing_ok=True)
    return SigningKey.from_private(private)


def verify_signature(public_key_b64: str, body: bytes, signature_b64: str) -> bool:
    """True when `signature_b64` is the Ed25519 signature of `body` by the raw public key given in base64."""
    try:
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64, validate=True))
        public.verify(base64.b64decode(signature_b64, validate=True), body)
    except (InvalidSignature, ValueError):
        return False
    return True
