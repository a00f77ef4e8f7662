"""Storage errors and encryption at rest (FS3xx: storage, not your code)."""

from __future__ import annotations

from ._base import FlowstateError


class StoreError(FlowstateError):
    """The checkpoint store failed; this is not your node code."""

    code = "FS300"


class CorruptRowError(StoreError):
    """A stored row failed its integrity hash or schema validation."""

    code = "FS301"

    def __init__(self, table: str, run_id: str, step: int | None, detail: str) -> None:
        self.table = table
        self.run_id = run_id
        self.step = step
        at = f" step {step}" if step is not None else ""
        super().__init__(
            f"corrupt row in table '{table}' for run {run_id}{at}: {detail}. "
            "Nothing was loaded from it; run `flowstate doctor` to check the database."
        )


class StoreIOError(StoreError):
    """The database reported an I/O, disk or locking failure."""

    code = "FS302"
    retryable = True


class EncryptionError(FlowstateError):
    """Encryption at rest: the keys given cannot open (or seal) what the store holds."""

    code = "FS303"


class EncryptionRequired(EncryptionError):
    """The database holds encrypted values (or is marked encrypted) and no keyring was
    given: nothing is returned as state, nothing is written in plaintext."""

    code = "FS304"

    def __init__(self, where: str, *, writing: bool = False) -> None:
        self.where = where
        what = (
            "this database is encrypted: refusing to write a plaintext value to"
            if writing
            else "this value is encrypted and no keyring was given to read"
        )
        super().__init__(
            f"{what} {where}. Set FLOWSTATE_KEYS=kid:base64key (or pass "
            "encryption=Keyring(...) to the store) with the key(s) the database was written with"
        )


class KeyMissing(EncryptionError):
    """A value is sealed under a key id the keyring does not hold (a key rotated out)."""

    code = "FS305"

    def __init__(self, key_id: str, where: str, known: list[str]) -> None:
        self.key_id = key_id
        self.where = where
        super().__init__(
            f"{where} is encrypted under key id {key_id!r}, which is not in the keyring "
            f"(it holds {', '.join(known) or 'no keys'}): add key {key_id!r} back to "
            "FLOWSTATE_KEYS (or the Keyring): keep a rotated-out key while any run "
            "written under it is kept"
        )


class DecryptionFailed(EncryptionError):
    """A sealed value does not authenticate: a wrong key under that id, a tampered value,
    or a value moved from another row."""

    code = "FS306"

    def __init__(self, key_id: str, where: str, detail: str) -> None:
        self.key_id = key_id
        self.where = where
        super().__init__(
            f"{where} does not decrypt under key id {key_id!r} ({detail}): the key given "
            f"for {key_id!r} is not the one it was written with, or the row was altered or "
            "copied from another row. Check FLOWSTATE_KEYS; run `flowstate doctor`"
        )
