"""Waiting for something that happens in the background."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any

import pytest


async def eventually(
    check: Callable[[], Any], *, within: float = 20.0, interval: float = 0.1
) -> Any:
    """Poll `check` (plain or async) until it gives something truthy; return it, or fail."""
    deadline = time.monotonic() + within
    value: Any = None
    while time.monotonic() < deadline:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(interval)
    pytest.fail(f"not reached within {within}s; last value: {value!r}")
