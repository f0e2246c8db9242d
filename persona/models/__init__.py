"""Persona encoders, chosen by name from :data:`ENCODERS` (lazy: nothing heavy is imported here).

``gat`` (the GATv2 miner) lands with its issue; ``tfidf`` is the baseline that runs today.
"""

from persona.registry import Registry

ENCODERS = Registry("persona encoder", {
    "tfidf": "persona.models.tfidf:TfidfPersonaEncoder",
})
