"""One warm sandbox pool for the sandbox unit tests."""

import pytest

from sandbox.executor import SandboxPool


@pytest.fixture(scope="session")
def pool():
    with SandboxPool() as started:
        yield started
