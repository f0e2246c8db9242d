"""Fixtures shared by the persona tests."""

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def ml100k_wheel():
    """The recbole wheel holding MovieLens-100k (fetched once into the cache), or a skip saying why."""
    from persona.data.movielens import fetch_wheel
    from workbench.errors import DataError

    cache = os.environ.get("PWB_CACHE") or Path.home() / ".cache" / "persona-workbench"
    try:
        return fetch_wheel(cache, quiet=True)
    except (DataError, OSError) as exc:
        pytest.skip(f"MovieLens-100k unavailable: could not fetch the recbole==1.2.1 wheel into {cache}: {exc}")


@pytest.fixture(scope="session")
def ml100k(ml100k_wheel):
    """MovieLens-100k as the importer gives it."""
    from persona.data.movielens import load_movielens

    return load_movielens(ml100k_wheel)
