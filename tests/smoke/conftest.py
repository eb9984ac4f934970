"""The smoke tests run `async def` tests as the runtime's do."""

from tests.runtime.conftest import pytest_pyfunc_call  # noqa: F401
