"""Request bodies of the HTTP API (pydantic; they are the OpenAPI spec's request schemas) and the work
budget they state (:mod:`apps.api.work_budget`); the response bodies are :mod:`apps.api.responses`.

Every list and string has a bound, so a request's size is limited field by field as well as in bytes.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from annotated_types import Ge, Le
from pydantic import BeforeValidator, ConfigDict, Field, StringConstraints, create_model, model_validator

from apps.api.schema_types import Key64, NonBlank, Strict, Text128, WholeInt, whole_float
from apps.api.work_budget import work_tiers
from generation.guidance import RULES


class InteractionIn(Strict):
    item_id: str = Field(
        min_length=1, max_length=128, description="A catalogue item id (see GET /v1/survey for examples)."
    )
    value: float | None = Field(
        default=None, ge=-1e6, le=1e6, allow_inf_nan=False, description="Rating or strength; omitted: counts as liked."
    )
    kind: str = Field(default="like", min_length=1, max_length=32)


class ColdStartIn(Strict):
    """A new user's few interactions and/or intake-survey answers (at least one of the two)."""

    user_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9_.:@-]+$",
        description="Your id for the user; omitted: one is assigned.",
    )
    interactions: list[InteractionIn] = Field(default_factory=list, max_length=200)
    survey_answers: dict[Key64, Annotated[list[Text128], Field(max_length=20)]] = Field(
        default_factory=dict, max_length=20, description="Question id -> chosen option labels (GET /v1/survey)."
    )
    attributes: dict[Key64, Text128] = Field(
        default_factory=dict, max_length=20, description='Declared demographics, e.g. {"gender": "F"}.'
    )
    store: bool = Field(default=True, description="Keep the persona so GET /v1/personas/{user_id} returns it.")

    # the rule below, in the spec too: at least one interaction or one answered question
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "anyOf": [
                {"required": ["interactions"], "properties": {"interactions": {"minItems": 1}}},
                {"required": ["survey_answers"], "properties": {"survey_answers": {"minProperties": 1}}},
            ]
        },
    )

    @model_validator(mode="after")
    def _needs_something(self):
        if not self.interactions and not self.survey_answers:
            raise ValueError(
                "give `interactions` (item ids the user engaged with) or `survey_answers` (GET /v1/survey)"
            )
        return self


class TraitIn(Strict):
    name: str = Field(min_length=1, max_length=200, pattern=NonBlank)
    weight: float = Field(default=1.0, ge=-1e6, le=1e6, allow_inf_nan=False)


class PersonaIn(Strict):
    """An inline persona: its text and optional weighted traits (a summary or at least one trait)."""

    summary: str = Field(default="", max_length=4000)
    traits: list[TraitIn] = Field(default_factory=list, max_length=50)

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "anyOf": [
                {"required": ["summary"], "properties": {"summary": {"pattern": NonBlank}}},
                {"required": ["traits"], "properties": {"traits": {"minItems": 1}}},
            ]
        },
    )

    @model_validator(mode="after")
    def _something(self):
        if not self.summary.strip() and not self.traits:
            raise ValueError("persona: give a summary or at least one trait")
        return self


#: prompts one rewrite request may carry (or pick from a prompt set)
MAX_REWRITE_PROMPTS = 32


def _only(key: str, kind: str, *others: tuple[str, str]) -> dict[str, Any]:
    """A spec alternative: ``key`` given (of JSON type ``kind``) and none of ``others`` (``(key, kind)`` pairs)."""
    given = [{"required": [k], "properties": {k: {"type": t}}} for k, t in others]
    return {
        "required": [key],
        "properties": {key: {"type": kind}},
        "not": given[0] if len(given) == 1 else {"anyOf": given},
    }


class RewriteIn(Strict):
    user_id: str | None = Field(
        default=None, min_length=1, max_length=128, description="A user with a stored persona (cold-start or mined)."
    )
    persona: PersonaIn | None = Field(default=None, description="Or an inline persona.")
    prompts: list[Annotated[str, StringConstraints(min_length=1, max_length=1000, pattern=NonBlank)]] | None = Field(
        default=None, min_length=1, max_length=MAX_REWRITE_PROMPTS, description="Generic image prompts to personalise."
    )
    prompt_set: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        pattern=NonBlank,
        description="Or a prompt set by name: one stored in the workspace (`pwb prompts import`) or a bundled one "
        "(`parti12`, ...). At most 32 of its prompts a request: pick them with `prompt_ids`.",
    )
    prompt_ids: list[Annotated[str, StringConstraints(min_length=1, max_length=128)]] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_REWRITE_PROMPTS,
        description="With `prompt_set`: which of its prompts.",
    )
    backend: str = Field(default="template", max_length=32, description="A rewriter this server enables (GET /readyz).")

    # exactly one of user_id and persona, and one of prompts and prompt_set, in the spec too
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "allOf": [
                {
                    "oneOf": [
                        _only("user_id", "string", ("persona", "object")),
                        _only("persona", "object", ("user_id", "string")),
                    ]
                },
                {  # and prompt_ids only with a prompt_set
                    "oneOf": [
                        _only("prompts", "array", ("prompt_set", "string"), ("prompt_ids", "array")),
                        _only("prompt_set", "string", ("prompts", "array")),
                    ]
                },
            ]
        },
    )
    shots: WholeInt = Field(default=0, ge=0, le=20)
    negative: bool = Field(default=False, description="Also write a negative prompt.")
    seed: WholeInt = Field(default=0, ge=0, le=2**31 - 1)

    @model_validator(mode="after")
    def _one_persona(self):
        if (self.user_id is None) == (self.persona is None):
            raise ValueError("give exactly one of `user_id` (a stored persona) and `persona` (inline)")
        if (self.prompts is None) == (self.prompt_set is None):
            raise ValueError("give exactly one of `prompts` (a list) and `prompt_set` (a set by name)")
        if self.prompt_ids is not None and self.prompt_set is None:
            raise ValueError("`prompt_ids` picks prompts of a `prompt_set`; give the set's name too")
        return self


def _scale_rules() -> dict[str, Any]:
    """Guidance rules whose scale has bounds (``scale_bounds`` on the rule class), as a spec rule."""
    from generation.guidance import get_rule_class

    bounded = {
        n: get_rule_class(n).scale_bounds for n in sorted(RULES) if getattr(get_rule_class(n), "scale_bounds", None)
    }
    if not bounded:
        return {}
    free = [n for n in sorted(RULES) if n not in bounded]
    branches: list[dict[str, Any]] = [{"properties": {"guidance": {"enum": free}}}]
    for name, (lo, hi) in bounded.items():
        branches.append(
            {
                "required": ["guidance"],
                "properties": {
                    "guidance": {"const": name},
                    "guidance_scale": {"anyOf": [{"type": "number", "minimum": lo, "maximum": hi}, {"type": "null"}]},
                },
            }
        )
    return {"anyOf": branches}


class ConditionIn(Strict):
    user_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@-]+$")
    prompt: str = Field(
        min_length=1, max_length=1000, pattern=NonBlank, description="Usually a rewrite from POST /v1/rewrite."
    )
    negative_prompt: str | None = Field(default=None, max_length=1000)
    seed: WholeInt = Field(default=0, ge=0, le=2**31 - 1)
    guidance: Literal[tuple(sorted(RULES))] = Field(default="cfg", description="A guidance rule.")  # type: ignore[valid-type]
    guidance_scale: float | None = Field(default=None, ge=0.0, le=50.0, allow_inf_nan=False)

    # a rule's own scale bounds (CFG++: lambda in [0, 1]) in the spec too; the rule checks them before the 202
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_scale_rules())


class GenerateIn(Strict):
    conditions: list[ConditionIn] = Field(min_length=1, max_length=16)
    height: WholeInt = Field(default=96, ge=16, le=2048, multiple_of=8)
    width: WholeInt = Field(default=96, ge=16, le=2048, multiple_of=8)
    steps: Annotated[int, Ge(1), Le(200), BeforeValidator(whole_float)] | None = None


def rewriter_field(rewriters: tuple[str, ...]):
    """A request's rewriter: the spec lists this server's (enum); the server's own check names the
    ``pwb serve --rewriter`` option that adds one."""
    return (
        str,
        Field(
            default="template",
            max_length=32,
            json_schema_extra={"enum": list(rewriters)},
            description="A rewriter this server enables (pwb serve --rewriter).",
        ),
    )


def rewrite_in(backends: tuple[str, ...]) -> type[RewriteIn]:
    """:class:`RewriteIn` whose ``backend`` lists the rewriters this server enables."""
    return create_model("RewriteIn", __base__=RewriteIn, backend=rewriter_field(backends))


def generate_in(
    max_side: int, max_steps: int, max_work: float = float("inf"), default_steps: int = 10, default_side: int = 96
) -> type[GenerateIn]:
    """:class:`GenerateIn` with this server's limits (``pwb serve --max-side / --max-steps / --max-work``),
    so the published spec says what the server enforces, the work budget's tiers included."""
    default = min(default_side, max_side - max_side % 8)
    default_steps = min(default_steps, max_steps)
    tiers = work_tiers(max_side, max_steps, max_work)
    anyof = []
    for t in tiers:
        # each branch states its fields in full (a generator merging branches must not lose the bounds)
        side = {"type": "integer", "minimum": 16, "maximum": t["side"], "multipleOf": 8}
        steps_int = {"type": "integer", "minimum": 1, "maximum": t["steps"]}
        props: dict[str, Any] = {
            "conditions": {"type": "array", "minItems": 1, "maxItems": t["conditions"]},
            "height": side,
            "width": side,
            "steps": {"anyOf": [steps_int, {"type": "null"}]},
        }
        required = ["conditions"]
        if default > t["side"]:
            required += ["height", "width"]
        if default_steps > t["steps"]:
            props["steps"] = steps_int
            required.append("steps")
        anyof.append({"properties": props, "required": required})
    if not tiers:
        raise ValueError(f"max_work: a budget of {max_work:g} megapixel-steps fits no job of 16 px at 1 step; raise it")
    model = create_model(
        "GenerateIn",
        __base__=GenerateIn,
        height=(WholeInt, Field(default=default, ge=16, le=max_side, multiple_of=8)),
        width=(WholeInt, Field(default=default, ge=16, le=max_side, multiple_of=8)),
        steps=(Annotated[int, Ge(1), Le(max_steps), BeforeValidator(whole_float)] | None, Field(default=None)),
    )
    model.model_config["json_schema_extra"] = {"anyOf": anyof}
    model.model_rebuild(force=True)
    model.work_tiers = tiers
    model.default_steps = default_steps
    return model
