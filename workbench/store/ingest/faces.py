"""Face ratings' SQL: the ratings file (``ratings.csv`` or ``.csv.gz``, 1-7 ratings by raters with their sex and
age) read into :class:`~workbench.store.ingest.staging.Staging`, checked and shaped, beside the faces the
importer read from ``faces.csv`` (a hundred rows, each checked for its image file).

Values are read as :func:`persona.data.faces.load_faces`'s record reader reads them: ids stripped, a rating from
1 to 7, an age that is a number or missing, each rater's sex and age from their first row, one rating per rater
and face. Any other row raises :class:`~workbench.store.ingest.staging.NeedsRecords`, and the record reader
reports it.
"""

from __future__ import annotations

from workbench.store.ingest.staging import Staging, read_rows, refuse, refuse_unknown, shape

#: the staged faces' columns (appended by the importer, one row per face, in ``faces.csv`` order)
FACE_COLUMNS = {
    "item_id": "VARCHAR",
    "kind": "VARCHAR",
    "title": "VARCHAR",
    "text": "VARCHAR",
    "image_uri": "VARCHAR",
    "tags": "VARCHAR[]",
}


def stage_faces(staging: Staging, ratings: str) -> dict[str, int]:
    """Shape the staged ``faces`` table and the ``ratings`` source (a FROM clause) into ``users``, ``items`` and
    ``interactions``; returns their row counts.

    Raises:
        NeedsRecords: when a row is bad, or its reading here could differ from the record reader's.
    """
    # 1. Ratings: 1 to 7, an age or none, non-empty rater ids, faces of faces.csv, once per rater and face
    read_rows(
        staging,
        ratings,
        "inter_read",
        {"rating": "TRY_CAST(rating AS DOUBLE)", "age": "TRY_CAST(rater_age AS DOUBLE)"},
        {
            "user_id": "trim(rater_id)",
            "item_id": "trim(face_id)",
            "kind": "'rating'",
            "value": "_p_rating",
            "timestamp": "CAST(NULL AS DOUBLE)",
            "text": "''",
            "sex": "NULLIF(trim(rater_sex), '')",
            "age": "_p_age",
        },
        [
            "odd_edges(rater_id) OR odd_edges(face_id) OR odd_edges(rater_sex)",
            "NOT plain_number(rating) OR NOT isfinite(_p_rating) OR _p_rating < 1 OR _p_rating > 7",
            "CASE WHEN _p_age IS NULL THEN NOT is_missing(rater_age) "
            "ELSE NOT plain_number(rater_age) OR NOT isfinite(_p_age) END",
            "trim(rater_id) = ''",
        ],
    )
    refuse_unknown(staging, "inter_read", "item_id", "faces")
    refuse(
        staging,
        "(SELECT user_id FROM inter_read GROUP BY user_id, item_id HAVING count(*) > 1)",
        {"a rater rating a face twice": "true"},
    )
    # 2. Raters with the sex and age of their first row; the faces as read
    shape(
        staging,
        "users",
        "SELECT user_id, json_object('age', age, 'sex', sex) AS attributes, '' AS text, NULL AS ground_truth, "
        "rowid AS _row FROM inter_read WHERE rowid IN (SELECT min(rowid) FROM inter_read GROUP BY user_id)",
    )
    shape(staging, "items", "SELECT *, rowid AS _row FROM faces")
    staging.execute("DROP TABLE faces")
    staging.execute("ALTER TABLE inter_read RENAME TO interactions")
    return staging.counts()
