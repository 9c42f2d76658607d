"""One run at a time per output: a lease on `DIR/_lock`, held and renewed for the whole run.

The lock file is a JSON object: `owner` (a token unique to the run), `host`, `pid`, `started`,
`lease` (seconds) and `expires` (Unix time). A heartbeat thread renews it every quarter of the
lease while the run holds it. A second run on the same output refuses at start-up with one line
(exit status 75, "temporary failure", so a scheduler retries later) instead of interleaving its
commit with the first one's, unless the lock is stale:

- its lease has expired (the holder died or hangs, on any host: no person is needed);
- its holder ran on this host and the process is gone (taken over at once);
- it cannot be read (empty or truncated: a crash between creating and writing it, from an
  older version) and the file is older than one lease.

A stale lock is taken over by exactly one run:

- local outputs: a new lock appears whole (written aside, then `os.link`ed into place, which
  fails when the name exists); a takeover first creates a marker named after the stale
  version (inode, mtime, content) with O_EXCL, so of several runs judging the same lock stale
  only one goes on; it checks, holding the marker, that the lock is still that version, and
  replaces it with `os.replace`. A marker left by a taker that died is passed over after one
  lease (the next marker number).
- `s3://` outputs: S3's conditional writes, `If-None-Match: *` to create and `If-Match: <etag>`
  to take over or renew: the store itself lets exactly one writer win.
- other object stores (through Beam's FileSystems): written and read back, which narrows but
  does not close the race between two runs started in the same second; schedule one writer
  per output there (Airflow `max_active_runs=1`, one cron entry).

A run whose lock was taken over (its heartbeat found another owner: it hung past its lease)
is stopped: the heartbeat interrupts the main thread, and `with OutputLock(...)` turns that into
a LockError (exit 75) and leaves the new owner's lock alone, so the two never commit together. Leases compare wall clocks: hosts
sharing an output need clocks in sync to well within the lease (NTP does that).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import socket
import signal
import threading
import time
import uuid
from typing import NamedTuple

from apache_beam.io.filesystems import FileSystems

LOCK_NAME = "_lock"
LEASE_SECONDS = float(os.environ.get("NEWSEVENTS_LOCK_LEASE", "120"))  # seconds
log = logging.getLogger("newsevents.lock")


class LockError(Exception):
    """The output is in use by another run."""


class Held(NamedTuple):
    """A lock file as read: its version (what a takeover must find unchanged), bytes, age."""

    version: str
    data: bytes
    mtime: float


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def _parse(data: bytes) -> dict | None:
    try:
        info = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return info if isinstance(info, dict) and info else None


def _when(t) -> str:
    try:
        return dt.datetime.fromtimestamp(float(t), dt.timezone.utc).isoformat(timespec="seconds")
    except (TypeError, ValueError, OverflowError, OSError):
        return str(t)


def _describe(info: dict) -> str:
    text = f"pid {info.get('pid')} on {info.get('host')} since {info.get('started')}"
    return text + (f", lease until {_when(info['expires'])}" if "expires" in info else "")


def stale_reason(info: dict | None, held: Held, lease: float, now: float | None = None) -> str | None:
    """Why a lock may be taken over, or None while its holder may still be working."""
    now = time.time() if now is None else now
    if info is None:
        age = now - held.mtime
        return f"unreadable lock file, {age:.0f} s old (lease {lease:.0f} s)" if age > lease else None
    try:
        expires = float(info["expires"]) if "expires" in info else held.mtime + lease  # older lock files
    except (TypeError, ValueError):
        expires = held.mtime + lease
    if info.get("host") == socket.gethostname():
        try:
            pid = int(info.get("pid"))
        except (TypeError, ValueError):
            pid = 0
        if pid > 0 and not _alive(pid):
            return f"its run (pid {pid} on this host) is gone"
    if now > expires:
        return f"its lease expired at {_when(expires)} ({_describe(info)})"
    return None


# ----------------------------------------------------------------------------- stores


class LocalStore:
    """The lock file on a local (or mounted) filesystem."""

    def __init__(self, path: str, lease: float):
        self.path, self.lease = path, lease

    def _write_aside(self, data: bytes) -> str:
        tmp = f"{self.path}.{uuid.uuid4().hex}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return tmp

    def read(self) -> Held | None:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(fd)
            data = f.read()
        digest = hashlib.sha256(data).hexdigest()[:16]
        return Held(f"{st.st_ino}-{st.st_mtime_ns}-{digest}", data, st.st_mtime)

    def create(self, data: bytes) -> str | None:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        tmp = self._write_aside(data)
        try:
            os.link(tmp, self.path)  # appears whole, or not at all when the name exists
        except FileExistsError:
            return None
        finally:
            os.unlink(tmp)
        return self.read_version()

    def read_version(self) -> str | None:
        held = self.read()
        return held.version if held else None

    def takeover(self, version: str, data: bytes) -> str | None:
        marker = self._claim(version)
        if marker is None:
            return None
        try:
            held = self.read()
            if held is None or held.version != version:
                return None  # taken over (or released) since it was judged stale
            tmp = self._write_aside(data)
            os.replace(tmp, self.path)
            return self.read_version()
        finally:
            os.unlink(marker)

    def _claim(self, version: str) -> str | None:
        """O_EXCL on a marker named after the stale version: one taker per version. A marker
        older than the lease (its taker died before finishing) is passed over to the next number."""
        for n in range(100):
            marker = f"{self.path}.takeover-{version}-{n}"
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
                return marker
            except FileExistsError:
                try:
                    if time.time() - os.stat(marker).st_mtime <= self.lease:
                        return None  # another run is taking it over now
                except FileNotFoundError:
                    return None  # its taker finished: the lock is no longer that version
        return None

    def renew(self, version: str, data: bytes, owner: str) -> str | None:
        held = self.read()
        if held is None or (_parse(held.data) or {}).get("owner") != owner:
            return None
        tmp = self._write_aside(data)
        os.replace(tmp, self.path)
        return self.read_version()

    def delete(self, version: str, owner: str) -> None:
        held = self.read()
        if held is not None and (_parse(held.data) or {}).get("owner") == owner:
            os.unlink(self.path)


class S3Store:
    """The lock object on S3, with S3's conditional writes (If-None-Match, If-Match)."""

    def __init__(self, path: str, lease: float, options=None):
        from apache_beam.io.aws.clients.s3.boto3_client import Client

        bucket_key = path[len("s3://"):]
        self.bucket, self.key = bucket_key.split("/", 1)
        self.lease = lease
        opts = options if options is not None else FileSystems._pipeline_options
        self.client = Client(opts).client if opts is not None else Client({}).client

    @staticmethod
    def _refused(e: Exception) -> bool:
        code = getattr(e, "response", {}).get("Error", {}).get("Code", "")
        status = getattr(e, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
        return code in ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey") or status in (409, 412)

    def read(self) -> Held | None:
        try:
            r = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except Exception as e:  # noqa: BLE001 - botocore ClientError
            if getattr(e, "response", {}).get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        return Held(r["ETag"], r["Body"].read(), r["LastModified"].timestamp())

    def _put(self, data: bytes, **condition) -> str | None:
        try:
            return self.client.put_object(Bucket=self.bucket, Key=self.key, Body=data, **condition)["ETag"]
        except Exception as e:  # noqa: BLE001
            if self._refused(e):
                return None
            raise

    def create(self, data: bytes) -> str | None:
        return self._put(data, IfNoneMatch="*")

    def takeover(self, version: str, data: bytes) -> str | None:
        return self._put(data, IfMatch=version)

    def renew(self, version: str, data: bytes, owner: str) -> str | None:
        return self._put(data, IfMatch=version)

    def delete(self, version: str, owner: str) -> None:
        held = self.read()
        if held is not None and held.version == version:
            self.client.delete_object(Bucket=self.bucket, Key=self.key)


class FileSystemsStore:
    """Any other store through Beam's FileSystems: written and read back (not atomic)."""

    def __init__(self, path: str, lease: float):
        self.path, self.lease = path, lease

    def read(self) -> Held | None:
        try:
            metas = FileSystems.match([self.path])[0].metadata_list
            if not metas:
                return None
            with FileSystems.open(self.path, compression_type="uncompressed") as f:
                data = f.read()
        except Exception:  # noqa: BLE001 - gone between the match and the open
            return None
        return Held(hashlib.sha256(data).hexdigest(), data, metas[0].last_updated_in_seconds)

    def _write(self, data: bytes, owner: str) -> str | None:
        with FileSystems.create(self.path) as f:
            f.write(data)
        held = self.read()
        return held.version if held and (_parse(held.data) or {}).get("owner") == owner else None

    def create(self, data: bytes) -> str | None:
        return None if FileSystems.exists(self.path) else self._write(data, json.loads(data)["owner"])

    def takeover(self, version: str, data: bytes) -> str | None:
        held = self.read()
        return self._write(data, json.loads(data)["owner"]) if held and held.version == version else None

    def renew(self, version: str, data: bytes, owner: str) -> str | None:
        held = self.read()
        return self._write(data, owner) if held and held.version == version else None

    def delete(self, version: str, owner: str) -> None:
        held = self.read()
        if held is not None and (_parse(held.data) or {}).get("owner") == owner:
            FileSystems.delete([self.path])


def store_for(path: str, lease: float, options=None):
    if "://" not in path:
        return LocalStore(path, lease)
    if path.startswith("s3://"):
        return S3Store(path, lease, options)
    return FileSystemsStore(path, lease)


# ----------------------------------------------------------------------------- the lease


class OutputLock:
    """`with OutputLock(root):` holds `root/_lock` as a lease renewed by a heartbeat thread."""

    def __init__(self, root: str, lease: float = LEASE_SECONDS, options=None):
        self.root = root.rstrip("/")
        self.path = f"{self.root}/{LOCK_NAME}"
        self.lease = float(lease)
        self.owner = uuid.uuid4().hex
        self.started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        self.store = store_for(self.path, self.lease, options)
        self.version: str | None = None
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _data(self) -> bytes:
        return json.dumps({"owner": self.owner, "host": socket.gethostname(), "pid": os.getpid(),
                           "started": self.started, "lease": self.lease,
                           "expires": round(time.time() + self.lease, 3)}).encode()

    def acquire(self) -> "OutputLock":
        for _ in range(3):
            self.version = self.store.create(self._data())
            if self.version is not None:
                return self._start()
            held = self.store.read()
            if held is None:
                continue  # released in between: try again
            info = _parse(held.data)
            why = stale_reason(info, held, self.lease)
            if why is None:
                who = _describe(info) if info else f"lock file being written, {time.time() - held.mtime:.0f} s old"
                raise LockError(f"output {self.root} is in use by another run ({who}); run again when it "
                                f"has finished, or remove {self.path} if that run is gone")
            self.version = self.store.takeover(held.version, self._data())
            if self.version is not None:
                log.warning("took over the lock of output %s: %s", self.root, why)
                return self._start()
            # another run took it over first: look again (it now holds a fresh lease)
        raise LockError(f"could not lock output {self.root}: another run took it over first")

    def _start(self) -> "OutputLock":
        self._thread = threading.Thread(target=self._heartbeat, name="newsevents-lock-heartbeat", daemon=True)
        self._thread.start()
        return self

    def renew(self) -> bool:
        """Extend the lease; False (and `lost`) when another run has taken the lock over."""
        if self.lost:
            return False
        try:
            version = self.store.renew(self.version, self._data(), self.owner)
        except Exception as e:  # noqa: BLE001 - a store hiccup: try again at the next beat
            log.warning("could not renew the lock of output %s: %s", self.root, str(e).splitlines()[0])
            return True
        if version is None:
            self.lost = True  # reported by __exit__ (LockError) or by the caller
            return False
        self.version = version
        return True

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.lease / 4):
            if not self.renew():
                # stop the run: another one holds the output now (a real SIGINT, which also
                # wakes a main thread blocked in a system call, unlike _thread.interrupt_main)
                signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
                return

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if not self.lost and self.version is not None:
            self.store.delete(self.version, self.owner)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, exc_type, exc, tb):
        self.release()
        if self.lost:
            raise LockError(f"this run lost the lock of output {self.root} to another run (it went "
                            f"{self.lease:.0f} s without renewing its lease) and was stopped; run again later")
        return False
