"""Fixtures shared by the test modules."""

from __future__ import annotations

import contextlib

import pytest


@pytest.fixture(scope="session")
def shared_cache_dir(tmp_path_factory):
    """The feature and crop cache the test modules share: one folder per test process (each
    pytest-xdist worker has its own base temp), so cached measurements are reused across modules
    and never leave the test run."""
    return tmp_path_factory.getbasetemp() / "cache"


@pytest.fixture
def shared_cache(shared_cache_dir, monkeypatch):
    """``LEGSMI_CACHE_DIR`` set to :func:`shared_cache_dir` for one test."""
    monkeypatch.setenv("LEGSMI_CACHE_DIR", str(shared_cache_dir))
    return shared_cache_dir


@pytest.fixture(scope="session")
def cache_env(shared_cache_dir):
    """A context manager that sets ``LEGSMI_CACHE_DIR`` to the shared cache inside a module- or
    session-scoped fixture (which cannot take the function-scoped ``monkeypatch``), and restores it."""

    @contextlib.contextmanager
    def use():
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("LEGSMI_CACHE_DIR", str(shared_cache_dir))
            yield shared_cache_dir

    return use
