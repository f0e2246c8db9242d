"""Metrics by name (lazy). Each metric's name carries the encoder it was computed with."""

from persona.registry import Registry

METRICS = Registry("metric", {
    "text_preference": "evalbench.metrics.preference:TextPreference",
})
