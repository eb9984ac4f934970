"""`halogen smoke`: check a deployed endpoint's models (halogen/smoke/ does the work) and
print the report; usage errors are said here, before any request."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import click

if TYPE_CHECKING:
    from halogen.smoke.report import Format

SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}$")


def _say(line: str) -> None:
    click.echo(f"halogen: {line}", err=True)


def base_url(given: str) -> str:
    """The endpoint's base URL as requests are built on it (no trailing slash); a usage error
    for anything that is not an http(s) URL of a server."""
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in given):
        raise click.BadParameter("a URL holds no spaces or control characters", param_hint="URL")
    try:
        parts = urlsplit(given)
        parts.port  # noqa: B018 - raises ValueError for a port that is not one
    except ValueError as exc:
        raise click.BadParameter(f"{given!r}: {exc}", param_hint="URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter(
            f"{given!r} is not an http(s) URL of a server, e.g. http://127.0.0.1:8080", param_hint="URL"
        )
    if parts.username is not None or parts.password is not None:
        raise click.BadParameter(
            "put no credentials in the URL: use --api-key or HALOGEN_API_KEY", param_hint="URL"
        )
    if parts.query or parts.fragment:
        raise click.BadParameter(f"{given!r}: the base URL takes no query or fragment", param_hint="URL")
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        raise click.BadParameter(
            f"{given!r}: give the server's base URL, without /v1 (the smoke test asks /v1/... and /api/...)",
            param_hint="URL",
        )
    return f"{parts.scheme}://{parts.netloc}{path}"


def _write(path: Path, text: str) -> None:
    """Write the report whole or not at all: a CI step never reads half of one."""
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def run(
    url: str,
    models: Sequence[str],
    *,
    api_key: str | None,
    fmt: Format,
    output: Path | None,
    config_version: str | None,
    wait: float,
    timeout: float,
    concurrency: int,
) -> int:
    """Test, print the report (to `output`, if given), and say what failed: 0 when every check
    passed, 1 when one failed or the endpoint could not be reached, 2 for a usage error."""
    try:
        from halogen.smoke import report as reports
        from halogen.smoke.run import smoke
    except ImportError:
        _say("error: smoke needs aiohttp: pip install 'halogen-llamaswap[runtime]' (the image has it)")
        return 2
    if api_key is not None and any(ord(c) < 0x20 or ord(c) == 0x7F for c in api_key):
        # Never echoed: it is a secret even when it is a wrong one.
        raise click.BadParameter(
            "the API key holds a control character (a newline?)", param_hint="--api-key / HALOGEN_API_KEY"
        )
    if config_version is not None and not SHA256_HEX.match(config_version):
        raise click.BadParameter(
            f"{config_version!r} is not a sha256 in hex (64 characters): the sha256 of the config.yaml served",
            param_hint="--config-version",
        )
    if output is not None and not output.absolute().parent.is_dir():
        raise click.BadParameter(f"{output.parent} is not a folder", param_hint="--output")
    found = asyncio.run(
        smoke(
            base_url(url),
            models,
            api_key=api_key or None,
            timeout=timeout,
            concurrency=concurrency,
            config_version=config_version.lower() if config_version else None,
            wait=wait,
        )
    )
    text = reports.render(found, fmt)
    if output is not None:
        try:
            _write(output, text)
        except OSError as exc:
            _say(f"error: cannot write {output}: {exc.strerror}")
            return 1
    elif fmt != "table" or not found.error:
        click.echo(text, nl=False)
    if found.error:
        _say(f"error: {reports.printable(found.error)}")
        return 1
    if not found.passed:
        if output is not None or fmt != "table":  # else the table on stdout says it already
            for line in reports.failure_lines(found):
                _say(f"failed: {line}")
            failed = sum(not m.passed for m in found.models)
            _say(f"{failed} of {len(found.models)} model(s) failed")
        return 1
    return 0
