"""Persona encoders, chosen by name from :data:`ENCODERS` (lazy: nothing heavy is imported here).

``gat`` is the GATv2 miner (attention-ranked evidence); ``tfidf`` is the baseline.
"""

from persona.registry import Registry

ENCODERS = Registry("persona encoder", {
    "tfidf": "persona.models.tfidf:TfidfPersonaEncoder",
    "gat": "persona.models.gat:GatPersonaEncoder",
})
