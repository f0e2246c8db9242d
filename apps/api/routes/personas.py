"""``POST /v1/personas`` (cold start), ``GET /v1/survey``, ``GET /v1/personas/{user_id}`` and ``POST /v1/rewrite``."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI

from apps.api import responses as R
from apps.api import schemas as S


def persona_out(card, source: str) -> dict[str, Any]:
    """A :class:`~workbench.records.PersonaCard` as ``PersonaOut``."""
    return {
        "user_id": card.user_id,
        "summary": card.summary,
        "traits": card.traits,
        "evidence": [
            {"item_id": e.item_id, "weight": float(e.weight), "snippet": e.snippet or ""} for e in card.evidence
        ],
        "demographics": card.demographics or {},
        "model_version": card.model_version or "",
        "source": source,
    }


def with_body(model):
    """The body's model is built per server: give it to FastAPI as a real class."""

    def deco(fn):
        fn.__annotations__["body"] = model
        return fn

    return deco


def add_routes(app: FastAPI, service, auth: list, errors: dict, body_errors: dict) -> None:
    """The persona and rewrite routes; ``RewriteIn`` lists this server's rewriters."""
    rewrite_in = S.rewrite_in(tuple(service.config.rewriters))

    @app.post(
        "/v1/personas",
        response_model=R.ColdStartOut,
        status_code=201,
        dependencies=auth,
        tags=["personas"],
        summary="Cold start: a persona for a new user",
        responses={
            **body_errors,
            404: {
                "model": R.ErrorOut,
                "description": "No item id is in the catalogue, or a "
                "survey question or option does not exist (GET /v1/survey)",
            },
            409: {"model": R.ErrorOut, "description": "Several answers to a one-answer question"},
        },
    )
    async def create_persona(body: S.ColdStartIn):
        # async on purpose: ~2 ms of CPU in one pass of the encoder costs less inline than a thread hop
        card, unknown, pending = service.coldstart(body)
        if pending is not None:
            await asyncio.wrap_future(pending)  # on disk before we say so (OSError: 503, nothing acknowledged)
            service.remember(card)
        return {"persona": persona_out(card, "coldstart"), "unknown_items": unknown, "stored": pending is not None}

    @app.get(
        "/v1/survey",
        response_model=R.SurveyOut,
        dependencies=auth,
        tags=["personas"],
        summary="The intake survey that POST /v1/personas accepts answers to",
        responses={**errors, 503: {"model": R.ErrorOut}},
    )
    async def survey():
        questions = service.need_ready().survey.questions
        return {
            "questions": [
                {
                    "id": q.qid,
                    "text": q.text,
                    "multiple": q.multiple,
                    "options": [{"label": o.label, "items": o.items, "traits": o.traits} for o in q.options],
                }
                for q in questions
            ]
        }

    @app.get(
        "/v1/personas/{user_id}",
        response_model=R.PersonaOut,
        dependencies=auth,
        tags=["personas"],
        summary="A stored persona",
        responses={**errors, 404: {"model": R.ErrorOut}},
    )
    def get_persona(user_id: str):
        card, source = service.persona(user_id)
        return persona_out(card, source)

    @app.post(
        "/v1/rewrite",
        response_model=R.RewritesOut,
        dependencies=auth,
        tags=["prompts"],
        summary="Rewrite prompts from a persona's perspective",
        responses={**body_errors, 404: {"model": R.ErrorOut}},
    )
    @with_body(rewrite_in)
    def rewrite(body):
        return service.rewrite(body)
