"""Recorded consent for identity references: a face is used only once the person pictured has agreed.

:class:`Consent` records who agreed, when and to what; :class:`IdentityReference` is a face to inject with
its consent (:meth:`IdentityReference.require_consent` refuses one without).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields
from datetime import UTC, date, datetime
from typing import Any

from workbench.images import ImageLike, describe_image

#: The consent scope an identity reference needs.
IDENTITY_SCOPE = "identity-injection"


class ConsentError(ValueError):
    """An identity reference is used without consent that covers identity injection."""


def consent_subject(subject: Any) -> str:
    """``subject`` normalised (NFKC, format characters such as U+200B, U+2060, U+FEFF removed, trimmed);
    ``ValueError`` unless it then holds a letter or a digit: invisible or punctuation-only text names nobody."""
    import unicodedata

    if not isinstance(subject, str):
        raise ValueError(f"Consent `subject` must name who consented, got {subject!r}")
    text = "".join(ch for ch in unicodedata.normalize("NFKC", subject) if unicodedata.category(ch) != "Cf").strip()
    if not any(unicodedata.category(ch)[0] in "LN" for ch in text):
        raise ValueError(
            f"Consent `subject` must name who consented (a letter or digit after removing invisible "
            f"characters), got {subject!r}"
        )
    return text


def _in_future(when: datetime, *, date_only: bool) -> bool:
    """Later than now; a date or a date-time without a zone is later than now everywhere (UTC+14)."""
    from datetime import timedelta

    now = datetime.now(UTC)
    if date_only:
        return when.date() > (now + timedelta(hours=14)).date()
    if when.tzinfo is None:
        return when > (now + timedelta(hours=14)).replace(tzinfo=None)
    return when > now + timedelta(minutes=5)  # clock skew


@dataclass(frozen=True)
class Consent:
    """A record that the person pictured in an identity reference agreed to its use.

    Args:
        subject: Who consented (a name or an opaque id); must not be empty.
        granted_at: When, as an ISO 8601 date or date-time string (``"2025-03-01"``,
            ``"2025-03-01T14:30:00+01:00"``); a :class:`~datetime.date` or :class:`~datetime.datetime`
            is converted to its ISO string.
        scope: What the consent covers: one or more scopes separated by commas or spaces. Identity
            references need ``"identity-injection"`` (the default).
        note: Free text, e.g. where the signed form is kept.

    Example:
        >>> c = Consent(subject="Ada", granted_at="2025-03-01")
        >>> c.covers("identity-injection")
        True
        >>> Consent.from_dict(c.to_dict()) == c
        True
    """

    subject: str
    granted_at: str
    scope: str = IDENTITY_SCOPE
    note: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "subject", consent_subject(self.subject))

        granted = self.granted_at
        if isinstance(granted, (date, datetime)):  # datetime is a date subclass; isoformat keeps the time
            granted = granted.isoformat()
        if not isinstance(granted, str):
            raise ValueError(f"Consent `granted_at` must be an ISO 8601 date or date-time string, got {granted!r}")
        granted = granted.strip()
        try:
            when = datetime.fromisoformat(granted)
        except ValueError:
            raise ValueError(
                f"Consent `granted_at` must be an ISO 8601 date or date-time such as '2025-03-01' or "
                f"'2025-03-01T14:30:00+00:00', got {self.granted_at!r}"
            ) from None
        if _in_future(when, date_only=len(granted) <= 10):
            raise ValueError(
                f"Consent `granted_at` {granted!r} is in the future: consent is recorded when it was "
                "given; pass the date it was granted"
            )
        object.__setattr__(self, "granted_at", granted)

        if not isinstance(self.scope, str) or not self.scope.strip():
            raise ValueError(
                f"Consent `scope` must be a non-empty string such as {IDENTITY_SCOPE!r}, got {self.scope!r}"
            )
        object.__setattr__(self, "scope", self.scope.strip())
        if self.note is not None and not isinstance(self.note, str):
            raise ValueError(f"Consent `note` must be a string or None, got {type(self.note).__name__}")

    @property
    def scopes(self) -> tuple[str, ...]:
        """The scopes in :attr:`scope`, split on commas and whitespace."""
        return tuple(s for s in re.split(r"[,\s]+", self.scope) if s)

    def covers(self, purpose: str = IDENTITY_SCOPE) -> bool:
        """Whether this consent covers ``purpose`` (exact scope match)."""
        return purpose in self.scopes

    def to_dict(self) -> dict[str, Any]:
        """``{"subject", "granted_at", "scope", "note"}``, JSON-ready."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Consent:
        """The inverse of :meth:`to_dict`; unknown keys are an error (a typo would drop a field)."""
        if not isinstance(data, dict):
            raise ValueError(f"Consent.from_dict expects a dict, got {type(data).__name__}")
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ValueError(f"unknown Consent field(s) {unknown}; expected {', '.join(names)}")
        missing = [n for n in ("subject", "granted_at") if n not in data]
        if missing:
            raise ValueError(f"Consent.from_dict is missing {', '.join(missing)}")
        return cls(**data)


@dataclass
class IdentityReference:
    """A face to inject, with the consent of the person pictured.

    Args:
        image: The reference image: a file path, a PIL image or an ``HxWx3`` uint8 array.
        consent: The recorded :class:`Consent` (a dict from :meth:`Consent.to_dict` is converted).
            ``None`` means none was recorded, and :meth:`require_consent` refuses the reference.
        scale: Adapter strength, ``>= 0``; 0 means the reference has no effect.
    """

    image: ImageLike
    consent: Consent | None = None
    scale: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.consent, dict):
            self.consent = Consent.from_dict(self.consent)
        if self.consent is not None and not isinstance(self.consent, Consent):
            raise TypeError(f"`consent` must be a Consent or None, got {type(self.consent).__name__}")
        try:
            scale = float(self.scale)
        except (TypeError, ValueError):
            raise ValueError(f"Expected `scale` to be a number >= 0, got {self.scale!r}") from None
        if not math.isfinite(scale) or scale < 0:
            raise ValueError(f"Expected `scale` >= 0, got {self.scale!r}")
        self.scale = scale

    @property
    def label(self) -> str:
        """How error messages name the image: its path, or its kind and size."""
        return describe_image(self.image)

    def require_consent(self, field: str = "identity") -> Consent:
        """The consent, or :class:`ConsentError` when none is recorded or its scope is not identity injection.

        Args:
            field: What the caller calls this reference (an argument name such as ``"identity"`` or
                ``"face_image"``); the message starts with it.
        """
        fix = (
            "pass consent=Consent(subject=..., granted_at=...) (CLI: --identity-consent SUBJECT) only when "
            "the person pictured agreed to identity injection"
        )
        if self.consent is None:
            raise ConsentError(f"{field} reference {self.label} has no recorded consent: {fix}")
        if not self.consent.covers(IDENTITY_SCOPE):
            raise ConsentError(
                f"{field} reference {self.label} has consent from {self.consent.subject!r} for scope "
                f"{self.consent.scope!r}, which does not cover {IDENTITY_SCOPE!r}: record "
                f"Consent(subject=..., granted_at=..., scope={IDENTITY_SCOPE!r}) only when the person "
                f"pictured agreed to identity injection"
            )
        return self.consent
