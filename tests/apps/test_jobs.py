"""The generation queue is bounded and fair: a full queue answers 503 with Retry-After, a job over the work
budget or with an unknown guidance rule is refused before the 202, a small job is not stuck behind a large
one, finished jobs leave memory, and jobs a stopped server left behind are marked failed at start-up."""

import time

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from apps.api.app import create_app  # noqa: E402
from apps.api.job_records import ABANDONED  # noqa: E402
from apps.api.service import ServiceConfig  # noqa: E402
from workbench.store.keys import create_key  # noqa: E402
from workbench.store.workspace import Workspace  # noqa: E402

ENC = {"encoder": "sage", "encoder_params": {"epochs": 3}}


@pytest.fixture()
def db(review_copy):
    return review_copy


def _client(db, **kw):
    with Workspace(db) as ws:
        token = create_key(ws, f"k{time.perf_counter_ns()}", rate_per_minute=10**6)["token"]
    app = create_app(ServiceConfig(db=str(db), store_batch_s=0.05, **ENC, **kw), load_in_background=False)
    c = TestClient(app)
    c.headers["Authorization"] = f"Bearer {token}"
    return c


def _job(n, side=32, steps=2, **cond):
    return {
        "conditions": [{"user_id": f"u{k}", "prompt": "a red bicycle", "seed": k, **cond} for k in range(n)],
        "height": side,
        "width": side,
        "steps": steps,
    }


def _wait(c, job_id, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = c.get(f"/v1/jobs/{job_id}").json()
        if out["status"] in ("completed", "failed"):
            return out
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} not finished in {timeout} s")


def test_refusals_come_before_the_202_and_name_the_field(db):
    with _client(db, max_side=256, max_steps=10, max_work=1.0) as c:
        r = c.post("/v1/generate", json=_job(1, guidance="cfgg"))
        assert r.status_code == 422 and "guidance" in r.json()["detail"], r.text
        r = c.post("/v1/generate", json=_job(1, guidance="cfgpp", guidance_scale=5.0))
        assert r.status_code == 422 and "conditions.0.guidance" in r.json()["detail"] and "CFG++" in r.json()["detail"]
        r = c.post("/v1/generate", json=_job(16, side=256, steps=10))  # 10.5 megapixel-steps > 1
        assert r.status_code == 422 and "--max-work" in r.json()["detail"] and "megapixel-steps" in r.json()["detail"]
        r = c.post("/v1/generate", json=_job(1, steps=11))
        assert r.status_code == 422 and "steps" in r.json()["detail"]
        assert c.app.state.service.jobs.jobs == {}  # nothing was queued
        spec = c.get("/openapi.json").json()["components"]["schemas"]
        tiers = spec["GenerateIn"]["anyOf"]

        def steps_max(p):
            return p["steps"].get("maximum") or p["steps"]["anyOf"][0]["maximum"]

        assert tiers and all(
            t["properties"]["conditions"]["maxItems"]
            * t["properties"]["height"]["maximum"] ** 2
            * steps_max(t["properties"])
            <= 1.0e6
            for t in tiers
        )
        assert "cfgg" not in spec["ConditionIn"]["properties"]["guidance"]["enum"]


def test_a_full_queue_answers_503_with_retry_after(db):
    with _client(db, max_queue=1, max_side=64, max_steps=10) as c:
        first = c.post("/v1/generate", json=_job(16, side=64, steps=10)).json()  # runs
        codes = [c.post("/v1/generate", json=_job(1)) for _ in range(4)]  # one waits, the rest are refused
        statuses = [r.status_code for r in codes]
        assert statuses[0] == 202 and 503 in statuses, statuses
        refused = next(r for r in codes if r.status_code == 503)
        assert int(refused.headers["retry-after"]) >= 1 and "--max-queue" in refused.json()["detail"]
        _wait(c, first["job_id"])


def test_a_small_job_is_not_stuck_behind_a_large_one(db):
    with _client(db, max_side=64, max_steps=10) as c:
        large = c.post("/v1/generate", json=_job(16, side=64, steps=6)).json()
        time.sleep(0.2)
        small = c.post("/v1/generate", json=_job(1)).json()
        small_done, large_done = _wait(c, small["job_id"]), _wait(c, large["job_id"])
        assert small_done["status"] == large_done["status"] == "completed"
        assert small_done["finished_at"] < large_done["finished_at"]  # round robin: one condition, then its turn
        assert len(large_done["images"]) == 16 and len(small_done["images"]) == 1


def test_finished_jobs_leave_memory_and_are_read_back(db):
    with _client(db, job_ttl_s=0.0) as c:
        job = c.post("/v1/generate", json=_job(1)).json()
        done = _wait(c, job["job_id"])
        assert done["status"] == "completed", done["error"]
        c.post("/v1/generate", json=_job(1))  # a submission expires what is finished
        assert job["job_id"] not in c.app.state.service.jobs.jobs
        for _ in range(100):  # the journalled row reaches the workspace within a batch
            back = c.get(f"/v1/jobs/{job['job_id']}")
            if back.status_code == 200 and back.json()["status"] == "completed":
                break
            time.sleep(0.1)
        assert back.json()["status"] == "completed" and back.json()["images"] == done["images"]


def test_jobs_left_queued_by_a_stopped_server_are_marked_failed_at_start_up(db):
    with Workspace(db) as ws:
        ws.con.execute(
            "INSERT INTO api_jobs (job_id, key_id, kind, status, request) VALUES "
            "('job-left-behind', NULL, 'generate', 'queued', '{}')"
        )
    with _client(db) as c:
        for _ in range(100):
            with c.app.state.gate.reading() as ws:
                row = ws.query("SELECT status, error FROM api_jobs WHERE job_id = 'job-left-behind'")[0]
            if row[0] == "failed":
                break
            time.sleep(0.1)
        assert row == ("failed", ABANDONED)
        assert c.get("/v1/jobs/job-left-behind").json()["status"] == "failed"
