"""What a smoke run found, and its three renderings: a table for people, JSON and JUnit XML
for CI. Pure: data in, text out; every string the server chose is made printable first."""

from __future__ import annotations

import json
import unicodedata
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["chat", "embedding", "reranker"]
Format = Literal["table", "json", "junit"]

# Longest model id the table shows whole; JSON and JUnit carry it all (escaped).
WIDEST_ID = 48


@dataclass
class Check:
    """One request of one model: `openai-chat`, `ollama-chat-stream`, `embeddings`, ..."""

    name: str
    passed: bool = False
    skipped: bool = False
    seconds: float = 0.0
    status: int | None = None  # the HTTP status, when the server answered
    error: str = ""


@dataclass
class ModelReport:
    id: str
    kind: Kind
    checks: list[Check] = field(default_factory=list)
    was_loaded: bool = False
    load_seconds: float | None = None
    load_from: str | None = None  # "running" (/running said ready) or "first-byte"
    ttft_seconds: float | None = None
    prompt_tps: float | None = None
    generation_tps: float | None = None
    speed_from: str | None = None  # "timings" (llama-server's) or "usage" (tokens / wall time)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed and not c.skipped]


@dataclass
class Report:
    url: str
    models: list[ModelReport] = field(default_factory=list)
    config_version: str | None = None
    error: str = ""  # the endpoint itself failed: nothing could be tested

    @property
    def passed(self) -> bool:
        return not self.error and all(m.passed for m in self.models)


def printable(text: str) -> str:
    """`text` with every control, format and separator character written as an escape
    (`\\x1b`, `\\n`, `\\u202e`), so a hostile model id can neither move the cursor, recolour the
    terminal, reorder a line nor break an XML document."""
    out = []
    for char in text:
        if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


def _id(model: str) -> str:
    shown = printable(model)
    return shown if len(shown) <= WIDEST_ID else shown[: WIDEST_ID - 1] + "…"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def table(report: Report) -> str:
    """The report for a terminal: one row per model, then one line per failed check."""
    if report.error:
        return f"{printable(report.error)}\n"
    header = ("MODEL", "KIND", "LOAD", "TTFT", "PROMPT tok/s", "GEN tok/s", "RESULT")
    rows = [header]
    for m in report.models:
        done = sum(c.passed for c in m.checks)
        load = "loaded" if m.was_loaded else _seconds(m.load_seconds)
        result = f"ok {done}/{len(m.checks)}" if m.passed else f"FAILED {done}/{len(m.checks)}"
        rows.append(
            (
                _id(m.id),
                m.kind,
                load,
                _seconds(m.ttft_seconds),
                _rate(m.prompt_tps),
                _rate(m.generation_tps),
                result,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    right = {2, 3, 4, 5}
    lines = [
        "  ".join(
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]) for i, cell in enumerate(row)
        ).rstrip()
        for row in rows
    ]
    passed = sum(m.passed for m in report.models)
    lines.append("")
    lines.append(f"{passed} of {len(report.models)} model(s) passed at {printable(report.url)}")
    lines.extend(failure_lines(report))
    return "\n".join(lines) + "\n"


def failure_lines(report: Report) -> list[str]:
    """`model: check[, check]: what failed`, the checks that failed alike on one line."""
    lines: list[str] = []
    for m in report.models:
        alike: dict[str, list[str]] = {}
        for c in m.failures():
            alike.setdefault(c.error, []).append(c.name)
        lines.extend(f"{_id(m.id)}: {', '.join(names)}: {printable(error)}" for error, names in alike.items())
    return lines


def _figure(value: float | None, places: int) -> float | None:
    return None if value is None else round(value, places)


def document(report: Report) -> dict[str, Any]:
    """The report for programs: seconds and tokens per second as numbers, null when unknown."""
    return {
        "url": report.url,
        "configVersion": report.config_version,
        "passed": report.passed,
        "error": report.error or None,
        "models": [
            {
                "id": m.id,
                "kind": m.kind,
                "passed": m.passed,
                "wasLoaded": m.was_loaded,
                "loadSeconds": _figure(m.load_seconds, 3),
                "loadFrom": m.load_from,
                "ttftSeconds": _figure(m.ttft_seconds, 3),
                "promptTokensPerSecond": _figure(m.prompt_tps, 1),
                "generationTokensPerSecond": _figure(m.generation_tps, 1),
                "speedFrom": m.speed_from,
                "checks": [
                    {
                        "name": c.name,
                        "passed": c.passed,
                        "skipped": c.skipped,
                        "seconds": round(c.seconds, 3),
                        "status": c.status,
                        "error": c.error or None,
                    }
                    for c in m.checks
                ],
            }
            for m in report.models
        ],
    }


def as_json(report: Report) -> str:
    return json.dumps(document(report), indent=2) + "\n"


def junit(report: Report) -> str:
    """JUnit XML: one <testsuite> per model (its figures as properties), one <testcase> per
    check, a <failure> with the status and the server's message for each that failed. An
    endpoint that could not be listed is one failed testcase of its own."""
    suites = ET.Element("testsuites", name="halogen smoke")
    if report.error:
        suite = _suite(suites, "endpoint", 1, 1, 0, 0.0)
        case = ET.SubElement(suite, "testcase", classname="endpoint", name="list models", time="0")
        ET.SubElement(case, "failure", message=printable(report.error), type="EndpointError")
    for m in report.models:
        failed = len(m.failures())
        skipped = sum(c.skipped for c in m.checks)
        total = sum(c.seconds for c in m.checks)
        suite = _suite(suites, printable(m.id), len(m.checks), failed, skipped, total)
        properties = ET.SubElement(suite, "properties")
        figures = document(Report(report.url, [m]))["models"][0]
        for key in (
            "kind",
            "loadSeconds",
            "ttftSeconds",
            "promptTokensPerSecond",
            "generationTokensPerSecond",
        ):
            if figures[key] is not None:
                ET.SubElement(properties, "property", name=key, value=str(figures[key]))
        for c in m.checks:
            case = ET.SubElement(
                suite, "testcase", classname=printable(m.id), name=c.name, time=f"{c.seconds:.3f}"
            )
            if c.skipped:
                ET.SubElement(case, "skipped", message=printable(c.error))
            elif not c.passed:
                failure = ET.SubElement(case, "failure", message=printable(c.error), type="SmokeFailure")
                failure.text = printable(c.error)
    tests = sum(len(m.checks) for m in report.models) + (1 if report.error else 0)
    failures = sum(len(m.failures()) for m in report.models) + (1 if report.error else 0)
    suites.set("tests", str(tests))
    suites.set("failures", str(failures))
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def _suite(
    parent: ET.Element, name: str, tests: int, failures: int, skipped: int, seconds: float
) -> ET.Element:
    return ET.SubElement(
        parent,
        "testsuite",
        name=name,
        tests=str(tests),
        failures=str(failures),
        errors="0",
        skipped=str(skipped),
        time=f"{seconds:.3f}",
    )


def render(report: Report, fmt: Format) -> str:
    if fmt == "json":
        return as_json(report)
    if fmt == "junit":
        return junit(report)
    return table(report)
