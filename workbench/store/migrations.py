"""Numbered schema migrations, each a named function applied once and recorded in ``schema_migrations``.

Add a migration by appending a function to :data:`MIGRATIONS`; never edit one that has shipped.
"""

from __future__ import annotations

from collections.abc import Callable

import duckdb


def m001_initial(con: duckdb.DuckDBPyConnection) -> None:
    """Datasets, splits, personas, prompts, rewrites, conditions, generations, runs and scores."""
    # 1. the dataset: its users, items and interactions
    con.execute(
        """
        CREATE TABLE datasets (
            dataset_id VARCHAR PRIMARY KEY,
            source VARCHAR NOT NULL,
            params JSON,
            meta JSON,
            n_users INTEGER,
            n_items INTEGER,
            n_interactions INTEGER,
            created_at TIMESTAMP DEFAULT current_timestamp
        );
        CREATE TABLE users (
            dataset_id VARCHAR NOT NULL,
            user_id VARCHAR NOT NULL,
            attributes JSON,
            text VARCHAR,
            ground_truth JSON,
            PRIMARY KEY (dataset_id, user_id)
        );
        CREATE TABLE items (
            dataset_id VARCHAR NOT NULL,
            item_id VARCHAR NOT NULL,
            kind VARCHAR,
            title VARCHAR,
            text VARCHAR,
            image_uri VARCHAR,
            tags VARCHAR[],
            PRIMARY KEY (dataset_id, item_id)
        );
        CREATE TABLE interactions (
            dataset_id VARCHAR NOT NULL,
            user_id VARCHAR NOT NULL,
            item_id VARCHAR NOT NULL,
            kind VARCHAR,
            value DOUBLE,
            timestamp DOUBLE,
            text VARCHAR
        );
        CREATE INDEX interactions_user ON interactions (dataset_id, user_id);
        """
    )
    # 2. splits: which users are held out, which items they keep
    con.execute(
        """
        CREATE TABLE splits (
            split_id VARCHAR PRIMARY KEY,
            dataset_id VARCHAR NOT NULL,
            seed INTEGER,
            params JSON,
            created_at TIMESTAMP DEFAULT current_timestamp
        );
        CREATE TABLE split_users (
            split_id VARCHAR NOT NULL,
            user_id VARCHAR NOT NULL,
            role VARCHAR NOT NULL,  -- train | heldout | coldstart
            PRIMARY KEY (split_id, user_id)
        );
        -- Held-out and cold-start users only: which interactions stay visible, which are hidden
        -- targets (liked / disliked) and which unseen items serve as negatives.
        CREATE TABLE split_items (
            split_id VARCHAR NOT NULL,
            user_id VARCHAR NOT NULL,
            item_id VARCHAR NOT NULL,
            part VARCHAR NOT NULL,   -- visible | hidden
            label VARCHAR            -- liked | disliked | neutral | unseen (hidden only)
        );
        """
    )
    # 3. personas with their evidence, prompt sets and rewrites
    con.execute(
        """
        CREATE TABLE personas (
            split_id VARCHAR NOT NULL,
            encoder VARCHAR NOT NULL,
            user_id VARCHAR NOT NULL,
            summary VARCHAR,
            traits JSON,
            demographics JSON,
            embedding FLOAT[],
            model_version VARCHAR,
            created_at TIMESTAMP DEFAULT current_timestamp,
            PRIMARY KEY (split_id, encoder, user_id)
        );
        CREATE TABLE persona_evidence (
            split_id VARCHAR NOT NULL,
            encoder VARCHAR NOT NULL,
            user_id VARCHAR NOT NULL,
            rank INTEGER NOT NULL,
            item_id VARCHAR,
            weight DOUBLE,
            snippet VARCHAR,
            PRIMARY KEY (split_id, encoder, user_id, rank)
        );
        CREATE TABLE prompts (
            prompt_set VARCHAR NOT NULL,
            prompt_id VARCHAR NOT NULL,
            prompt VARCHAR NOT NULL,
            category VARCHAR,
            challenge VARCHAR,
            PRIMARY KEY (prompt_set, prompt_id)
        );
        CREATE TABLE rewrites (
            split_id VARCHAR NOT NULL,
            encoder VARCHAR NOT NULL,
            backend VARCHAR NOT NULL,
            model VARCHAR NOT NULL,
            user_id VARCHAR NOT NULL,
            prompt_set VARCHAR NOT NULL,
            prompt_id VARCHAR NOT NULL,
            prompt VARCHAR,
            rewritten VARCHAR,
            negative VARCHAR,
            shots INTEGER,
            latency_s DOUBLE,
            created_at TIMESTAMP DEFAULT current_timestamp,
            PRIMARY KEY (split_id, encoder, backend, model, user_id, prompt_set, prompt_id)
        );
        """
    )
    # 4. generation conditions and the images drawn for them
    con.execute(
        """
        CREATE TABLE conditions (
            condition_id VARCHAR PRIMARY KEY,
            user_id VARCHAR,
            prompt VARCHAR,
            negative_prompt VARCHAR,
            reference_images VARCHAR[],
            identity FLOAT[],
            guidance JSON,
            seed BIGINT,
            created_at TIMESTAMP DEFAULT current_timestamp
        );
        CREATE TABLE generations (
            generation_id VARCHAR PRIMARY KEY,
            condition_id VARCHAR,
            image_path VARCHAR,
            backend VARCHAR,
            model VARCHAR,
            params JSON,
            latency_s DOUBLE,
            peak_mem DOUBLE,
            created_at TIMESTAMP DEFAULT current_timestamp
        );
        """
    )
    # 5. benchmark runs, their units and scores
    con.execute(
        """
        CREATE TABLE runs (
            run_id VARCHAR PRIMARY KEY,
            kind VARCHAR NOT NULL,
            config JSON NOT NULL,
            config_hash VARCHAR NOT NULL,
            code_version VARCHAR,
            started_at TIMESTAMP,
            ended_at TIMESTAMP,
            status VARCHAR NOT NULL,  -- running | completed | failed
            error VARCHAR,
            n_units INTEGER
        );
        -- A unit is done once its row is here, whether or not it produced scores (a skipped user).
        CREATE TABLE run_units (
            run_id VARCHAR NOT NULL,
            unit_id VARCHAR NOT NULL,
            status VARCHAR NOT NULL,  -- scored | skipped
            detail VARCHAR,
            finished_at TIMESTAMP DEFAULT current_timestamp,
            PRIMARY KEY (run_id, unit_id)
        );
        CREATE TABLE scores (
            run_id VARCHAR NOT NULL,
            unit_id VARCHAR NOT NULL,
            metric VARCHAR NOT NULL,
            value DOUBLE,
            model VARCHAR,
            PRIMARY KEY (run_id, unit_id, metric)
        );
        """
    )


def m002_cohorts(con: duckdb.DuckDBPyConnection) -> None:
    """Cohort and archetype definitions; their personas live in ``personas`` as ``cohort:<name>``."""
    con.execute(
        """
        CREATE TABLE cohorts (
            split_id VARCHAR NOT NULL,
            encoder VARCHAR NOT NULL,
            cohort_id VARCHAR NOT NULL,
            kind VARCHAR NOT NULL,  -- sql | archetype
            definition VARCHAR,
            members VARCHAR[],
            n_members INTEGER,
            created_at TIMESTAMP DEFAULT current_timestamp,
            PRIMARY KEY (split_id, encoder, cohort_id)
        );
        """
    )


def m003_rewrite_cache(con: duckdb.DuckDBPyConnection) -> None:
    """The rewrite cache (backend, model, params, persona hash, prompt -> rewrite) and fallback reasons."""
    con.execute(
        """
        CREATE TABLE rewrite_cache (
            key VARCHAR PRIMARY KEY,  -- sha256 of backend, model, params, persona hash, prompt, k-shot history
            backend VARCHAR NOT NULL,
            model VARCHAR NOT NULL,
            params JSON,
            user_id VARCHAR,
            prompt VARCHAR,
            rewritten VARCHAR,
            negative VARCHAR,
            shots INTEGER,
            fallback VARCHAR,
            created_at TIMESTAMP DEFAULT current_timestamp
        );
        ALTER TABLE rewrites ADD COLUMN fallback VARCHAR;
        """
    )


def m004_generation_records(con: duckdb.DuckDBPyConnection) -> None:
    """Generation rows carry who, what it cost (UNet evaluations) and the image's content hash."""
    con.execute(
        """
        ALTER TABLE generations ADD COLUMN user_id VARCHAR;
        ALTER TABLE generations ADD COLUMN unet_evals INTEGER;
        ALTER TABLE generations ADD COLUMN image_sha256 VARCHAR;
        ALTER TABLE generations ADD COLUMN identity_similarity DOUBLE;
        ALTER TABLE conditions ADD COLUMN persona_id VARCHAR;
        ALTER TABLE conditions ADD COLUMN prompt_id VARCHAR;
        ALTER TABLE conditions ADD COLUMN reference_scale JSON;
        ALTER TABLE conditions ADD COLUMN identity_consent JSON;
        """
    )


def m005_apps(con: duckdb.DuckDBPyConnection) -> None:
    """API keys (hashed), API generation jobs, and human labels collected in the dashboard."""
    con.execute(
        """
        CREATE TABLE api_keys (
            key_id VARCHAR PRIMARY KEY,      -- public part of the key: pwb_<key_id>_<secret>
            name VARCHAR NOT NULL,
            secret_sha256 VARCHAR NOT NULL,  -- the secret itself is shown once and never stored
            rate_per_minute INTEGER NOT NULL,
            created_at TIMESTAMP DEFAULT current_timestamp,
            revoked_at TIMESTAMP
        );
        CREATE TABLE api_jobs (
            job_id VARCHAR PRIMARY KEY,
            key_id VARCHAR,
            kind VARCHAR NOT NULL,
            status VARCHAR NOT NULL,  -- queued | running | completed | failed
            request JSON,
            result JSON,
            error VARCHAR,
            created_at TIMESTAMP DEFAULT current_timestamp,
            finished_at TIMESTAMP
        );
        CREATE TABLE labels (
            label_id VARCHAR PRIMARY KEY,
            user_id VARCHAR,
            prompt_id VARCHAR,
            system_generation_id VARCHAR NOT NULL,
            baseline_generation_id VARCHAR NOT NULL,
            system_side VARCHAR NOT NULL,  -- a | b: where the system image was shown
            choice VARCHAR NOT NULL,       -- a | b | flag
            annotator VARCHAR,
            note VARCHAR,
            created_at TIMESTAMP DEFAULT current_timestamp
        );
        """
    )


def m006_personal_signal(con: duckdb.DuckDBPyConnection) -> None:
    """The selector score of the candidate a rewrite kept, and embeddings of benchmark outputs per unit
    (the image tasks' personal win rate compares a user's images with other users' on the user's own
    preference, so each image's embedding is kept with its scores)."""
    con.execute(
        """
        ALTER TABLE rewrites ADD COLUMN selector_score DOUBLE;
        ALTER TABLE rewrite_cache ADD COLUMN selector_score DOUBLE;
        CREATE TABLE unit_embeddings (
            run_id VARCHAR NOT NULL,
            unit_id VARCHAR NOT NULL,
            model VARCHAR NOT NULL,
            embedding FLOAT[] NOT NULL,
            PRIMARY KEY (run_id, unit_id, model)
        );
        """
    )


def m007_journal(con: duckdb.DuckDBPyConnection) -> None:
    """The journal's bookkeeping (:mod:`workbench.store.journal`): ids of applied entries (until their
    journal file is gone), entries that could not be applied (kept with their error), and settings a
    server keeps across restarts (the split it serves)."""
    con.execute(
        """
        CREATE TABLE journal_applied (
            entry_id VARCHAR PRIMARY KEY,
            kind VARCHAR NOT NULL,
            source VARCHAR NOT NULL,
            applied_at TIMESTAMP DEFAULT current_timestamp
        );
        CREATE TABLE journal_rejected (
            entry_id VARCHAR PRIMARY KEY,
            kind VARCHAR NOT NULL,
            entry VARCHAR NOT NULL,
            error VARCHAR NOT NULL,
            source VARCHAR NOT NULL,
            rejected_at TIMESTAMP DEFAULT current_timestamp
        );
        CREATE TABLE settings (
            key VARCHAR PRIMARY KEY,
            value VARCHAR,
            updated_at TIMESTAMP DEFAULT current_timestamp
        );
        """
    )


def m008_metric_results(con: duckdb.DuckDBPyConnection) -> None:
    """What each metric of a bench run computed over its units, with the metric and its encoder as data
    (reports read these, never a metric name taken apart), in the order the run lists its metrics."""
    con.execute(
        """
        CREATE TABLE metric_results (
            run_id VARCHAR NOT NULL,
            position INTEGER NOT NULL,
            metric VARCHAR NOT NULL,        -- the registry name (text_preference)
            encoder VARCHAR NOT NULL,       -- the encoder's label in the metric's name (minilm)
            model VARCHAR,                  -- the encoder's model id
            aggregation VARCHAR NOT NULL,   -- how unit values become the result (mean of per-user means)
            higher_is_better BOOLEAN NOT NULL,
            result JSON NOT NULL,           -- the metric's compute()
            PRIMARY KEY (run_id, metric, encoder)
        );
        """
    )


def m009_interactions_without_index(con: duckdb.DuckDBPyConnection) -> None:
    """Drop the ART index on ``interactions (dataset_id, user_id)``: DuckDB never used it for the scans and
    joins the workbench runs, and maintaining it made a bulk import several times slower (a 50M-row log: 62 s
    with it, 17 s without) and the file three times larger. Imports store interactions sorted by user, so
    zone maps find a user's rows instead."""
    con.execute("DROP INDEX IF EXISTS interactions_user")


def m010_evidence_without_key(con: duckdb.DuckDBPyConnection) -> None:
    """``persona_evidence`` without its primary key: every writer replaces a user's evidence whole (a delete,
    then the insert, in one transaction), and the key's index made a million users' bulk store several times
    slower and, at ten million users (180M evidence rows), larger than the machine's memory."""
    con.execute(
        """
        CREATE TABLE persona_evidence_m010 (
            split_id VARCHAR NOT NULL,
            encoder VARCHAR NOT NULL,
            user_id VARCHAR NOT NULL,
            rank INTEGER NOT NULL,
            item_id VARCHAR,
            weight DOUBLE,
            snippet VARCHAR
        );
        INSERT INTO persona_evidence_m010 SELECT split_id, encoder, user_id, rank, item_id, weight, snippet
            FROM persona_evidence ORDER BY split_id, encoder, user_id, rank;
        DROP TABLE persona_evidence;
        ALTER TABLE persona_evidence_m010 RENAME TO persona_evidence;
        """
    )


MIGRATIONS: list[tuple[int, Callable[[duckdb.DuckDBPyConnection], None]]] = [
    (1, m001_initial),
    (2, m002_cohorts),
    (3, m003_rewrite_cache),
    (4, m004_generation_records),
    (5, m005_apps),
    (6, m006_personal_signal),
    (7, m007_journal),
    (8, m008_metric_results),
    (9, m009_interactions_without_index),
    (10, m010_evidence_without_key),
]
