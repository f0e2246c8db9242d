"""generation: per-user conditions -> images.

``UserCondition`` (conditions.py) -> ``generate()`` (pipeline.py) -> ``Generation`` records, through our
diffusers loop (backends/diffusers_sd.py) with guidance rules (guidance/), IP-Adapter references and
consented identity injection (adapters/). Nothing heavy is imported here.
"""
