"""The field names llama-swap's UI reads, parsed from its TypeScript types (ui/src/lib/types.ts at
the commit halogen.runtime names), vendored in fixtures/ui_types.json for runs without the mirror.

Run `python -m tests.runtime.ui_types` with the mirror present to write the JSON again."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

MIRROR = Path("/work/.mirror/mostlygeek+llama-swap/repo")
TYPES = "ui/src/lib/types.ts"
VENDORED = Path(__file__).with_name("fixtures") / "ui_types.json"
# The interfaces whose shapes halogen's UI API answers in.
INTERFACES = (
    "Model",
    "TokenMetrics",
    "ActivityLogEntry",
    "ActivityPage",
    "ReqRespCapture",
    "LogData",
    "InflightRequestEntry",
    "InFlightStats",
    "UIConfig",
    "NetIOStat",
    "SysStat",
    "GpuStat",
    "PerformanceResponse",
    "APIEventEnvelope",
    "HistogramData",
    "ActivityStatsData",
    "HardwareSnapshot",
    "HardwareCapture",
    "HardwareArchitecture",
    "HardwareOperatingSystem",
    "HardwareEnvironment",
    "HardwareCPU",
    "HardwareMemory",
    "HardwareAccelerator",
)
_FIELD = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)(\??):")


def parse(text: str) -> dict[str, dict[str, Any]]:
    """Each `export interface` of `text`: its line, its top-level fields, the optional ones."""
    out: dict[str, dict[str, Any]] = {}
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        found = re.match(r"^export interface (\w+) \{", line)
        if found is None:
            continue
        fields: list[str] = []
        optional: list[str] = []
        depth = 1
        for inner in lines[number:]:
            if depth == 1:
                field = _FIELD.match(inner)
                if field is not None:
                    fields.append(field.group(1))
                    if field.group(2):
                        optional.append(field.group(1))
            depth += inner.count("{") - inner.count("}")
            if depth <= 0:
                break
        out[found.group(1)] = {"file": TYPES, "line": number, "fields": fields, "optional": optional}
    return out


def derive() -> dict[str, Any]:
    text = subprocess.run(
        ["git", "-C", str(MIRROR), "show", f"HEAD:{TYPES}"], capture_output=True, text=True, check=True
    ).stdout
    commit = subprocess.run(
        ["git", "-C", str(MIRROR), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    parsed = parse(text)
    return {"commit": commit, "interfaces": {name: parsed[name] for name in INTERFACES}}


def vendored() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VENDORED.read_text())
    return data


if __name__ == "__main__":
    VENDORED.write_text(json.dumps(derive(), indent=1) + "\n")
