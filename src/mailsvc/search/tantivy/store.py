"""Tenant index directories on disk: opening, checking, writing, resetting. Blocking:
every method runs Tantivy or file I/O and is called through `asyncio.to_thread`.

Layout: `<root>/<sha256(tenant_id)[:32]>/` holds one Tantivy index and its sidecar
`mailsvc-index.json` = {"schema_version", "tenant_id", "state": "ready"|"building"},
always replaced whole (temporary file, fsync, rename). A tenant's index is

- MISSING when the directory or the sidecar is absent or unreadable, the sidecar
  names another tenant (a directory copied over another's), its schema version is
  not `schema.SCHEMA_VERSION`, or the index cannot be opened or fails its checksums;
- BUILDING while the sidecar says so (between `reset` and `mark_ready`);
- READY otherwise.

Soundness. Tantivy ends every segment file with a footer holding the CRC32 of the
rest, but opening an index reads only the footers, and tantivy-py exposes no
checksum validation; garbage inside a file would surface, if ever, as an error or a
wrong answer of some later search. So a reader is published only after every file of
its segments passed `_checksum_ok`. Segment files never change once written, so each
is verified once per process (remembered by mtime, size and inode) when a reader
opens or reloads; `check` re-stats every file to catch one changed in place. A search
that fails inside Tantivy anyway is diagnosed the same way (`diagnose`): a failed
checksum makes the index MISSING (and rebuilt), anything else is a bug and re-raised.

Readers. Up to `READER_CACHE_SIZE` tenants keep an open index (least recently used
first out). Before each search the `meta.json` of the directory is stat-ed: Tantivy
replaces it (a new inode) on every commit, in whichever process wrote it, so a
changed (mtime, size, inode) means a new commit and the reader reloads; no file
watcher, no delay. A writer in another process may garbage-collect the files of the
segments it merged away while this one opens them: a failure while `meta.json`
changed underneath is retried with the new commit.

Writes. One `IndexWriter` per `write` call (one thread, `WRITER_HEAP_BYTES`): each
document is deleted by id and added again, `removed` ids are deleted, then one
commit, and the writer waits for the merges that commit started (without that, a
short-lived writer would leave a new segment per batch). Tantivy's lock file keeps
a second writer out, in this process or another: that surfaces as `IndexBusy`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import struct
import threading
import uuid
import zlib
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

import tantivy

from mailsvc.search.backend import IndexState, SearchDocument
from mailsvc.search.tantivy import schema
from mailsvc.search.tantivy.documents import tantivy_document

SIDECAR_NAME: Final = "mailsvc-index.json"
READER_CACHE_SIZE: Final = 64
WRITER_HEAP_BYTES: Final = 50_000_000

_META_NAME = "meta.json"
_READY = "ready"
_BUILDING = "building"
# A reader that fails to open while meta.json keeps changing (commits racing it) gives
# up after this many attempts.
_OPEN_ATTEMPTS = 3
# Tantivy's file footer: JSON {"version": ..., "crc": ...}, its length (u32 LE), this magic.
_FOOTER_MAGIC = 1337
_FOOTER_TAIL = struct.Struct("<II")
_CHUNK_BYTES = 1 << 20

_Signature = tuple[int, int, int]
"""(mtime_ns, size, inode) of a file: changes when the file is replaced or rewritten."""


class IndexBusy(Exception):
    """Another writer holds the tenant's index (Tantivy's lock): retry the batch later."""

    def __init__(self, tenant_id: str) -> None:
        super().__init__(f"the search index of tenant {tenant_id} has another writer")
        self.tenant_id = tenant_id


class IndexUnavailable(Exception):
    """The tenant's index cannot be written: it is MISSING (see the module docstring)."""

    def __init__(self, tenant_id: str, reason: str) -> None:
        super().__init__(f"the search index of tenant {tenant_id} is missing: {reason}")
        self.tenant_id = tenant_id
        self.reason = reason


class _Corrupt(Exception):
    """The index directory is present but unusable; the message says why."""


@dataclass(frozen=True, slots=True)
class Sidecar:
    """`mailsvc-index.json`: whose index this is, of which schema, and whether it is complete."""

    schema_version: int
    tenant_id: str
    state: str


@dataclass(frozen=True, slots=True)
class Health:
    """What `IndexStore.open` found."""

    state: IndexState
    reason: str
    searcher: tantivy.Searcher | None = None
    """A searcher of the latest commit when READY."""


@dataclass(slots=True)
class _Reader:
    index: tantivy.Index
    directory_inode: int
    """The directory it was opened in: a reset replaces the directory."""
    meta: _Signature
    """meta.json as of the last (re)load."""
    verified: dict[str, _Signature] = field(default_factory=dict)
    """Segment files whose checksum held, as they were then."""


def is_tantivy_failure(error: BaseException) -> bool:
    """Whether `error` came out of Tantivy: tantivy-py raises ValueError (and OSError)
    for its errors, and a Rust panic arrives as pyo3's PanicException, which derives
    from BaseException and cannot be imported."""
    return isinstance(error, ValueError | OSError) or type(error).__name__ == "PanicException"


class IndexStore:
    """Every tenant's index directory under `root` (see the module docstring)."""

    def __init__(self, root: Path, *, cache_size: int = READER_CACHE_SIZE) -> None:
        self._root = root
        self._cache_size = cache_size
        self._readers: OrderedDict[str, _Reader] = OrderedDict()
        # Tenant -> the meta.json signature of the commit found corrupt: searches answer
        # MISSING without re-reading the files until a reset or a new commit.
        self._corrupt: dict[str, tuple[_Signature, str]] = {}
        self._lock = threading.Lock()
        self._tenant_locks: dict[str, threading.Lock] = {}

    def directory(self, tenant_id: str) -> Path:
        """The tenant's index directory (hashed: tenant ids are not file names)."""
        return self._root / hashlib.sha256(tenant_id.encode()).hexdigest()[:32]

    def open(self, tenant_id: str, *, thorough: bool = False) -> Health:
        """The tenant's index state and, when READY, a searcher of its latest commit.

        `thorough` re-stats every segment file and verifies any that changed, and
        runs a search (what `state` asks); otherwise only `meta.json` is stat-ed.
        """
        directory = self.directory(tenant_id)
        state, reason = _sidecar_state(directory, tenant_id)
        if state is not IndexState.READY:
            return Health(state, reason)
        try:
            meta = _signature(directory / _META_NAME)
        except FileNotFoundError:
            return Health(IndexState.MISSING, "the index has no meta.json")
        with self._lock:
            cached = self._readers.get(tenant_id)
            corrupt = self._corrupt.get(tenant_id)
            if cached is not None and cached.meta == meta and not thorough:
                self._readers.move_to_end(tenant_id)
                return Health(IndexState.READY, "", cached.index.searcher())
        if corrupt is not None and corrupt[0] == meta:
            return Health(IndexState.MISSING, corrupt[1])
        with self._tenant_lock(tenant_id):
            try:
                reader = self._load(tenant_id, directory, meta, thorough=thorough)
                searcher = reader.index.searcher()
                if thorough:
                    searcher.search(tantivy.Query.all_query(), limit=1, count=False)
            except BaseException as error:
                if not isinstance(error, _Corrupt) and not is_tantivy_failure(error):
                    raise
                reason = f"corrupt index: {error}"
                self._mark_corrupt(tenant_id, directory, reason)
                return Health(IndexState.MISSING, reason)
        return Health(IndexState.READY, "", searcher)

    def diagnose(self, tenant_id: str) -> str | None:
        """After Tantivy failed a search: why the index is corrupt (and MISSING from now
        on), or None when its files are sound and the failure lies elsewhere."""
        health = self.open(tenant_id, thorough=True)
        return health.reason if health.state is IndexState.MISSING else None

    def reset(self, tenant_id: str) -> None:
        """Replace the tenant's directory by an empty index whose sidecar says building."""
        directory = self.directory(tenant_id)
        with self._tenant_lock(tenant_id):
            self._forget(tenant_id)
            self._root.mkdir(parents=True, exist_ok=True)
            for leftover in self._root.glob(f".{directory.name}.*"):
                shutil.rmtree(leftover, ignore_errors=True)  # of a reset that crashed
            fresh = self._root / f".{directory.name}.new-{secrets.token_hex(4)}"
            fresh.mkdir()
            tantivy.Index(schema.SCHEMA, path=str(fresh))  # writes the empty meta.json
            _write_sidecar(fresh, Sidecar(schema.SCHEMA_VERSION, tenant_id, _BUILDING))
            # Built aside and renamed into place: a reader sees the old index or the new
            # one, never a half-made directory (only, for an instant, none).
            old = None
            if directory.exists():
                old = self._root / f".{directory.name}.old-{secrets.token_hex(4)}"
                directory.rename(old)
            fresh.rename(directory)
            _fsync_directory(self._root)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)

    def mark_ready(self, tenant_id: str) -> None:
        """Flip the sidecar to ready: the rebuild is complete."""
        directory = self.directory(tenant_id)
        with self._tenant_lock(tenant_id):
            sidecar = _writable_sidecar(directory, tenant_id)
            _write_sidecar(directory, replace(sidecar, state=_READY))

    def write(
        self,
        tenant_id: str,
        *,
        documents: Sequence[SearchDocument],
        removed: Sequence[uuid.UUID],
    ) -> None:
        """Replace `documents` by id, delete the ids of `removed`, commit.

        Raises `IndexUnavailable` when the index is MISSING (by its sidecar: the
        rebuild starts with `reset`) and `IndexBusy` when another writer holds it.
        """
        if not documents and not removed:
            return
        directory = self.directory(tenant_id)
        with self._tenant_lock(tenant_id):
            _writable_sidecar(directory, tenant_id)
            index = tantivy.Index.open(str(directory))
            schema.register_analyzer(index)
            try:
                writer = index.writer(heap_size=WRITER_HEAP_BYTES, num_threads=1)
            except ValueError as error:
                if "LockBusy" in str(error):
                    raise IndexBusy(tenant_id) from error
                raise
            try:
                for message_id in removed:
                    writer.delete_documents_by_term(schema.ID, str(message_id))
                for document in documents:
                    # Delete, then add: a delete only reaches documents added before it,
                    # so the new one stays and a repeated batch leaves one copy.
                    writer.delete_documents_by_term(schema.ID, str(document.id))
                    writer.add_document(tantivy_document(document))
                writer.commit()
            finally:
                # Releases the lock; uncommitted documents (after an error) are dropped.
                writer.wait_merging_threads()

    def close(self) -> None:
        """Drop every cached reader (their memory maps go with them)."""
        with self._lock:
            self._readers.clear()

    # -- readers ----------------------------------------------------------------------

    def _load(
        self, tenant_id: str, directory: Path, meta: _Signature, *, thorough: bool
    ) -> _Reader:
        """The tenant's reader at the commit `meta` or later, its files verified."""
        with self._lock:
            reader = self._readers.get(tenant_id)
        for _ in range(_OPEN_ATTEMPTS):
            try:
                if reader is not None and reader.meta != meta:
                    if directory.stat().st_ino == reader.directory_inode:
                        reader.index.reload()
                    else:
                        reader = None  # reset elsewhere: a new index in a new directory
                if reader is None:
                    inode = directory.stat().st_ino
                    reader = _Reader(_open_index(directory), inode, meta)
                if reader.meta != meta or thorough or not reader.verified:
                    _verify(directory, reader)
            except BaseException as error:
                if not isinstance(error, _Corrupt) and not is_tantivy_failure(error):
                    raise
                try:
                    latest = _signature(directory / _META_NAME)
                except FileNotFoundError:
                    raise _Corrupt("meta.json disappeared") from error
                if latest == meta:
                    # Nothing moved underneath: the index itself is at fault.
                    raise _Corrupt(str(error)) from error
                meta, reader = latest, None  # a commit raced this one: open it afresh
                continue
            reader.meta = meta
            with self._lock:
                self._readers[tenant_id] = reader
                self._readers.move_to_end(tenant_id)
                while len(self._readers) > self._cache_size:
                    self._readers.popitem(last=False)
                self._corrupt.pop(tenant_id, None)
            return reader
        raise _Corrupt("the index kept changing while it was opened")

    def _mark_corrupt(self, tenant_id: str, directory: Path, reason: str) -> None:
        with self._lock:
            self._readers.pop(tenant_id, None)
            with contextlib.suppress(FileNotFoundError):
                self._corrupt[tenant_id] = (_signature(directory / _META_NAME), reason)

    def _forget(self, tenant_id: str) -> None:
        with self._lock:
            self._readers.pop(tenant_id, None)
            self._corrupt.pop(tenant_id, None)

    @contextlib.contextmanager
    def _tenant_lock(self, tenant_id: str) -> Iterator[None]:
        """Serializes this process's opens, writes and resets of one tenant's index."""
        with self._lock:
            lock = self._tenant_locks.setdefault(tenant_id, threading.Lock())
        with lock:
            yield


def _open_index(directory: Path) -> tantivy.Index:
    index = tantivy.Index.open(str(directory))
    schema.register_analyzer(index)
    # Reloads follow meta.json's stat before each search (module docstring), so no
    # watcher thread per open index.
    index.config_reader(reload_policy="manual")
    return index


def _verify(directory: Path, reader: _Reader) -> None:
    """Check the checksum of every file of the segments in meta.json that was not
    verified as it is now; raise `_Corrupt` at the first that fails."""
    try:
        meta = json.loads((directory / _META_NAME).read_bytes())
        segments = {str(segment["segment_id"]).replace("-", "") for segment in meta["segments"]}
    except (ValueError, KeyError, TypeError) as error:
        raise _Corrupt(f"unreadable meta.json: {error}") from error
    present: dict[str, _Signature] = {}
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.split(".", 1)[0] in segments:
                present[entry.name] = _stat_signature(entry.stat())
    for name, signature in present.items():
        if reader.verified.get(name) == signature:
            continue
        if not _checksum_ok(directory / name):
            raise _Corrupt(f"checksum mismatch in {name}")
        reader.verified[name] = signature
    for name in set(reader.verified) - set(present):
        del reader.verified[name]


def _checksum_ok(path: Path) -> bool:
    """Whether the file's content matches the CRC32 of its Tantivy footer."""
    with path.open("rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size < _FOOTER_TAIL.size:
            return False
        file.seek(size - _FOOTER_TAIL.size)
        footer_length, magic = _FOOTER_TAIL.unpack(file.read(_FOOTER_TAIL.size))
        data_length = size - _FOOTER_TAIL.size - footer_length
        if magic != _FOOTER_MAGIC or data_length < 0:
            return False
        file.seek(data_length)
        try:
            footer = json.loads(file.read(footer_length))
        except ValueError:
            return False
        expected = footer.get("crc") if isinstance(footer, dict) else None
        if not isinstance(expected, int):
            return False
        file.seek(0)
        crc, remaining = 0, data_length
        while remaining:
            chunk = file.read(min(_CHUNK_BYTES, remaining))
            if not chunk:
                return False
            crc = zlib.crc32(chunk, crc)
            remaining -= len(chunk)
        return crc == expected


def _signature(path: Path) -> _Signature:
    return _stat_signature(path.stat())


def _stat_signature(stat: os.stat_result) -> _Signature:
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


# -- the sidecar ------------------------------------------------------------------------


def _read_sidecar(directory: Path) -> Sidecar | None:
    try:
        raw = json.loads((directory / SIDECAR_NAME).read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict):
        return None
    version, tenant_id, state = raw.get("schema_version"), raw.get("tenant_id"), raw.get("state")
    if not (isinstance(version, int) and isinstance(tenant_id, str) and isinstance(state, str)):
        return None
    return Sidecar(version, tenant_id, state)


def _sidecar_state(directory: Path, tenant_id: str) -> tuple[IndexState, str]:
    """The state the sidecar gives (READY still needs the index itself checked)."""
    if not directory.is_dir():
        return IndexState.MISSING, "no index directory"
    sidecar = _read_sidecar(directory)
    if sidecar is None:
        return IndexState.MISSING, f"no readable {SIDECAR_NAME}"
    if sidecar.tenant_id != tenant_id:
        return IndexState.MISSING, "the index directory holds another tenant's index"
    if sidecar.schema_version != schema.SCHEMA_VERSION:
        return (
            IndexState.MISSING,
            f"schema version {sidecar.schema_version}, this version uses {schema.SCHEMA_VERSION}",
        )
    if sidecar.state == _BUILDING:
        return IndexState.BUILDING, "the index is being rebuilt"
    if sidecar.state != _READY:
        return IndexState.MISSING, f"unknown index state {sidecar.state!r}"
    return IndexState.READY, ""


def _writable_sidecar(directory: Path, tenant_id: str) -> Sidecar:
    state, reason = _sidecar_state(directory, tenant_id)
    sidecar = _read_sidecar(directory)
    if state is IndexState.MISSING or sidecar is None:
        raise IndexUnavailable(tenant_id, reason)
    return sidecar


def _write_sidecar(directory: Path, sidecar: Sidecar) -> None:
    """Replace the sidecar atomically and durably (a reader sees the old or the new)."""
    body = json.dumps(
        {
            "schema_version": sidecar.schema_version,
            "tenant_id": sidecar.tenant_id,
            "state": sidecar.state,
        }
    ).encode()
    temporary = directory / f".{SIDECAR_NAME}.{secrets.token_hex(4)}.tmp"
    with temporary.open("wb") as file:
        file.write(body)
        file.flush()
        os.fsync(file.fileno())
    temporary.replace(directory / SIDECAR_NAME)
    _fsync_directory(directory)


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
