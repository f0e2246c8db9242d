"""Fixtures shared by the persona tests."""

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def ml100k():
    """MovieLens-100k from the recbole wheel (fetched once into the cache), or a skip saying why."""
    from persona.data.movielens import fetch_wheel, load_movielens
    from workbench.errors import DataError

    cache = os.environ.get("PWB_CACHE") or Path.home() / ".cache" / "persona-workbench"
    try:
        wheel = fetch_wheel(cache, quiet=True)
    except (DataError, OSError) as exc:
        pytest.skip(f"MovieLens-100k unavailable: could not fetch the recbole==1.2.1 wheel into {cache}: {exc}")
    return load_movielens(wheel)
