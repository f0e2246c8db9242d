"""Guidance rules for the denoising loop: one rule per file, resolved lazily by name.

>>> from generation.guidance import get_rule, StepContext
>>> rule = get_rule("interval", scale=5.0, start=0.2, stop=0.8)
>>> rule.branches(StepContext(step=0, num_steps=10))
('cond',)
>>> get_rule(rule.config()).config() == rule.config()
True

The registry holds ``"module:attr"`` strings, so importing this package imports neither torch nor
diffusers; a rule's module is imported when the rule is first asked for. See
:mod:`generation.guidance.base` for the interface the loop uses.
"""

from __future__ import annotations

from typing import Any

from workbench.registry import Registry

from .base import Branch, GuidanceRule, StepContext
from .schedules import Schedule, available_schedules, get_schedule

#: rule name -> ``"module:attr"`` of its class.
RULES = Registry(
    "guidance rule",
    {
        "adaptive": "generation.guidance.adaptive:AdaptiveGuidance",
        "apg": "generation.guidance.apg:APG",
        "beta_cfg": "generation.guidance.beta_cfg:BetaCFG",
        "cfg": "generation.guidance.cfg:CFG",
        "cfg_zero_star": "generation.guidance.cfg_zero_star:CFGZeroStar",
        "cfgpp": "generation.guidance.cfgpp:CFGPlusPlus",
        "interval": "generation.guidance.interval:Interval",
        "pag": "generation.guidance.pag:PAG",
    },
    normalize=lambda s: s.strip().lower(),
)


def available_rules() -> list[str]:
    """Registered rule names, sorted."""
    return sorted(RULES)


def get_rule_class(name: str) -> type[GuidanceRule]:
    """The class registered under ``name`` (imports its module)."""
    return RULES.get(name, field="guidance")


def get_rule(spec: str | dict | GuidanceRule, **kwargs: Any) -> GuidanceRule:
    """A new rule instance from a name, a :meth:`~GuidanceRule.config` dict, or an existing rule.

    Args:
        spec: a registered name (``"cfg"``), a dict with a ``"rule"`` key and constructor arguments (what
            ``rule.config()`` returns), or a rule instance, which gives a fresh copy (same config, no
            per-trajectory state).
        **kwargs: constructor arguments; they override those in ``spec``.

    Raises:
        ValueError: unknown name ("unknown guidance rule 'cgf'; did you mean 'cfg'? available: ...").
    """
    if isinstance(spec, GuidanceRule):
        spec = spec.config()
    if isinstance(spec, dict):
        options = dict(spec)
        if "rule" not in options:
            raise ValueError(f"guidance rule dict needs a 'rule' key, got {spec!r}")
        name = options.pop("rule")
        options.update(kwargs)
    elif isinstance(spec, str):
        name, options = spec, dict(kwargs)
    else:
        raise ValueError(f"Expected a rule name, config dict or GuidanceRule, got {spec!r}")
    return get_rule_class(name)(**options)


def __getattr__(attr: str) -> Any:
    # lazy access to the rule classes: ``from generation.guidance import CFG``
    for name, target in RULES.targets().items():
        if target.rpartition(":")[2] == attr:
            return RULES.get(name)
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


__all__ = [
    "Branch",
    "GuidanceRule",
    "RULES",
    "Schedule",
    "StepContext",
    "available_rules",
    "available_schedules",
    "get_rule",
    "get_rule_class",
    "get_schedule",
]
