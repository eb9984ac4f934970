"""What a model file on the Hugging Face Hub is, without downloading it: the commit a revision
names, each file's size and sha256 from the Hub's LFS metadata, and the facts its GGUF header
states, read with range requests (`halogen.hub.header`). A split GGUF is all of its parts: the
first part's header states the model, every part's tensor infos count toward its size.

Everything goes through `huggingface_hub`, so HF_ENDPOINT and HF_TOKEN (or the saved login) apply
as they do for `halogen pull`; the client drops the token when the Hub redirects to its CDN.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from halogen.hub import header
from halogen.hub.download import endpoint
from halogen.llamacpp.gguf_facts import GgufFacts

FILE_HINT = "check the file's name in the repository"


class RemoteError(Exception):
    """The Hub could not say: the message says why, the hint what to do."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True)
class Listing:
    """One repository at one revision: the commit it resolved to, and its files."""

    repo: str
    revision: str
    commit: str
    files: dict[str, tuple[int, str | None]]
    """Path in the repository -> (size, sha256); sha256 is None for a file not in LFS."""

    def entry(self, name: str) -> tuple[int, str]:
        if name not in self.files:
            near = sorted(f for f in self.files if f.endswith(".gguf"))
            known = (
                f" (its GGUF files: {', '.join(near[:8])}{', ...' if len(near) > 8 else ''})" if near else ""
            )
            raise RemoteError(f"{name} is not in {self.repo} at {self.revision}{known}", FILE_HINT)
        size, sha = self.files[name]
        if sha is None:
            raise RemoteError(
                f"{self.repo}/{name} is not an LFS file: the Hub gives no sha256 for it", FILE_HINT
            )
        return size, sha


@contextmanager
def _errors(what: str) -> Iterator[None]:
    """The client's exceptions as one line that says what to do."""
    import httpx2
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        yield
    except GatedRepoError as exc:
        raise RemoteError(
            f"{what}: the repository is gated", "accept its terms on the Hub, and set HF_TOKEN"
        ) from exc
    except RepositoryNotFoundError as exc:
        raise RemoteError(
            f"{what}: repository not found, or private without HF_TOKEN", "check it, or set HF_TOKEN"
        ) from exc
    except RevisionNotFoundError as exc:
        raise RemoteError(
            f"{what}: revision not found", "name a branch, tag or commit of the repository"
        ) from exc
    except EntryNotFoundError as exc:
        raise RemoteError(f"{what}: file not found", FILE_HINT) from exc
    except HfHubHTTPError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RemoteError(f"{what}: the Hub refused: {first}") from exc
    except (httpx2.TransportError, OSError) as exc:  # after the client's own retries
        raise RemoteError(
            f"{what}: cannot reach the Hub: {exc}", "check the network, or HF_ENDPOINT"
        ) from exc


def listing(repo: str, revision: str) -> Listing:
    """The repository at `revision`: one request (the model info with its files' metadata)."""
    from huggingface_hub import HfApi

    with _errors(f"{repo}@{revision}"):
        info = HfApi(endpoint=endpoint()).model_info(repo, revision=revision, files_metadata=True)
    if not info.sha:
        raise RemoteError(f"{repo}@{revision}: the Hub gave no commit")
    files: dict[str, tuple[int, str | None]] = {}
    for sibling in info.siblings or []:
        if sibling.lfs is not None:
            files[sibling.rfilename] = (sibling.lfs.size, sibling.lfs.sha256)
        elif sibling.size is not None:
            files[sibling.rfilename] = (sibling.size, None)
    return Listing(repo, revision, info.sha, files)


@dataclass
class Ranges:
    """Byte ranges of one file at one commit; `received` counts the body bytes read."""

    repo: str
    file: str
    commit: str
    received: int = field(default=0)

    def __call__(self, start: int, end: int) -> bytes:
        from huggingface_hub import constants, hf_hub_url
        from huggingface_hub.utils._headers import build_hf_headers
        from huggingface_hub.utils._http import hf_raise_for_status, http_stream_backoff

        url = hf_hub_url(self.repo, self.file, revision=self.commit, endpoint=endpoint())
        headers = {**build_hf_headers(), "Range": f"bytes={start}-{end - 1}", "Accept-Encoding": "identity"}
        body = bytearray()
        with (
            _errors(f"{self.repo}/{self.file}"),
            http_stream_backoff("GET", url, headers=headers, timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT) as r,
        ):
            hf_raise_for_status(r)
            # A server that ignores Range sends the whole file from its start: read only as
            # far as needed, and close.
            skip = 0 if r.status_code == 206 else start
            for chunk in r.iter_bytes():
                body += chunk
                self.received += len(chunk)
                if len(body) >= skip + end - start:
                    break
        data = bytes(body[skip : skip + end - start])
        if len(data) < end - start:
            raise RemoteError(f"{self.repo}/{self.file}: the Hub sent {len(data)} of bytes {start}-{end - 1}")
        return data


@dataclass(frozen=True)
class Part:
    """One file of a model (one part of a split GGUF) at a commit."""

    repo: str
    file: str
    commit: str
    size: int


def facts(parts: Sequence[Part]) -> tuple[GgufFacts, int]:
    """What the model's header states (its tensors counted over every part), and the bytes
    fetched to learn it. Raises RemoteError."""
    from halogen.llamacpp import gguf_header

    first, *rest = parts
    total = 0
    reader = Ranges(first.repo, first.file, first.commit)
    try:
        head = header.fetch(reader, first.size)
        with header.sparse_copy(head, first.size) as path:
            found = gguf_header.read_facts(path)
        count = header.split_count(head)
    except (ValueError, OSError, IndexError, KeyError) as exc:  # the reader's own errors
        raise RemoteError(f"{first.repo}/{first.file} is not a readable GGUF file: {exc}") from exc
    finally:
        total += reader.received
    if count != len(parts):
        raise RemoteError(
            f"{first.repo}/{first.file}: its header says {count} part(s) (split.count), its name {len(parts)}"
        )
    if not rest:
        return found, total
    parameters, tensor_bytes = found.parameterCount, found.tensorBytes
    for part in rest:
        reader = Ranges(part.repo, part.file, part.commit)
        try:
            elements, size = _tensors(header.fetch(reader, part.size), part.size)
        except (ValueError, OSError, IndexError, KeyError) as exc:
            raise RemoteError(f"{part.repo}/{part.file} is not a readable GGUF file: {exc}") from exc
        finally:
            total += reader.received
        parameters += elements
        tensor_bytes += size
    info = dict(found.info)
    if info.get("general.parameter_count") == found.parameterCount:  # counted from the first part
        info["general.parameter_count"] = parameters
    return found.model_copy(
        update={"parameterCount": parameters, "tensorBytes": tensor_bytes, "info": info}
    ), total


def _tensors(head: bytes, size: int) -> tuple[int, int]:
    """Elements and bytes of the tensors one part's header lists (a later part has no
    architecture for `read_facts`: llama.cpp's gguf-split writes the key/values in the first)."""
    import gguf

    with header.sparse_copy(head, size) as path:
        reader = gguf.GGUFReader(path, "r")
        return sum(int(t.n_elements) for t in reader.tensors), sum(int(t.n_bytes) for t in reader.tensors)
