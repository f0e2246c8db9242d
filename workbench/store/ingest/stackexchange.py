"""A Stack Exchange dump's SQL: the rows of ``Users.xml``, ``Posts.xml`` and ``Comments.xml`` (parsed and checked
row by row as the XML streams by, appended here in chunks: :func:`persona.data.stackexchange.load_stackexchange`)
joined into the workspace's users, items and interactions.

What the joins build is what the record reader builds: questions as items (their tags as tags), ``ask`` and
``answer`` interactions of known users (an answer to a missing question dropped), ``comment`` interactions on the
question of a known post, one ``tag`` item per tag used and one ``tag`` interaction per user and tag (how many
of the user's questions and answers carry it, at the latest of them), and the users with any activity. A
repeated user or question id raises :class:`~workbench.store.ingest.staging.NeedsRecords` (the record reader
reports it, or keeps the first under ``--lenient``).
"""

from __future__ import annotations

from workbench.store.ingest.staging import Staging, refuse, shape

#: the staged tables the importer appends to (``line``: the row's line in its file, the order it came in)
TABLES = {
    "se_users": {"line": "BIGINT", "user_id": "VARCHAR", "reputation": "BIGINT", "text": "VARCHAR"},
    "se_posts": {
        "line": "BIGINT",
        "post_id": "VARCHAR",
        "post_type": "VARCHAR",
        "owner": "VARCHAR",
        "score": "DOUBLE",
        "ts": "DOUBLE",
        "title": "VARCHAR",
        "tags": "VARCHAR[]",
        "body": "VARCHAR",
        "parent": "VARCHAR",
    },
    "se_comments": {
        "line": "BIGINT",
        "post_id": "VARCHAR",
        "user_id": "VARCHAR",
        "score": "DOUBLE",
        "ts": "DOUBLE",
        "text": "VARCHAR",
    },
}


def create_tables(staging: Staging) -> None:
    for table, columns in TABLES.items():
        staging.create(table, columns)


def stage_stackexchange(staging: Staging) -> dict[str, int]:
    """Join the staged rows into ``users``, ``items`` and ``interactions``; returns their row counts and
    ``users_without_activity``.

    Raises:
        NeedsRecords: when a user or question id repeats.
    """
    # 1. Ids once each (the record reader reports a repeat, or keeps the first)
    refuse(staging, "(SELECT user_id FROM se_users GROUP BY ALL HAVING count(*) > 1)", {"a repeated user id": "true"})
    refuse(
        staging,
        "(SELECT post_id FROM se_posts WHERE post_type = '1' GROUP BY ALL HAVING count(*) > 1)",
        {"a repeated question id": "true"},
    )
    # 2. Questions; answers to them; the question each post belongs to (an answer's id read later wins)
    staging.execute("CREATE TEMP TABLE q AS SELECT * FROM se_posts WHERE post_type = '1'")
    staging.execute(
        "CREATE TEMP TABLE a AS SELECT p.* FROM se_posts p SEMI JOIN q ON q.post_id = p.parent WHERE p.post_type = '2'"
    )
    staging.execute(
        "CREATE TEMP TABLE post_question AS SELECT post_id, arg_max(parent, line) AS question FROM a GROUP BY ALL "
        "UNION ALL SELECT post_id, post_id FROM q ANTI JOIN a USING (post_id)"
    )
    # 3. Interactions in the record reader's order: asks, answers, comments (known users), then tag use
    known = "SEMI JOIN se_users u ON u.user_id = {}"
    staging.execute(
        f"""CREATE TEMP TABLE acts AS
        SELECT 1 AS phase, q.line, q.owner AS user_id, 'q' || q.post_id AS item_id, 'ask' AS kind, q.score AS value,
               q.ts AS timestamp, q.body AS text, q.tags FROM q {known.format("q.owner")}
        UNION ALL
        SELECT 2, a.line, a.owner, 'q' || a.parent, 'answer', a.score, a.ts, a.body, q.tags
        FROM a {known.format("a.owner")} JOIN q ON q.post_id = a.parent
        UNION ALL
        SELECT 3, c.line, c.user_id, 'q' || pq.question, 'comment', c.score, c.ts, c.text, NULL
        FROM se_comments c {known.format("c.user_id")} JOIN post_question pq ON pq.post_id = c.post_id"""
    )
    staging.execute(
        """CREATE TEMP TABLE tag_use AS
        SELECT user_id, tag, count(*) AS n, max(coalesce(timestamp, 0.0)) AS latest
        FROM (SELECT user_id, timestamp, unnest(tags) AS tag FROM acts WHERE phase < 3) GROUP BY ALL"""
    )
    shape(
        staging,
        "interactions",
        """SELECT user_id, item_id, kind, value, timestamp, text, row_number() OVER (ORDER BY phase, line) AS _row
        FROM acts
        UNION ALL
        SELECT user_id, 't:' || tag, 'tag', CAST(n AS DOUBLE), latest,
               '', (SELECT count(*) FROM acts) + row_number() OVER (ORDER BY user_id, tag) FROM tag_use""",
    )
    # 4. Items: the questions in file order, then one per tag (sorted); users with any activity
    shape(
        staging,
        "items",
        """SELECT 'q' || post_id AS item_id, 'question' AS kind, title, trim(title || '. ' || body) AS text,
               NULL AS image_uri, tags, line AS _row FROM q
        UNION ALL
        SELECT 't:' || tag, 'tag', tag, 'Stack Exchange tag: ' || tag, NULL, [tag],
               (SELECT max(line) FROM q) + row_number() OVER (ORDER BY tag)
        FROM (SELECT DISTINCT unnest(tags) AS tag FROM q)""",
    )
    shape(
        staging,
        "users",
        """SELECT user_id, json_object('reputation', reputation) AS attributes, text, NULL AS ground_truth,
               line AS _row FROM se_users SEMI JOIN (SELECT DISTINCT user_id FROM interactions) USING (user_id)""",
    )
    counts = staging.counts()
    counts["users_without_activity"] = int(staging.scalar("SELECT count(*) FROM se_users")) - counts["users"]
    for t in ("se_users", "se_posts", "se_comments"):
        staging.execute(f"DROP TABLE {t}")
    return counts
