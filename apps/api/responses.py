"""Response bodies of the HTTP API (pydantic; they are the OpenAPI spec's response schemas), and the helpers that
shape library results into them (valid JSON: no NaN, no numpy values)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


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


class RewriteOut(BaseModel):
    prompt_id: str | None = Field(default=None, description="The prompt's id in `prompt_set` (None: a listed prompt).")
    prompt: str
    rewritten: str
    negative_prompt: str
    fallback: str = Field(description="Why the template answered instead of the LLM, if it did.")


class RewritesOut(BaseModel):
    user_id: str | None
    backend: str
    model: str
    prompt_set: str | None = Field(default=None, description="The prompt set the prompts came from, if one.")
    rewrites: list[RewriteOut]


class JobOut(BaseModel):
    job_id: str
    status: Literal["queued", "running", "completed", "failed"]
    status_url: str
    created_at: float
    started_at: float | None = Field(default=None, description="When its first image started (None: still queued).")
    finished_at: float | None = None
    error: str | None = None
    images: list[dict[str, Any]] = Field(
        default_factory=list,
        description=(
            "Per condition: user_id, prompt, url, sha256 (the image's content id: its PNG before signing), "
            "file_sha256 (of the signed file served), provenance (c2pa+watermark, or c2pa under 256 x 256 px), "
            "generation_id, seconds."
        ),
    )


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


def finite(v: Any) -> float | None:
    """A number for JSON: ``None`` for missing, NaN or infinite values."""
    import math

    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else float(v)


def clean_json(v: Any) -> Any:
    """Valid JSON: NaN/inf as null, numpy values as Python ones, anything else unknown as text."""
    import math

    if isinstance(v, dict):
        return {str(k): clean_json(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [clean_json(x) for x in v]
    if hasattr(v, "tolist") and not isinstance(v, (str, bytes)):
        return clean_json(v.tolist())
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, (str, int, bool, type(None))):
        return v
    return str(v)


def run_out(r: dict[str, Any]) -> dict[str, Any]:
    """A run row (:func:`workbench.store.runs.list_runs`) as ``RunOut``."""
    return {
        "run_id": r["run_id"],
        "kind": r["kind"],
        "status": r["status"],
        "started_at": str(r["started_at"]) if r.get("started_at") else None,
        "ended_at": str(r["ended_at"]) if r.get("ended_at") else None,
        "n_units": r.get("n_units"),
        "units_done": r.get("units_done"),
        "config_hash": r.get("config_hash"),
        "code_version": r.get("code_version"),
    }


class PersonalizeJobOut(BaseModel):
    job_id: str
    status: Literal["queued", "running", "completed", "failed"]
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    images: int | None = Field(default=None, description="Images the job draws (known once it is planned).")
    drawn: int = Field(default=0, description="Images drawn so far.")
    timings_s: dict[str, float] = Field(default_factory=dict, description="Seconds per stage, once completed.")
    status_url: str
    manifest_url: str | None = Field(default=None, description="The manifest, once completed.")


class PersonalizeManifestOut(BaseModel):
    job_id: str
    rows: list[dict[str, Any]] = Field(
        description="One per target x prompt x image (and baseline): ids, persona id and text hash, prompt, "
        "rewrite, negative, selector score, generator, model, seed, guidance, image, content_sha256 (url: "
        "GET /v1/images/{content_sha256}), sha256 of the signed file, provenance, watermark id."
    )
