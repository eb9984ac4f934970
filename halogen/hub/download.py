"""One file from the Hugging Face Hub into the models folder: resumable across processes,
hashed while it is written, verified before it takes its final name.

The Hub client resumes an interrupted stream within one process; across processes it starts
over. Here the bytes go to a partial file beside the final one, named after the sha256 it must
have (`.<name>.<sha256[:16]>.halogen-part`), so a later run continues it with a Range request,
and never continues a partial of another version. A lock file (`flock`) lets one process at a time
work on a file; a second pull of the same file waits and then finds it in place. A verified file
gets a marker (`.<name>.halogen-verified`: its sha256, size and mtime), so a later pull trusts it
without reading it again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import queue
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from halogen import models_folder
from halogen.hub.files import SHA256, aside, marker_path, verified
from halogen.modelfiles import FileSource

if TYPE_CHECKING:
    from huggingface_hub import HfFileMetadata

SPACE_MARGIN = 64 * 1024 * 1024
"""Left free besides the file: the node keeps running while it downloads."""
READ_CHUNK = 8 * 1024 * 1024
HASH_QUEUE = 8
"""Chunks (the client's are 10 MiB) written but not yet hashed, at most."""


class PullError(Exception):
    """A file that could not be brought in place; the message says why and what to do."""


@dataclass(frozen=True)
class Remote:
    """What the Hub says about the file at the wanted revision (a HEAD, no body)."""

    commit: str | None
    sha256: str | None
    size: int
    location: str


@dataclass(frozen=True)
class Outcome:
    path: str
    sha256: str
    size: int
    fetched: int
    """Bytes this run received from the Hub (0 when the file was already in place)."""
    resumed_at: int
    commit: str | None


def endpoint() -> str | None:
    """HF_ENDPOINT as it is now (the client reads it once, at import)."""
    return os.environ.get("HF_ENDPOINT") or None


def remote(w: FileSource) -> Remote:
    """HEAD the file's resolve URL through the Hub client (token from HF_TOKEN or the login)."""
    import httpx2
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    url = hf_hub_url(w.repo, w.file, revision=w.revision, endpoint=endpoint())
    try:
        meta: HfFileMetadata = get_hf_file_metadata(url, retry_on_errors=True)
    except RepositoryNotFoundError as exc:
        raise PullError(f"repository {w.repo} not found, or private without HF_TOKEN") from exc
    except RevisionNotFoundError as exc:
        raise PullError(f"revision {w.revision!r} not found in {w.repo}") from exc
    except EntryNotFoundError as exc:
        raise PullError(f"{w.file} not found in {w.repo} at {w.revision}") from exc
    except HfHubHTTPError as exc:
        raise PullError(f"the Hub refused {url}: {_first_line(exc)}") from exc
    except (httpx2.TransportError, OSError) as exc:  # after the client's own retries
        raise PullError(f"cannot reach {url}: {exc}") from exc
    if meta.size is None:
        raise PullError(f"the Hub gave no size for {w.repo}/{w.file}")
    sha = meta.etag if meta.etag and SHA256.match(meta.etag) else None
    return Remote(meta.commit_hash, sha, meta.size, meta.location)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def final_path(models_dir: Path, w: FileSource) -> Path:
    """Where `w` goes under `models_dir`; PullError when its path would leave that folder."""
    try:
        return models_folder.confine(models_dir, w.path)
    except models_folder.OutsideModels as exc:
        raise PullError(f"{exc}: pull writes only under the models folder") from None


def part_path(final: Path, sha256: str) -> Path:
    return aside(final, f".{sha256[:16]}.halogen-part")


def partial_size(final: Path, sha256: str | None) -> int:
    if sha256 is None:
        return 0
    try:
        return part_path(final, sha256).stat().st_size
    except FileNotFoundError:
        return 0


def _write_marker(final: Path, sha256: str, commit: str | None, w: FileSource) -> None:
    st = final.stat()
    data = {
        "sha256": sha256,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "repo": w.repo,
        "file": w.file,
        "revision": w.revision,
        "commit": commit,
    }
    tmp = marker_path(final).with_suffix(".tmp")
    tmp.write_text(json.dumps(data, sort_keys=True) + "\n")
    os.replace(tmp, marker_path(final))


def hash_file(path: Path, limit: int | None = None) -> Any:
    """sha256 of the first `limit` bytes (all of them when None), as a running hasher."""
    hasher = hashlib.sha256()
    left = limit
    with path.open("rb") as fh:
        while left is None or left > 0:
            chunk = fh.read(READ_CHUNK if left is None else min(READ_CHUNK, left))
            if not chunk:
                break
            hasher.update(chunk)
            if left is not None:
                left -= len(chunk)
    return hasher


class HashingFile:
    """The file the Hub client writes into: every byte is hashed as it is written, so a
    60 GB file is not read a second time. The hash runs on a thread of its own (hashlib lets go
    of the GIL on large buffers), beside the client's reading and writing, with at most
    HASH_QUEUE chunks waiting. When the client rewinds (a server that ignored the Range
    header), the hash is rebuilt from what is left on disk."""

    def __init__(self, fh: Any, hasher: Any, start: int) -> None:
        self._fh = fh
        self._hasher = hasher
        self.position = start
        self.written = 0
        self._chunks: queue.Queue[bytes | None] = queue.Queue(HASH_QUEUE)
        self._thread = threading.Thread(target=self._hash, name="sha256", daemon=True)
        self._thread.start()

    def _hash(self) -> None:
        while (chunk := self._chunks.get()) is not None:
            self._hasher.update(chunk)

    def _settle(self) -> None:
        """Wait until every chunk handed over so far is hashed."""
        if self._thread.is_alive():
            self._chunks.put(None)
            self._thread.join()

    def write(self, data: bytes) -> int:
        written = int(self._fh.write(data))
        self._chunks.put(bytes(data))
        self.position += len(data)
        self.written += len(data)
        return written

    def hexdigest(self) -> str:
        self._settle()
        return str(self._hasher.hexdigest())

    def close(self) -> None:
        self._settle()

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence != 0 or offset != self.position:
            self._settle()
            self._fh.flush()
            self.position = self._fh.seek(offset, whence)
            self._hasher = hash_file(Path(self._fh.name), self.position)
            self._fh.seek(self.position)
            self._chunks = queue.Queue(HASH_QUEUE)
            self._thread = threading.Thread(target=self._hash, name="sha256", daemon=True)
            self._thread.start()
        return self.position

    def truncate(self, size: int | None = None) -> int:
        return int(self._fh.truncate(self.position if size is None else size))

    def flush(self) -> None:
        self._fh.flush()


@contextlib.contextmanager
def exclusive(final: Path) -> Iterator[None]:
    """One process at a time per file; the kernel drops the lock when a process dies."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(aside(final, ".halogen-lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _check_space(folder: Path, needed: int, label: str) -> None:
    free = shutil.disk_usage(folder).free
    if needed + SPACE_MARGIN > free:
        raise PullError(
            f"{label} needs {human(needed)} more but {folder} has {human(free)} free "
            f"(and {human(SPACE_MARGIN)} is kept free): make room and run pull again"
        )


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _in_place(final: Path, w: FileSource) -> Outcome | None:
    """The outcome for a file already under its final name, or None when there is none. A file
    pull verified before (its marker) is trusted as it stands; any other is read once and
    compared with the lock's sha256, or with the Hub's when the lock has none."""
    if not final.exists():
        return None
    sha = verified(final)
    expected = w.sha256
    if sha is None:  # placed by hand, or changed since pull verified it
        if expected is None:
            expected = remote(w).sha256
        sha = hash_file(final).hexdigest()
        if sha == expected:
            _write_marker(final, sha, None, w)
    if expected is not None and sha != expected:
        raise PullError(
            f"{final} is on disk but its sha256 is {sha}, not {expected}: it is not the file the "
            "site names; move it away and pull again (pull never overwrites a file it did not write)"
        )
    return Outcome(w.path, sha, final.stat().st_size, 0, 0, None)


def fetch(
    models_dir: Path, w: FileSource, *, progress: bool = True, announce: Callable[[str], None] | None = None
) -> Outcome:
    """Bring `w` in place under `models_dir`, verified; raises PullError with what to do.
    `announce` hears one line when a download starts (a Job's log has no progress bar)."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils._headers import build_hf_headers
    from huggingface_hub.utils.tqdm import disable_progress_bars

    final = final_path(models_dir, w)
    with exclusive(final):
        done = _in_place(final, w)
        if done is not None:
            return done
        hub = remote(w)
        if w.sha256 is not None and hub.sha256 is not None and hub.sha256 != w.sha256:
            raise PullError(
                f"{w.repo}/{w.file} at {w.revision} is now sha256 {hub.sha256}, halogen.lock says "
                f"{w.sha256}: the revision moved; pin `source.revision` to the commit that has the locked file"
            )
        if w.size is not None and hub.size != w.size:
            raise PullError(f"{w.repo}/{w.file} is {hub.size} bytes on the Hub, halogen.lock says {w.size}")
        expected = w.sha256 or hub.sha256
        if expected is None:
            raise PullError(
                f"{w.repo}/{w.file}: the Hub gives no sha256 (not an LFS file) and halogen.lock has none: "
                "cannot verify it"
            )
        part = part_path(final, expected)
        for stale in final.parent.glob(f".{final.name}.*.halogen-part"):
            if stale != part:  # a partial of another version can never be continued
                stale.unlink(missing_ok=True)
        have = partial_size(final, expected)
        if have > hub.size:
            part.unlink()
            have = 0
        _check_space(final.parent, hub.size - have, w.path)
        part.touch()
        if announce is not None:
            resuming = f", resuming at {human(have)}" if have else ""
            announce(
                f"fetching {w.path}: {human(hub.size - have)} of {human(hub.size)} from {w.repo}@{w.revision}{resuming}"
            )
        with part.open("r+b") as raw:
            raw.seek(have)
            out = HashingFile(raw, hash_file(part, have) if have else hashlib.sha256(), have)
            headers = build_hf_headers()
            headers["Accept-Encoding"] = "identity"
            if not progress:
                disable_progress_bars()
            try:
                http_get(
                    hub.location,
                    out,  # type: ignore[arg-type]
                    resume_size=have,
                    headers=headers,
                    expected_size=hub.size,
                    displayed_filename=w.path,
                )
            except (httpx2.TransportError, HfHubHTTPError) as exc:  # after the client's own retries
                raise PullError(
                    f"{w.path}: download cut ({_first_line(exc)}); run pull again to continue"
                ) from exc
            except OSError as exc:  # the client's size check, or the disk
                raise PullError(f"{w.path}: {_first_line(exc)}; run pull again to continue") from exc
            finally:
                out.close()
            raw.flush()
            os.fsync(raw.fileno())
        digest = out.hexdigest()
        if digest != expected:
            part.unlink(missing_ok=True)
            raise PullError(
                f"{w.path}: sha256 {digest} is not {expected}: the download is corrupt and was "
                "deleted; nothing was written under the final name"
            )
        os.chmod(part, 0o644)
        os.replace(part, final)
        _fsync_dir(final.parent)
        _write_marker(final, expected, hub.commit, w)
        return Outcome(w.path, expected, hub.size, out.written, have, hub.commit)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
