"""Request and response bodies of the HTTP API (pydantic; they are the OpenAPI spec's schemas).

Every list and string has a bound, so a request's size is limited field by field as well as in bytes.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

class Strict(BaseModel):
    """Unknown fields are refused, and no coercion (``false`` is not a number, ``"3"`` not an int)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class InteractionIn(Strict):
    item_id: str = Field(min_length=1, max_length=128, description="A catalogue item id (see GET /v1/survey for examples).")
    value: float | None = Field(default=None, ge=-1e6, le=1e6, allow_inf_nan=False,
                                description="Rating or strength; omitted: counts as liked.")
    kind: str = Field(default="like", min_length=1, max_length=32)


class ColdStartIn(Strict):
    """A new user's few interactions and/or intake-survey answers (at least one of the two)."""

    user_id: str | None = Field(default=None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@-]+$",
                                description="Your id for the user; omitted: one is assigned.")
    interactions: list[InteractionIn] = Field(default_factory=list, max_length=200)
    survey_answers: dict[str, list[str]] = Field(default_factory=dict, max_length=20,
                                                 description="Question id -> chosen option labels (GET /v1/survey).")
    attributes: dict[str, str] = Field(default_factory=dict, max_length=20,
                                       description="Declared demographics, e.g. {\"gender\": \"F\"}.")
    store: bool = Field(default=True, description="Keep the persona so GET /v1/personas/{user_id} returns it.")

    @model_validator(mode="after")
    def _needs_something(self):
        if not self.interactions and not self.survey_answers:
            raise ValueError("give `interactions` (item ids the user engaged with) or `survey_answers` (GET /v1/survey)")
        for q, opts in self.survey_answers.items():
            if len(q) > 64 or len(opts) > 20 or any(len(o) > 128 for o in opts):
                raise ValueError("survey_answers: at most 20 options of 128 characters per question id of 64")
        for k, v in self.attributes.items():
            if len(k) > 64 or len(v) > 128:
                raise ValueError("attributes: keys up to 64 and values up to 128 characters")
        return self


class EvidenceOut(BaseModel):
    item_id: str
    weight: float = Field(description="Attention weight (GAT) or score that ranked this evidence.")
    snippet: str


class PersonaOut(BaseModel):
    user_id: str
    summary: str = Field(description="The persona text.")
    traits: list[dict[str, Any]]
    evidence: list[EvidenceOut]
    demographics: dict[str, Any]
    model_version: str
    source: Literal["coldstart", "mined"]


class ColdStartOut(BaseModel):
    persona: PersonaOut
    unknown_items: list[str] = Field(description="Interaction item ids not in the catalogue (ignored).")
    stored: bool


class SurveyOptionOut(BaseModel):
    label: str
    items: list[str]
    traits: list[str]


class SurveyQuestionOut(BaseModel):
    id: str
    text: str
    multiple: bool
    options: list[SurveyOptionOut]


class SurveyOut(BaseModel):
    questions: list[SurveyQuestionOut]


class PersonaIn(Strict):
    """An inline persona: its text and optional weighted traits."""

    summary: str = Field(default="", max_length=4000)
    traits: list[dict[str, Any]] = Field(default_factory=list, max_length=50)


class RewriteIn(Strict):
    user_id: str | None = Field(default=None, min_length=1, max_length=128,
                                description="A user with a stored persona (cold-start or mined).")
    persona: PersonaIn | None = Field(default=None, description="Or an inline persona.")
    prompts: list[str] = Field(min_length=1, max_length=32, description="Generic image prompts to personalise.")
    backend: str = Field(default="template", max_length=32, description="A rewriter this server enables (GET /readyz).")
    shots: int = Field(default=0, ge=0, le=20)
    negative: bool = Field(default=False, description="Also write a negative prompt.")
    seed: int = Field(default=0, ge=0, le=2**31 - 1)

    @model_validator(mode="after")
    def _one_persona(self):
        if (self.user_id is None) == (self.persona is None):
            raise ValueError("give exactly one of `user_id` (a stored persona) and `persona` (inline)")
        for i, p in enumerate(self.prompts):
            if not p.strip() or len(p) > 1000:
                raise ValueError(f"prompts[{i}]: a prompt needs 1 to 1000 characters")
        return self


class RewriteOut(BaseModel):
    prompt: str
    rewritten: str
    negative_prompt: str
    fallback: str = Field(description="Why the template answered instead of the LLM, if it did.")


class RewritesOut(BaseModel):
    user_id: str | None
    backend: str
    model: str
    rewrites: list[RewriteOut]


class ConditionIn(Strict):
    user_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@-]+$")
    prompt: str = Field(min_length=1, max_length=1000, description="Usually a rewrite from POST /v1/rewrite.")
    negative_prompt: str | None = Field(default=None, max_length=1000)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    guidance: str = Field(default="cfg", max_length=32)
    guidance_scale: float | None = Field(default=None, ge=0.0, le=50.0, allow_inf_nan=False)


class GenerateIn(Strict):
    conditions: list[ConditionIn] = Field(min_length=1, max_length=16)
    height: int = Field(default=96, ge=16, le=2048, multiple_of=8)
    width: int = Field(default=96, ge=16, le=2048, multiple_of=8)
    steps: int | None = Field(default=None, ge=1, le=200)


class JobOut(BaseModel):
    job_id: str
    status: Literal["queued", "running", "completed", "failed"]
    status_url: str
    created_at: float
    finished_at: float | None = None
    error: str | None = None
    images: list[dict[str, Any]] = Field(default_factory=list,
                                         description="Per condition: user_id, prompt, url, sha256, seconds.")


class RunOut(BaseModel):
    run_id: str
    kind: str
    status: str
    started_at: str | None
    ended_at: str | None
    n_units: int | None
    units_done: int | None = None
    config_hash: str | None = None
    code_version: str | None = None


class RunsOut(BaseModel):
    runs: list[RunOut]


class MetricSummary(BaseModel):
    metric: str
    units: int
    mean: float | None


class ScoresOut(BaseModel):
    run: RunOut
    metrics: list[MetricSummary]
    leaderboard: list[dict[str, Any]]
    groups: list[dict[str, Any]]


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    ready: bool
    detail: str
    split: str | None = None
    encoder: str | None = None
    catalogue_items: int | None = None
    rewriters: list[str] = []
    generate_backend: str | None = None


class ErrorOut(BaseModel):
    detail: str
    errors: list[dict[str, Any]] = Field(default_factory=list)
