"""Generation settings shared by every rewriter backend, validated before any model is touched."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class RewriteParams:
    """How to rewrite.

    Args:
        temperature: Sampling temperature, 0 (greedy) to 2.
        max_tokens: Most new tokens per rewrite, 8 to 1024 (default 48: about 36 words; the
            rules ask for at most ``max_words``, and small models ramble to the cap).
        shots: How many of the user's own history items go into the prompt as examples (k-shot), 0 to 20.
        repeat_penalty: Repetition penalty, 1.0 (off) to 2.0.
        seed: Sampling seed (same seed, same rewrite on backends that support it).
        persona_tokens: Token budget for the persona and its evidence inside the prompt, 32 to 8192.
        max_words: Word limit the model is asked to keep, 5 to 200.
        negative: Also ask for a negative prompt (what this user would not want to see).
        candidates: Rewrites made per (user, prompt), 1 to 64; the one that best fits the user's visible
            history is kept (:mod:`prompting.select`). Candidate 0 uses these settings as given; LLM
            backends sample the others with seeds ``seed + 1, ...`` at temperature ``max(temperature, 0.7)``,
            the template varies which cues it uses.
    """

    temperature: float = 0.0
    max_tokens: int = 48
    shots: int = 0
    repeat_penalty: float = 1.15
    seed: int = 0
    persona_tokens: int = 128
    max_words: int = 40
    negative: bool = False
    candidates: int = 1

    def __post_init__(self):
        checks = [
            ("temperature", self.temperature, 0.0, 2.0, "use 0 for greedy decoding"),
            ("max_tokens", self.max_tokens, 8, 1024, "a 40-word rewrite is about 55 tokens"),
            ("shots", self.shots, 0, 20, "k-shot uses up to 20 history items"),
            ("repeat_penalty", self.repeat_penalty, 1.0, 2.0, "1.0 turns it off"),
            ("persona_tokens", self.persona_tokens, 32, 8192, "personas saturate near 2,048 evidence tokens"),
            ("max_words", self.max_words, 5, 200, "image prompts work best under about 60 words"),
            ("candidates", self.candidates, 1, 64, "8 candidates are plenty for a selector"),
        ]
        for name, value, lo, hi, hint in checks:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"RewriteParams.{name} must be a number, got {value!r}")
            if name in ("max_tokens", "shots", "persona_tokens", "max_words", "candidates") and int(value) != value:
                raise ValueError(f"RewriteParams.{name} must be a whole number, got {value!r}")
            if not lo <= value <= hi:
                raise ValueError(f"RewriteParams.{name} must be between {lo} and {hi} ({hint}), got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"RewriteParams.seed must be a non-negative integer, got {self.seed!r}")
        if not isinstance(self.negative, bool):
            raise ValueError(f"RewriteParams.negative must be true or false, got {self.negative!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    def label(self) -> str:
        """The settings that differ from the defaults, as a suffix of the stored model label
        (``|k3|t0.7|s9``), so rewrites made with other settings are stored beside, not instead of,
        the default ones. Empty for the defaults."""
        short = {
            "shots": "k",
            "temperature": "t",
            "seed": "s",
            "max_tokens": "mt",
            "repeat_penalty": "rp",
            "persona_tokens": "pt",
            "max_words": "mw",
            "negative": "neg",
            "candidates": "n",
        }
        default = RewriteParams()
        parts = []
        for name, tag in short.items():
            value = getattr(self, name)
            if value != getattr(default, name):
                parts.append(tag if isinstance(value, bool) else f"{tag}{value:g}")
        return "".join(f"|{p}" for p in parts)

    def for_candidate(self, j: int) -> RewriteParams:
        """Settings of candidate ``j``: these for ``j = 0``; then seed ``seed + j`` with sampling on
        (temperature at least 0.7: greedy decoding gives every seed the same text)."""
        if j == 0:
            return self
        return RewriteParams(**{**asdict(self), "seed": self.seed + j, "temperature": max(self.temperature, 0.7)})

    def for_retry(self) -> RewriteParams:
        """Settings for the one retry after a failed check: the next seed, and sampling (temperature at
        least 0.7), since greedy decoding would repeat the rejected reply word for word."""
        return RewriteParams(**{**asdict(self), "seed": self.seed + 1, "temperature": max(self.temperature, 0.7)})
