"""Figures the image test measures (sizes, package list, timings), shown after the run."""

from collections.abc import Iterator

import pytest

_FIGURES = pytest.StashKey[list[str]]()


@pytest.fixture(scope="session")
def figures(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    lines: list[str] = []
    request.config.stash[_FIGURES] = lines
    yield lines


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    lines = config.stash.get(_FIGURES, [])
    if lines:
        terminalreporter.write_sep("-", "halogen image")
        for line in lines:
            terminalreporter.write_line(line)
