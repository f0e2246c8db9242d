"""Schemathesis against the OpenAPI spec the server publishes: generated requests for every operation
(valid and invalid bodies, odd path parameters) must never get a 5xx or break the response schemas."""

import shutil

import pytest

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("fastapi")
from hypothesis import HealthCheck, settings  # noqa: E402

from apps.api.app import create_app  # noqa: E402
from apps.api.service import ServiceConfig  # noqa: E402
from workbench.store.keys import create_key  # noqa: E402
from workbench.store.workspace import Workspace  # noqa: E402


@pytest.fixture(scope="module")
def fuzzed(review_db, tmp_path_factory):
    dst = tmp_path_factory.mktemp("fuzz") / "ws"
    shutil.copytree(review_db.parent, dst)
    db = dst / review_db.name
    with Workspace(db) as ws:
        token = create_key(ws, "schemathesis", rate_per_minute=10**9)["token"]
    # small jobs: the fuzzer's valid /v1/generate requests are drawn for real, in the background
    cfg = ServiceConfig(db=str(db), encoder="sage", encoder_params={"epochs": 3}, max_side=64, max_steps=2)
    app = create_app(cfg, public_docs=True, load_in_background=False)
    from fastapi.testclient import TestClient

    with TestClient(app):  # runs the lifespan: models loaded before the first case
        yield app, token
    app.state.service.jobs.close()


def test_no_server_errors(fuzzed):
    """Every operation, 25 generated cases each (schemathesis' pytest plugin does not load under pytest 9,
    so the operations' hypothesis strategies are driven here)."""
    from hypothesis import given

    app, token = fuzzed
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    ops = [r.ok() for r in schema.get_all_operations()]
    assert len(ops) >= 10
    seen = {}
    for op in ops:
        calls = []

        @given(case=op.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            # every check, positive_data_acceptance included: what the spec allows the server accepts (a
            # body naming items outside the catalogue or an unknown survey option is a 404, not a 422)
            response = case.call_and_validate(headers={"Authorization": f"Bearer {token}"})
            assert response.status_code < 500
            calls.append(response.status_code)  # noqa: B023 (check() runs within this iteration)

        check()
        seen[op.label] = len(calls)
    assert all(n > 0 for n in seen.values()), seen
