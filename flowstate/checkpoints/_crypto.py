"""Encryption at rest of the checkpoint stores' payload columns (AES-256-GCM).

A ``Keyring`` holds user keys by key id; new values are sealed under its ``current`` key,
values sealed under an older key id are opened with that key while it stays in the
keyring (rotation). A sealed column value is the text ``fsenc1:<kid>:<base64(nonce +
ciphertext)>``; no JSON text starts with ``f`` followed by ``s``, so sealed and plain
values cannot be mistaken for each other. The AES-GCM associated data is the table, the
column and the row's primary key, so a ciphertext copied into another row, column or
run fails authentication.

``RowCipher`` is what a store holds: it seals a record's payload columns before the row
and its integrity hash are computed (the hash covers the ciphertext, so ``doctor`` checks
an encrypted database without the key) and opens them after the hash was checked. The
stores call it at their row seams only: ``_select`` (reads), ``SQLWrites`` (writes),
``record_attempt``/``attempts`` and ``migrate_run``.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable, Mapping
from typing import Any

from flowstate.errors import ConfigError, DecryptionFailed, EncryptionRequired, KeyMissing

__all__ = [
    "ENV_CURRENT",
    "ENV_KEYS",
    "SEALED_COLUMNS",
    "Keyring",
    "RowCipher",
    "is_sealed",
    "keyring_from_env",
]

ENV_KEYS = "FLOWSTATE_KEYS"
"""``kid:base64key[,kid:base64key…]``: the keys ``open_store`` uses when given none."""
ENV_CURRENT = "FLOWSTATE_KEY_CURRENT"
"""The key id new values are sealed under; the last key of ``FLOWSTATE_KEYS`` if unset."""

PREFIX = "fsenc1:"
_NONCE = 12

SEALED_COLUMNS: dict[str, tuple[str, ...]] = {
    "runs": ("input",),
    "steps": ("tasks", "snapshot"),
    "writes": ("update", "goto"),
    "effects": ("request", "response"),
    "interrupts": ("payload", "answer"),
    "attempts": ("error",),
    "schedules": ("input",),
    "events": ("data",),
}
"""The columns sealed in each table. Everything else (ids, statuses, step numbers, node
names, timestamps, token usage, hashes, the graph document, run config and run errors)
stays plain and queryable."""

KEY_COLUMNS: dict[str, tuple[str, ...]] = {
    "runs": ("id",),
    "steps": ("run_id", "step"),
    "writes": ("run_id", "step", "task_path"),
    "effects": ("run_id", "step", "task_path", "seq"),
    "interrupts": ("run_id", "step", "task_path", "seq"),
    "attempts": ("run_id", "step", "task_path", "attempt"),
    "schedules": ("name",),
    "events": ("run_id", "seq"),
}
"""The primary key of each table, bound into every value's associated data."""


def is_sealed(value: object) -> bool:
    """Whether a stored column value is a sealed (encrypted) value."""
    return isinstance(value, str) and value.startswith(PREFIX)


class Keyring:
    """AES-256-GCM keys by key id; values are sealed under ``current``.

    ``Keyring({"k2": key2, "k1": key1}, current="k2")``: new values use ``k2``, values
    written under ``k1`` stay readable while ``k1`` is in the keyring. Keys are 32 random
    bytes (``Keyring.generate_key()``); key ids are short names without ``:`` or ``,``.
    """

    def __init__(self, keys: Mapping[str, bytes], current: str | None = None) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if not keys:
            raise ConfigError("a Keyring needs at least one key: Keyring({'k1': key})")
        self._aead: dict[str, Any] = {}
        for kid, key in keys.items():
            if not kid or not isinstance(kid, str) or any(ch in kid for ch in ":, "):
                raise ConfigError(
                    f"key id {kid!r}: use a short non-empty name without ':', ',' or spaces"
                )
            if not isinstance(key, bytes | bytearray) or len(key) != 32:
                raise ConfigError(
                    f"key {kid!r} must be 32 bytes (AES-256), not "
                    f"{len(key) if isinstance(key, bytes | bytearray) else type(key).__name__}"
                    ": generate one with `Keyring.generate_key()`"
                )
            self._aead[kid] = AESGCM(bytes(key))
        self.current = current if current is not None else list(keys)[-1]
        if self.current not in self._aead:
            raise ConfigError(
                f"current key id {self.current!r} is not in the keyring ({', '.join(keys)})"
            )

    @property
    def key_ids(self) -> list[str]:
        return list(self._aead)

    @staticmethod
    def generate_key() -> bytes:
        """32 random bytes, a new AES-256 key."""
        return os.urandom(32)

    def __repr__(self) -> str:  # never print key material
        return f"Keyring(key_ids={self.key_ids}, current={self.current!r})"

    def seal(self, plain: str, aad: bytes) -> str:
        nonce = os.urandom(_NONCE)
        ct = self._aead[self.current].encrypt(nonce, plain.encode(), aad)
        return f"{PREFIX}{self.current}:{base64.b64encode(nonce + ct).decode()}"

    def open(self, sealed: str, aad: bytes, where: str) -> str:
        kid, _, body = sealed[len(PREFIX) :].partition(":")
        aead = self._aead.get(kid)
        if aead is None:
            raise KeyMissing(kid, where, self.key_ids)
        from cryptography.exceptions import InvalidTag

        try:
            raw = base64.b64decode(body, validate=True)
            return aead.decrypt(raw[:_NONCE], raw[_NONCE:], aad).decode()
        except (binascii.Error, ValueError, InvalidTag) as e:
            # InvalidTag: a wrong key, a tampered value, or one moved from another row
            raise DecryptionFailed(kid, where, type(e).__name__) from None


def keyring_from_env(environ: Mapping[str, str] | None = None) -> Keyring | None:
    """The keyring ``FLOWSTATE_KEYS`` (and ``FLOWSTATE_KEY_CURRENT``) describe, or None."""
    env = os.environ if environ is None else environ
    spec = env.get(ENV_KEYS, "").strip()
    if not spec:
        return None
    keys: dict[str, bytes] = {}
    for part in spec.split(","):
        kid, sep, b64 = part.strip().partition(":")
        try:
            key = base64.b64decode(b64.strip(), validate=True) if sep else b""
        except binascii.Error:
            key = b""
        if not kid or len(key) != 32:
            raise ConfigError(
                f"{ENV_KEYS}: entry {kid or part!r} is not 'kid:base64key' with a 32-byte key; "
                'make a key with `python -c "import base64,os;'
                'print(base64.b64encode(os.urandom(32)).decode())"`'
            )
        keys[kid] = key
    return Keyring(keys, current=env.get(ENV_CURRENT) or None)


def _aad(table: str, col: str, key: tuple[object, ...]) -> bytes:
    return "\x1f".join([table, col, *(str(k) for k in key)]).encode()


class RowCipher:
    """Seals and opens the payload columns of a store's records.

    ``keyring`` None: values are stored plain, and reading a sealed value raises
    ``EncryptionRequired``; so does writing to a database whose metadata says it is
    encrypted (``is_encrypted()``, read once), so a process without the key never mixes
    plaintext into it.
    """

    def __init__(self, keyring: Keyring | None, is_encrypted: Callable[[], bool]) -> None:
        self.keyring = keyring
        self._probe = is_encrypted
        self.encrypted: bool | None = None
        """Whether the database is marked encrypted (None: not asked yet)."""

    def _where(self, table: str, key: tuple[object, ...]) -> str:
        return f"table '{table}' row {'/'.join(str(k) for k in key)}"

    def seal_value(self, table: str, col: str, key: tuple[object, ...], value: Any) -> Any:
        if value is None or not isinstance(value, str) or is_sealed(value):
            return value
        if self.keyring is None:
            if self.encrypted is None:
                self.encrypted = self._probe()
            if self.encrypted:
                raise EncryptionRequired(self._where(table, key), writing=True)
            return value
        return self.keyring.seal(value, _aad(table, col, key))

    def open_value(self, table: str, col: str, key: tuple[object, ...], value: Any) -> Any:
        if not is_sealed(value):
            return value
        if self.keyring is None:
            raise EncryptionRequired(self._where(table, key))
        return self.keyring.open(value, _aad(table, col, key), self._where(table, key))

    def _apply(self, fn: Callable[..., Any], table: str, record: Any) -> Any:
        cols = SEALED_COLUMNS.get(table, ())
        key = tuple(getattr(record, k) for k in KEY_COLUMNS[table])
        changed = {}
        for col in cols:
            old = getattr(record, col)
            new = fn(table, col, key, old)
            if new is not old:
                changed[col] = new
        return record.model_copy(update=changed) if changed else record

    def seal(self, table: str, record: Any) -> Any:
        """``record`` with its payload columns sealed (unchanged without a keyring)."""
        if self.keyring is None and self.encrypted is False:
            return record
        return self._apply(self.seal_value, table, record)

    def open(self, table: str, record: Any) -> Any:
        """``record`` with its sealed payload columns opened."""
        if not any(is_sealed(getattr(record, c)) for c in SEALED_COLUMNS.get(table, ())):
            return record  # nothing sealed: every read of a plain database, kept cheap
        return self._apply(self.open_value, table, record)
