"""What an import did that the user should know: each a note, printed and written to the site's
import report. Nothing the import leaves out goes unnamed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from halogen import yamlio

Kind = Literal["fixed", "changed", "kept", "not carried", "secret", "refused"]

REPORT_FILE = "import-report.md"
HEADINGS: dict[Kind, str] = {
    "fixed": "Fixed: bugs of the original, corrected in the site",
    "changed": "Changed: how the site says it, and what runs otherwise on purpose",
    "kept": "Kept as written: commands the site runs raw",
    "not carried": "Not carried: kept raw below, or named here",
    "secret": "Secrets: not written to the site; create them in the cluster",
    "refused": "Left out: what llama-swap or halogen refuses as written",
}


@dataclass(frozen=True, order=True)
class Note:
    kind: Kind
    where: str  # "config.yaml:12" or a manifest's name; "" = the config as a whole
    message: str


def at(doc: yamlio.Document, path: yamlio.Path_) -> str:
    """`config.yaml:12 models.x.cmd`: where a note's subject was written."""
    line, _ = doc.where(path)
    field = yamlio.dotted(path)
    return f"{doc.name}:{line}" + (f" {field}" if field else "")


def text(notes: list[Note]) -> str:
    """The notes as the terminal shows them: one line each, grouped by kind."""
    lines = []
    for kind in HEADINGS:
        for note in sorted(n for n in notes if n.kind == kind):
            where = f"{note.where}: " if note.where else ""
            lines.append(f"halogen import: {kind}: {where}{note.message}")
    return "\n".join(lines)


def report(source: str, notes: list[Note], raw: dict[str, Any], compared: list[str]) -> str:
    """The import report, as Markdown: kept in the site beside halogen.yaml."""
    out = [
        f"# Imported from {source}",
        "",
        "Written by `halogen import`. Read it, act on what it asks, then delete it: nothing reads it.",
        "",
    ]
    for kind, heading in HEADINGS.items():
        chosen = sorted(n for n in notes if n.kind == kind)
        if not chosen:
            continue
        out += [f"## {heading}", ""]
        out += [f"- {f'`{n.where}`: ' if n.where else ''}{n.message}" for n in chosen]
        out.append("")
    out += ["## Compared with the original", ""]
    out += [f"- {line}" for line in compared] or ["- (no model to compare)"]
    out.append("")
    if raw:
        out += [
            "## Kept raw",
            "",
            "What the site cannot say, as the original wrote it:",
            "",
            "```yaml",
            yamlio.dump(raw).rstrip("\n"),
            "```",
            "",
        ]
    return "\n".join(out)
