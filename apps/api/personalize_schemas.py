"""The ``POST /v1/personalize`` request body (pydantic; the spec's ``PersonalizeIn``): who, what and how, each
list and string bounded (bulk runs are ``pwb personalize``)."""

from __future__ import annotations

from typing import Annotated, Any

from annotated_types import Ge, Le
from pydantic import BeforeValidator, ConfigDict, Field, StringConstraints, create_model, model_validator

from apps.api.schema_types import NonBlank, Strict, WholeInt, whole_float
from apps.api.schemas import rewriter_field

#: what one personalize job may ask for (bulk runs are `pwb personalize`)
PERSONALIZE_LIMITS = {"users": 50, "cohorts": 8, "archetypes": 16, "new_users": 50, "prompts": 16, "images": 4}
UserId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@-]+$")]


class CohortIn(Strict):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$", description="The cohort's name.")
    where: str | None = Field(
        default=None,
        min_length=1,
        max_length=1000,
        pattern=NonBlank,
        description='Its members: a SQL condition over the users\' columns (e.g. "age < 30"); omitted: a stored cohort.',
    )


class NewUserIn(Strict):
    user_id: UserId
    items: list[Annotated[str, StringConstraints(min_length=1, max_length=128)]] = Field(
        min_length=1, max_length=200, description="Catalogue item ids the new user liked."
    )


def _personalize_spec(schema: dict[str, Any], cls) -> None:
    """The who rule (at least one of users, cohorts, archetypes, new_users given and not empty) and the what
    rule (exactly one of prompts and prompt_set) in the spec, each branch with its field's full schema (a
    generator merging branches must not lose the bounds)."""
    props = schema["properties"]

    def given(key: str) -> dict[str, Any]:
        spec = dict(props[key])
        if "anyOf" in spec:  # `T | None`: the non-null branch
            spec = next(s for s in spec["anyOf"] if s.get("type") != "null")
        if spec.get("type") == "array":
            spec["minItems"] = 1
        return {"required": [key], "properties": {key: spec}}

    schema["allOf"] = [
        {"anyOf": [given(k) for k in ("users", "cohorts", "archetypes", "new_users")]},
        {
            "oneOf": [
                {
                    **given("prompts"),
                    "not": {"required": ["prompt_set"], "properties": {"prompt_set": {"type": "string"}}},
                },
                {**given("prompt_set"), "not": {"required": ["prompts"], "properties": {"prompts": {"type": "array"}}}},
            ]
        },
    ]


class PersonalizeIn(Strict):
    """Who (at least one of users, cohorts, archetypes, new_users), what (prompts or a prompt set), how."""

    users: list[UserId] = Field(default_factory=list, max_length=PERSONALIZE_LIMITS["users"])
    cohorts: list[CohortIn] = Field(default_factory=list, max_length=PERSONALIZE_LIMITS["cohorts"])
    archetypes: Annotated[int, Ge(2), Le(PERSONALIZE_LIMITS["archetypes"]), BeforeValidator(whole_float)] | None = (
        Field(default=None, description="K archetype personas (k-means over persona embeddings).")
    )
    new_users: list[NewUserIn] = Field(default_factory=list, max_length=PERSONALIZE_LIMITS["new_users"])
    prompts: list[Annotated[str, StringConstraints(min_length=1, max_length=600, pattern=NonBlank)]] | None = Field(
        default=None, min_length=1, max_length=PERSONALIZE_LIMITS["prompts"]
    )
    prompt_set: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        pattern=NonBlank,
        description=f"Or a stored or bundled prompt set (at most its first {PERSONALIZE_LIMITS['prompts']} prompts).",
    )
    rewriter: str = Field(default="template", max_length=32, description="A rewriter this server enables.")
    candidates: WholeInt = Field(default=1, ge=1, le=8)
    images: WholeInt = Field(default=1, ge=1, le=PERSONALIZE_LIMITS["images"])
    size: WholeInt = Field(default=128, ge=32, le=2048, multiple_of=8)
    seed: WholeInt = Field(default=0, ge=0, le=2**31 - 1)
    baseline: bool = Field(default=False, description="Also draw the no-persona image beside each.")

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_personalize_spec)

    @model_validator(mode="after")
    def _who_and_what(self):
        if not (self.users or self.cohorts or self.archetypes is not None or self.new_users):
            raise ValueError("give at least one of `users`, `cohorts`, `archetypes` and `new_users`")
        if (self.prompts is None) == (self.prompt_set is None):
            raise ValueError("give exactly one of `prompts` (a list) and `prompt_set` (a set by name)")
        return self


def personalize_in(rewriters: tuple[str, ...], max_side: int) -> type[PersonalizeIn]:
    """:class:`PersonalizeIn` with this server's rewriters and largest side in its spec."""
    side = max(32, max_side - max_side % 8)
    return create_model(
        "PersonalizeIn",
        __base__=PersonalizeIn,
        rewriter=rewriter_field(rewriters),
        size=(WholeInt, Field(default=min(128, side), ge=32, le=side, multiple_of=8)),
    )
