"""The ground floor: records, the DuckDB store, the one Registry, encoders by name, image I/O, errors.

Every stage package (persona, prompting, generation, evalbench) and the apps import from here; nothing here
imports a stage.
"""
