"""DuckDB workspace store: migrations, datasets, splits, personas, rewrites, runs and scores."""

from workbench.store.workspace import DEFAULT_DB, Workspace, WorkspaceError, dumps, loads, resolve_db_path

__all__ = ["DEFAULT_DB", "Workspace", "WorkspaceError", "dumps", "loads", "resolve_db_path"]
