"""Shared fixtures: one body model (and one anny reference model) per test session."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def anny_body():
    from meshpose.body import AnnyBody

    return AnnyBody()


@pytest.fixture(scope="session")
def anny_body64():
    from meshpose.body import AnnyBody

    return AnnyBody(dtype=torch.float64)


@pytest.fixture(scope="session")
def anny_reference():
    """anny's own model (float64), or a skip when anny is not installed.

    The first construction builds anny's cache (~1 min); set ANNY_CACHE_DIR to keep it.
    """
    anny = pytest.importorskip("anny")
    return anny.Anny().to(torch.float64)
