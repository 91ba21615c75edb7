"""The runner's journal: which jobs it began and how each ended, on disk before it acts.

The bridge redelivers a job until its result comes back, so the runner sees most jobs more than
once. ``type``, ``interrupt`` and ``end`` act on a live terminal and must run at most once: the
runner appends ``begin`` (and fsyncs) before it acts, and the result after. A job found begun but
never finished after a restart is not repeated: it is answered with a failure that says so.
``new`` and ``resume`` are idempotent by their tmux session's name; their results are journalled
too, so a redelivered one is answered without looking.

One JSON object per line; a torn last line (a crash mid-write) is ignored. The file is rewritten
to its newest ``KEEP`` jobs when the runner starts.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

KEEP = 5000


@dataclass(frozen=True)
class Result:
    job_id: str
    ok: bool
    error: str | None = None

    def wire(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "ok": self.ok, "error": self.error}


INTERRUPTED = (
    "the runner stopped while doing this job; it is not repeated (it may or may not have reached "
    "the session)"
)


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.begun: set[str] = set()
        self.results: dict[str, Result] = {}
        self._file: IO[str] | None = None

    def open(self) -> None:
        order: list[str] = []
        if self.path.exists():
            for line in self.path.read_text(errors="replace").splitlines():
                try:
                    entry = json.loads(line)
                    job = str(entry["job"])
                except (ValueError, KeyError, TypeError):
                    continue
                if job not in self.begun and job not in self.results:
                    order.append(job)
                if entry.get("phase") == "started":
                    self.begun.add(job)
                elif entry.get("phase") == "done":
                    self.results[job] = Result(job, bool(entry.get("ok")), entry.get("error"))
        for job in self.begun - set(self.results):
            self.results[job] = Result(job, False, INTERRUPTED)
        keep = order[-KEEP:]
        self.begun &= set(keep)
        self.results = {job: self.results[job] for job in keep if job in self.results}
        self._rewrite(keep)
        self._file = open(self.path, "a", encoding="utf-8")

    def _rewrite(self, jobs: list[str]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for job in jobs:
                if job in self.begun:
                    f.write(json.dumps({"job": job, "phase": "started"}) + "\n")
                if job in self.results:
                    f.write(self._done_line(self.results[job]))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)

    @staticmethod
    def _done_line(result: Result) -> str:
        return (
            json.dumps(
                {"job": result.job_id, "phase": "done", "ok": result.ok, "error": result.error}
            )
            + "\n"
        )

    def _append(self, line: str) -> None:
        assert self._file is not None, "journal not open"
        self._file.write(line)
        self._file.flush()
        os.fsync(self._file.fileno())

    def known(self, job_id: str) -> Result | None:
        """The result of a job seen before (a begun, unfinished one counts as failed)."""
        return self.results.get(job_id)

    def begin(self, job_id: str) -> None:
        """On disk before the job acts: after this, it never acts again."""
        self._append(json.dumps({"job": job_id, "phase": "started"}) + "\n")
        self.begun.add(job_id)
        self.results[job_id] = Result(job_id, False, INTERRUPTED)

    def finish(self, result: Result) -> None:
        self._append(self._done_line(result))
        self.results[result.job_id] = result

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def lock_state_dir(state_dir: Path) -> IO[str]:
    """Make the state directory (0700) and hold its lock for the runner's lifetime: a second
    runner on the same state would type every job twice."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(state_dir, 0o700)
    handle = open(state_dir / "runner.lock", "w", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise RuntimeError(
            f"another runner is using {state_dir} (its lock is held); stop it first"
        ) from None
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle
