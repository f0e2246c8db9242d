"""``GET /v1/runs`` and ``GET /v1/runs/{run_id}/scores``: benchmark runs and their scores."""

from __future__ import annotations

from fastapi import FastAPI

from apps.api import responses as R


def add_routes(app: FastAPI, service, auth: list, errors: dict) -> None:

    @app.get(
        "/v1/runs",
        response_model=R.RunsOut,
        dependencies=auth,
        tags=["runs"],
        summary="Benchmark runs",
        responses=errors,
    )
    def runs():
        return {"runs": service.runs()}

    @app.get(
        "/v1/runs/{run_id}/scores",
        response_model=R.ScoresOut,
        dependencies=auth,
        tags=["runs"],
        summary="A run's scores: per-metric means, leaderboard, per-group rows",
        responses={**errors, 404: {"model": R.ErrorOut}},
    )
    def scores(run_id: str):
        return service.scores(run_id)
