"""The building blocks of the API's request schemas (:mod:`apps.api.schemas`): the strict base model, which
refuses unknown fields, coercion and text that is not valid Unicode, and the bounded field types."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, StringConstraints, field_validator

#: Text with something in it: the spec says so (``pattern``), so a fuzzer's valid bodies are valid here too.
#: Beyond JSON Schema's ``\s``, Python's ``str.strip`` (which the rewriters use) also strips U+001C-U+001F
#: and U+0085, so those do not count either.
NonBlank = r"[^\s\x1c-\x1f\x85]"


def _not_utf8(v: Any) -> bool:
    if isinstance(v, str):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(v, dict):
        return any(_not_utf8(k) or _not_utf8(x) for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return any(_not_utf8(x) for x in v)
    if isinstance(v, BaseModel):
        return False  # validated on its own
    return False


class Strict(BaseModel):
    """Unknown fields are refused, and no coercion (``false`` is not a number, ``"3"`` not an int).

    Text must be valid Unicode: a lone surrogate (``"\\ud800"``, legal in JSON, not storable as UTF-8) is
    refused here with the field named, before anything is computed or stored.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("*", mode="after")
    @classmethod
    def _valid_unicode(cls, v: Any) -> Any:
        if _not_utf8(v):
            raise ValueError(
                "text holds a lone surrogate (an unpaired \\ud800-\\udfff escape), which is not "
                "valid Unicode; send UTF-8 text"
            )
        return v


def whole_float(v: Any) -> Any:
    """JSON Schema's ``integer`` includes ``7.0``; so does this server (never ``"7"`` or ``true``)."""
    return int(v) if isinstance(v, float) and v.is_integer() and abs(v) < 2**53 else v


WholeInt = Annotated[int, BeforeValidator(whole_float)]
Key64 = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Text128 = Annotated[str, StringConstraints(max_length=128)]
