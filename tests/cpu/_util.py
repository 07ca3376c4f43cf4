"""Helpers shared by the CPU tests."""
import contextlib

import pytest


@contextlib.contextmanager
def raises(exc, *words):
    """pytest.raises whose message must contain every word."""
    with pytest.raises(exc) as info:
        yield info
    for w in words:
        assert w in str(info.value), f"{w!r} not in {info.value!r}"
