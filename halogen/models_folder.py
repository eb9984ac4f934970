"""Where a model file may be: under the models folder, never outside it.

A model file's path comes from a site's `file:`, a key of halogen.lock or of the sources document
`halogen pull --sources` reads (the pull Job's ConfigMap), always relative to the models folder.
Each place that turns one into a path on disk goes through `confine`, so a key such as
`../escaped/x.gguf` cannot make pull write, or lock read, a file elsewhere. The pod sees only the
models mount, so a symbolic link that leads out of the folder names nothing it could load either.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath


class OutsideModels(ValueError):
    """A model file path that is not a file under the models folder; the message says why."""


def problem(name: str) -> str | None:
    """Why `name` cannot be a file's path relative to the models folder, or None when it can.
    Lexical only: what the file system holds is `confine`'s business."""
    if not name:
        return "is empty"
    if "\x00" in name:
        return "holds a NUL byte"
    if "\n" in name or "\r" in name:
        return "spans more than one line"
    if "\\" in name:
        return "holds a backslash: folders are separated by /"
    if name.startswith("/"):
        return "is absolute: give it relative to the models folder"
    if ".." in name.split("/"):
        return "climbs with '..': give it relative to the models folder, without '..'"
    if str(PurePosixPath(name)) == ".":
        return "names the models folder itself, not a file in it"
    return None


def relative(name: str) -> PurePosixPath:
    """`name` normalised (`./a//b` is `a/b`); raises OutsideModels when it cannot be one."""
    why = problem(name)
    if why is not None:
        raise OutsideModels(f"model file path {name!r} {why}")
    return PurePosixPath(name)


def confine(folder: Path, name: str) -> Path:
    """`folder / name`, once sure it stays in `folder` with every symbolic link followed; raises
    OutsideModels otherwise. The folder itself may be a link (a mount point often is)."""
    path = folder / relative(name)
    try:
        root = folder.resolve()
        real = path.resolve()
    except (OSError, RuntimeError) as exc:  # a loop of links
        raise OutsideModels(f"model file path {name!r} cannot be followed in {folder}: {exc}") from None
    if real != root and root not in real.parents:
        raise OutsideModels(
            f"model file path {name!r} leads out of the models folder {folder} through a symbolic link, to {real}"
        )
    return path


def validator(name: str) -> str:
    """For pydantic: a key or value that must name a file under the models folder."""
    relative(name)
    return name
