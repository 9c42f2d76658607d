"""One run at a time per output: a lock file `DIR/_lock` held for the whole run.

A second run on the same output refuses at start-up with a clear message (exit status 75,
"temporary failure", so a scheduler retries later) instead of interleaving its commit with
the first one. A lock left by a run that died (same host, process gone) is taken over.

Local outputs use an exclusive create (O_EXCL), which is atomic. Object stores have no
exclusive create through Beam's FileSystems: there the lock is written and read back, which
narrows but does not close the race between two runs started in the same second; schedule
one writer per output there (Airflow `max_active_runs=1`, one cron entry).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import socket
import uuid

from apache_beam.io.filesystems import FileSystems

LOCK_NAME = "_lock"


class LockError(Exception):
    """The output is in use by another run."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _describe(info: dict) -> str:
    return f"pid {info.get('pid')} on {info.get('host')} since {info.get('started')}"


class OutputLock:
    def __init__(self, root: str):
        self.root = root.rstrip("/")
        self.path = f"{self.root}/{LOCK_NAME}"
        self.token = uuid.uuid4().hex
        self.info = {"pid": os.getpid(), "host": socket.gethostname(), "token": self.token,
                     "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}

    def _read(self) -> dict | None:
        try:
            with FileSystems.open(self.path, compression_type="uncompressed") as f:
                return json.loads(f.read().decode("utf-8") or "{}")
        except Exception:
            return None

    def _stale(self, info: dict | None) -> bool:
        return bool(info) and info.get("host") == socket.gethostname() and not _alive(int(info.get("pid", 0)))

    def acquire(self) -> "OutputLock":
        data = json.dumps(self.info).encode()
        for _ in range(2):
            if "://" not in self.root:
                os.makedirs(self.root, exist_ok=True)
                try:
                    fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    pass
                else:
                    with os.fdopen(fd, "wb") as f:
                        f.write(data)
                    return self
            elif not FileSystems.exists(self.path):
                with FileSystems.create(self.path) as f:
                    f.write(data)
                if (self._read() or {}).get("token") == self.token:
                    return self
            held = self._read()
            if self._stale(held):
                FileSystems.delete([self.path])
                continue
            raise LockError(f"output {self.root} is in use by another run ({_describe(held or {})}); "
                            f"run again when it has finished, or remove {self.path} if that run is gone")
        raise LockError(f"could not lock output {self.root}")

    def release(self) -> None:
        if (self._read() or {}).get("token") == self.token:
            FileSystems.delete([self.path])

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False
