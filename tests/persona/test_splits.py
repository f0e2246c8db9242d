"""User splits: roles, visible/hidden partition, labels, negatives, determinism."""

from collections import Counter

import pytest

from persona.data.splits import SplitParams, make_split
from persona.data.synthetic import generate_community
from workbench.store import Workspace, WorkspaceError
from workbench.store.datasets import load_interactions, load_items, write_dataset
from workbench.store.splits import hidden_targets, visible_interactions


@pytest.fixture(scope="module")
def ws():
    w = Workspace(":memory:")
    write_dataset(w, generate_community(300, 200, seed=3))
    yield w
    w.close()


def test_roles_and_partition(ws):
    p = SplitParams(seed=1, heldout_frac=0.2, coldstart_frac=0.1, k=4)
    s = make_split(ws, "synthetic-s3", p, name="a")
    assert (s["train"], s["heldout"], s["coldstart"]) == (210, 60, 30)
    roles = dict(ws.query("SELECT user_id, role FROM split_users WHERE split_id = 'a'"))
    rows = ws.query("SELECT user_id, item_id, part, label FROM split_items WHERE split_id = 'a'")
    assert {u for u, *_ in rows} == {u for u, r in roles.items() if r != "train"}
    visible = {(u, i) for u, i, part, _ in rows if part == "visible"}
    hidden = {(u, i) for u, i, part, _ in rows if part == "hidden"}
    assert not visible & hidden
    per_user_visible = Counter(u for u, _ in visible)
    assert all(per_user_visible[u] == 4 for u, r in roles.items() if r == "coldstart")
    # every interaction of an evaluated user is either visible or a hidden target
    inter = {(x.user_id, x.item_id): x.value for x in load_interactions(ws, "synthetic-s3")}
    for u, r in roles.items():
        if r == "heldout":
            mine = {i for (uu, i) in inter if uu == u}
            assert mine == {
                i
                for uu, i in visible | {(a, b) for a, b, part, lab in rows if part == "hidden" and lab != "unseen"}
                if uu == u
            }


def test_labels_follow_thresholds_and_negatives_are_unseen(ws):
    make_split(ws, "synthetic-s3", SplitParams(seed=2), name="b")
    inter = {(x.user_id, x.item_id): x.value for x in load_interactions(ws, "synthetic-s3")}
    items = load_items(ws, "synthetic-s3")
    targets = hidden_targets(ws, "b")
    assert targets
    for u, labels in targets.items():
        for i in labels.get("liked", []):
            assert inter[(u, i)] >= 4
        for i in labels.get("disliked", []):
            assert inter[(u, i)] <= 2
        for i in labels.get("neutral", []):
            assert 2 < inter[(u, i)] < 4
        for i in labels.get("unseen", []):
            assert (u, i) not in inter and i in items
        assert len(labels.get("unseen", [])) == SplitParams().negatives_per_like * len(labels.get("liked", []))


def test_visible_interactions_never_include_hidden(ws):
    make_split(ws, "synthetic-s3", SplitParams(seed=4), name="c")
    hidden = {
        (u, i) for u, i in ws.query("SELECT user_id, item_id FROM split_items WHERE split_id='c' AND part='hidden'")
    }
    vis = visible_interactions(ws, "c")
    assert not {(x.user_id, x.item_id) for x in vis} & hidden
    train = {u for (u,) in ws.query("SELECT user_id FROM split_users WHERE split_id='c' AND role='train'")}
    n_train = ws.scalar("SELECT count(*) FROM interactions WHERE list_contains(?, user_id)", [sorted(train)])
    assert sum(1 for x in vis if x.user_id in train) == n_train


def test_same_seed_same_split_and_name_conflicts(ws):
    p = SplitParams(seed=9)
    make_split(ws, "synthetic-s3", p, name="d1")
    make_split(ws, "synthetic-s3", p, name="d2")
    q = "SELECT user_id, item_id, part, label FROM split_items WHERE split_id = ? ORDER BY ALL"
    assert ws.query(q, ["d1"]) == ws.query(q, ["d2"])
    assert make_split(ws, "synthetic-s3", p, name="d1")["split"] == "d1"  # idempotent
    with pytest.raises(WorkspaceError, match="already exists with other settings"):
        make_split(ws, "synthetic-s3", SplitParams(seed=10), name="d1")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"heldout_frac": 1.2}, "heldout_frac must be in"),
        ({"k": 0}, "k must be >= 1"),
        ({"hidden_frac": 0}, "hidden_frac must be in"),
        ({"k": 5, "min_interactions": 3}, "min_interactions must be >="),
        ({"negative_sampling": "random"}, "negative_sampling must be one of popularity, popularity\\+time, uniform"),
        ({"popularity_window": 0}, "popularity_window must be a whole number"),
    ],
)
def test_bad_params_name_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SplitParams(**kwargs)


def _train_popularity(ws, split_id):
    """Training users' interactions per item, counted independently of the split code."""
    return dict(
        ws.query(
            "SELECT x.item_id, count(*) FROM interactions x JOIN split_users s ON s.user_id = x.user_id "
            "AND s.split_id = ? AND s.role = 'train' GROUP BY 1",
            [split_id],
        )
    )


def test_popularity_matched_negatives_sit_beside_the_likes(ws):
    import numpy as np

    make_split(ws, "synthetic-s3", SplitParams(seed=5, negatives_per_like=2, popularity_window=3), name="pop")
    make_split(ws, "synthetic-s3", SplitParams(seed=5, negatives_per_like=2, negative_sampling="uniform"), name="uni")
    gaps = {}
    for split in ("pop", "uni"):
        pop = _train_popularity(ws, split)
        per_user = []
        for _u, labels in hidden_targets(ws, split).items():
            likes = sorted(np.log1p(pop.get(i, 0)) for i in labels.get("liked", []) for _ in range(2))
            negs = sorted(np.log1p(pop.get(i, 0)) for i in labels.get("unseen", []))
            if likes and len(negs) == len(likes):
                per_user.append(np.mean(np.abs(np.array(likes) - np.array(negs))))
        gaps[split] = float(np.median(per_user))
    assert gaps["pop"] < 0.35 * gaps["uni"], gaps  # matched negatives are as popular as the likes they stand beside


def test_splits_made_before_popularity_matching_keep_their_meaning(ws):
    """A split stored without ``negative_sampling`` drew uniform negatives: asking for it again with the
    old settings returns it; the new default (popularity) is a different split."""
    import json

    old = {
        "seed": 7,
        "heldout_frac": 0.1,
        "coldstart_frac": 0.05,
        "k": 5,
        "hidden_frac": 0.2,
        "min_interactions": 10,
        "negatives_per_like": 1,
    }
    ws.con.execute(
        "INSERT INTO splits (split_id, dataset_id, seed, params) VALUES ('old', 'synthetic-s3', 7, ?)",
        [json.dumps(old)],
    )
    assert make_split(ws, "synthetic-s3", SplitParams(**old, negative_sampling="uniform"), name="old")["split"] == "old"
    with pytest.raises(WorkspaceError, match="already exists with other settings"):
        make_split(ws, "synthetic-s3", SplitParams(**old), name="old")


@pytest.mark.parametrize(
    "params",
    [
        SplitParams(seed=0),
        SplitParams(seed=7, heldout_frac=0.3, coldstart_frac=0.1, negatives_per_like=4, popularity_window=3),
        SplitParams(seed=1, negative_sampling="popularity+time"),
        SplitParams(seed=2, negative_sampling="uniform"),
    ],
    ids=["popularity", "narrow-window", "popularity+time", "uniform"],
)
def test_the_split_equals_the_record_based_one(ws, params):
    """The split that reads only counts and the evaluated users' interactions draws exactly what the split
    that loaded every interaction as a record drew (``reference_split.py``, the code before issue 19)."""
    from reference_split import reference_split

    name = f"ref-{params.seed}-{params.negative_sampling}-{params.popularity_window}"
    make_split(ws, "synthetic-s3", params, name=name)
    roles, rows = reference_split(ws, "synthetic-s3", params)
    assert dict(ws.query("SELECT user_id, role FROM split_users WHERE split_id = ?", [name])) == roles
    stored = ws.query("SELECT user_id, item_id, part, label FROM split_items WHERE split_id = ? ORDER BY ALL", [name])
    assert stored == sorted(rows, key=lambda r: tuple("" if v is None else v for v in r))


def test_movielens_split_equals_the_record_based_one(ml100k, tmp_path):
    from reference_split import reference_split

    with Workspace(tmp_path / "ml.duckdb") as w:
        write_dataset(w, ml100k)
        make_split(w, "ml-100k", SplitParams(seed=0))
        roles, rows = reference_split(w, "ml-100k", SplitParams(seed=0))
        assert dict(w.query("SELECT user_id, role FROM split_users")) == roles
        stored = w.query("SELECT user_id, item_id, part, label FROM split_items ORDER BY ALL")
        assert stored == sorted(rows, key=lambda r: tuple("" if v is None else v for v in r))
