"""MovieLens-100k's SQL: the three RecBole atomic files (``ml-100k.user``, ``.item``, ``.inter``: tab-separated,
no quoting) read into :class:`~workbench.store.ingest.staging.Staging`, checked and shaped.

Values are read as :func:`persona.data.movielens.load_movielens`'s record reader reads them: ids and the user
columns as they are, ages as whole numbers, ratings (1 to 5) and times as finite numbers, titles with a trailing
article moved to the front (``Empire Strikes Back, The``), genres split on whitespace without ``unknown``. Any
other row raises :class:`~workbench.store.ingest.staging.NeedsRecords`, and the record reader reports it.
"""

from __future__ import annotations

from workbench.store.ingest.staging import Staging, read_rows, refuse_repeats, refuse_unknown, shape

#: characters Python's ``str.splitlines`` breaks a line at besides ``\n`` (a cell holding one is doubted)
_BREAKS = r"[\r\x{0b}\x{0c}\x{1c}-\x{1e}\x{85}\x{2028}\x{2029}]"
#: the articles a title's end may hold (``persona.data.movielens._ARTICLE``)
ARTICLES = ("The", "A", "An", "Les", "La", "Le", "Il", "Das", "Der", "Die", "El")


def _odd(*cells: str) -> str:
    return " OR ".join(f"regexp_matches({c}, '{_BREAKS}')" for c in cells)


def stage_movielens(staging: Staging, sources: dict[str, str]) -> dict[str, int]:
    """Read, check and shape the ``user``, ``item`` and ``inter`` sources (FROM clauses of ``staging``) into
    ``users``, ``items`` and ``interactions``; returns their row counts.

    Raises:
        NeedsRecords: when a row is bad, or its reading here could differ from the record reader's.
    """
    # 1. Users: age a whole number (zip codes are not imported: an identifier)
    read_rows(
        staging,
        sources["user"],
        "users_read",
        {"age": "TRY_CAST(trim(age) AS BIGINT)"},
        {"user_id": "user_id", "attributes": "json_object('age', _p_age, 'gender', gender, 'occupation', occupation)"},
        [_odd("user_id", "age", "gender", "occupation"), "NOT regexp_full_match(age, ' *[+-]?[0-9]+ *')"],
    )
    refuse_repeats(staging, "users_read", "user_id")
    # 2. Movies: natural titles, the year, genres; the text the encoders read
    articles = "|".join(ARTICLES)
    read_rows(
        staging,
        sources["item"],
        "items_read",
        {
            "title": f"regexp_replace(trim(movie_title), '^(.*), ({articles})$', '\\2 \\1')",
            "year": "trim(release_year)",
            "genres": (
                "list_filter(regexp_split_to_array(class, '[ \\t\\n\\x{0b}\\x{0c}]+'), "
                "lambda g: g <> '' AND g <> 'unknown')"
            ),
        },
        {
            "item_id": "item_id",
            "title": "_p_title",
            "text": (
                "(CASE WHEN _p_year <> '' THEN _p_title || ' (' || _p_year || ')' ELSE _p_title END) || '. Genres: ' "
                "|| (CASE WHEN len(_p_genres) > 0 THEN array_to_string(_p_genres, ', ') ELSE 'unknown' END) || '.'"
            ),
            "tags": "_p_genres",
        },
        [
            _odd("item_id", "movie_title", "release_year", "class"),
            "odd_space(class)",
            "odd_edges(movie_title) OR odd_edges(release_year)",
        ],
    )
    refuse_repeats(staging, "items_read", "item_id")
    # 3. Ratings: 1 to 5, a finite time, of known users and movies
    read_rows(
        staging,
        sources["inter"],
        "inter_read",
        {"rating": "TRY_CAST(rating AS DOUBLE)", "ts": "TRY_CAST(timestamp AS DOUBLE)"},
        {
            "user_id": "user_id",
            "item_id": "item_id",
            "kind": "'rating'",
            "value": "_p_rating",
            "timestamp": "_p_ts",
            "text": "''",
        },
        [
            _odd("user_id", "item_id", "rating", "timestamp"),
            "NOT plain_number(rating) OR NOT isfinite(_p_rating) OR _p_rating < 1 OR _p_rating > 5",
            "NOT plain_number(timestamp) OR NOT isfinite(_p_ts)",
        ],
    )
    refuse_unknown(staging, "inter_read", "user_id", "users_read")
    refuse_unknown(staging, "inter_read", "item_id", "items_read")
    # 4. The shaped tables, in file order
    shape(
        staging, "users", "SELECT user_id, attributes, '' AS text, NULL AS ground_truth, rowid AS _row FROM users_read"
    )
    shape(
        staging,
        "items",
        "SELECT item_id, 'movie' AS kind, title, text, NULL AS image_uri, tags, rowid AS _row FROM items_read",
    )
    for t in ("users_read", "items_read"):
        staging.execute(f"DROP TABLE {t}")
    staging.execute("ALTER TABLE inter_read RENAME TO interactions")
    return staging.counts()
