"""Persona encoders, chosen by name from :data:`ENCODERS` (lazy: nothing heavy is imported here).

``gat`` is the GATv2 miner (attention-ranked evidence, ImageAlign when items are images);
``gat-noalign`` the same without ImageAlign; ``sage`` a GraphSAGE baseline in the same harness;
``tfidf`` the bag-of-tags baseline.
"""

from workbench.registry import Registry

ENCODERS = Registry(
    "persona encoder",
    {
        "tfidf": "persona.models.tfidf:TfidfPersonaEncoder",
        "gat": "persona.models.gat:GatPersonaEncoder",
        "gat-noalign": "persona.models.gat:GatNoAlignEncoder",
        "sage": "persona.models.gat:SagePersonaEncoder",
    },
)
