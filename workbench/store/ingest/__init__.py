"""Imports read by DuckDB: each importer's files staged, checked in SQL and shaped into the workspace's tables
(:mod:`~workbench.store.ingest.staging`), one module per source (``table``, ``movielens``, ``faces``,
``stackexchange``). The importers themselves (:mod:`persona.data`) choose the files and word the errors."""
