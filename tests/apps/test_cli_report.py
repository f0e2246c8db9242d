"""`pwb bench run` / `pwb bench report` on data as a newcomer brings it: held-out users that cannot be
scored are counted, one system on two prompt sets is two told-apart rows, numeric attributes are binned,
and a dataset without demographics says so instead of printing empty tables."""

import dataclasses
import json
import re

import pytest
from click.testing import CliRunner

from apps.cli import cli

FORCED = 2  # held-out users whose hidden likes the fixture relabels as dislikes


def run(args, db, ok=True):
    res = CliRunner().invoke(cli, [*args, "--db", str(db)], catch_exceptions=False)
    if ok:
        assert res.exit_code == 0, res.output
    return res


def _no_likes_users(ws, split):
    """Held-out users with no hidden liked item, straight from the split's rows (not via the runner)."""
    return ws.query(
        "SELECT s.user_id FROM split_users s WHERE s.split_id = ? AND s.role = 'heldout' AND NOT EXISTS "
        "(SELECT 1 FROM split_items i WHERE i.split_id = s.split_id AND i.user_id = s.user_id "
        "AND i.part = 'hidden' AND i.label = 'liked') ORDER BY 1",
        [split],
    )


@pytest.fixture(scope="module")
def ws_runs(tmp_path_factory):
    """Two datasets: ``rep`` (gender, a numeric age and income declared demographic, a numeric reputation
    that is not, two held-out users with their hidden likes turned into dislikes) benched on prompt sets
    ``a`` and ``b``; ``plain`` (no user attributes at all) benched on ``a``."""
    from persona.data.splits import SplitParams, make_split
    from persona.data.synthetic import generate_community
    from persona.mining import mine_personas
    from prompting.rewriter import rewrite_split
    from workbench.store import Workspace
    from workbench.store.datasets import write_dataset

    tmp = tmp_path_factory.mktemp("report")
    db = tmp / "w.duckdb"
    prompts = {}
    for name, text in (("a", "a red bicycle\ta lighthouse at dusk"), ("b", "a quiet harbour\ta city at night")):
        prompts[name] = tmp / f"{name}.tsv"
        p1, p2 = text.split("\t")
        prompts[name].write_text(f"prompt_id\tprompt\np1\t{p1}\np2\t{p2}\n")
    with Workspace(db) as ws:
        rep = generate_community(100, 120, seed=4, name="rep")
        rep.users = [
            dataclasses.replace(
                u,
                attributes={
                    **u.attributes,
                    "age": 16 + (i * 7) % 55,
                    "income": 1000 + (i * 37) % 101 * 10,
                    "reputation": None if i % 9 == 0 else [1, 1, 1, 5, 12, 40, 300, 2500][i % 8] + i % 3,
                },
            )
            for i, u in enumerate(rep.users)
        ]
        rep.meta["demographics"] = ["gender", "age", "income"]
        plain = generate_community(60, 80, seed=5, name="plain")
        plain.users = [dataclasses.replace(u, attributes={}) for u in plain.users]
        plain.meta["demographics"] = []
        splits = {}
        for bundle in (rep, plain):
            write_dataset(ws, bundle)
            splits[bundle.name] = make_split(ws, bundle.name, SplitParams(seed=0))["split"]
        natural = {u for (u,) in _no_likes_users(ws, splits["rep"])}
        forced = [
            u
            for u in ws.query(
                "SELECT user_id FROM split_users WHERE split_id = ? AND role = 'heldout' ORDER BY user_id",
                [splits["rep"]],
            )
            if u[0] not in natural
        ][:FORCED]
        ws.con.execute(
            "UPDATE split_items SET label = 'disliked' WHERE split_id = ? AND part = 'hidden' AND label = 'liked' "
            "AND list_contains(?, user_id)",
            [splits["rep"], [u[0] for u in forced]],
        )
        for name, split in splits.items():
            mine_personas(ws, split)
            for p in ("a", "b") if name == "rep" else ("a",):
                rewrite_split(ws, split, prompts=str(prompts[p]))
        dropped = [u for (u,) in _no_likes_users(ws, splits["rep"])]
        heldout = ws.scalar("SELECT count(*) FROM split_users WHERE split_id = ? AND role = 'heldout'", [splits["rep"]])
    out = {"db": db, "dropped": dropped, "heldout": heldout, "natural": natural, "splits": splits}
    for key, split, p in (("a", "rep", "a"), ("b", "rep", "b"), ("plain", "plain", "a")):
        res = run(["bench", "run", "--split", splits[split], "--prompts", str(prompts[p]), "--json"], db)
        out[key] = json.loads(res.stdout)
    return out


def test_held_out_users_without_hidden_likes_are_counted_in_every_report(ws_runs):
    db, n, heldout = ws_runs["db"], len(ws_runs["dropped"]), ws_runs["heldout"]
    assert n == len(ws_runs["natural"]) + FORCED  # the two relabelled users are among them
    scored = f"{heldout - n} of {heldout} held-out"
    why = f"{n} not scored: no hidden liked items"
    a = ws_runs["a"]
    assert (a["n_users_heldout"], a["n_users_dropped"], a["dropped_reasons"]) == (
        heldout,
        n,
        {"no hidden liked items": n},
    )
    again = run(["bench", "run", "--split", ws_runs["splits"]["rep"], "--prompts", "a"], db).output
    assert f"users_scored: {scored}; {why}" in again.splitlines()
    rows = json.loads(run(["bench", "report", a["run_id"], "--json"], db).stdout)["leaderboard"]
    assert rows[0]["n_users_dropped"] == n and rows[0]["n_users"] == heldout - n
    assert f"users_scored: {scored}; {why}" in run(["bench", "report", a["run_id"]], db).output.splitlines()
    both = run(["bench", "report", a["run_id"], ws_runs["b"]["run_id"], ws_runs["plain"]["run_id"]], db).output
    line = next(x for x in both.splitlines() if x.startswith(f"users_scored: {scored} ("))
    ids = line.split("(", 1)[1].split(")", 1)[0].split(", ")
    assert sorted(ids) == sorted([a["run_id"], ws_runs["b"]["run_id"]]) and line.endswith(f"); {why}")
    plain = ws_runs["plain"]
    assert (
        f"users_scored: {plain['n_users_heldout'] - plain['n_users_dropped']} of {plain['n_users_heldout']} held-out"
        in both
    )
    two = run(["bench", "report", a["run_id"], ws_runs["b"]["run_id"]], db).output
    assert f"users_scored: {scored}, every run; {why}" in two.splitlines()


def _table(output):
    """The leaderboard's rows as dicts, cut at the header's column starts."""
    lines = output.splitlines()
    header, dashes = lines[0], lines[1]
    starts = [m.start() for m in re.finditer(r"-+", dashes)]
    cols = [header[s:e].strip() for s, e in zip(starts, starts[1:] + [None])]
    rows = []
    for line in lines[2:]:
        if not line.strip():
            break
        rows.append({c: line[s:e].strip() for c, s, e in zip(cols, starts, starts[1:] + [None])})
    return cols, rows


def test_one_system_on_two_prompt_sets_is_two_rows_told_apart(ws_runs):
    a, b = ws_runs["a"], ws_runs["b"]
    cols, rows = _table(run(["bench", "report", a["run_id"], b["run_id"]], ws_runs["db"]).output)
    assert cols[:3] == ["system", "prompts", "personal"]
    by_run = {r["run"]: r for r in rows}
    assert by_run[a["run_id"]]["system"] == by_run[b["run_id"]]["system"] == "tfidf+template"
    assert (by_run[a["run_id"]]["prompts"], by_run[b["run_id"]]["prompts"]) == ("a", "b")
    board = json.loads(run(["bench", "report", a["run_id"], b["run_id"], "--json"], ws_runs["db"]).stdout)
    assert {r["run_id"]: r["prompts"] for r in board["leaderboard"]} == {a["run_id"]: "a", b["run_id"]: "b"}


def _groups(db, run_id, *bins):
    out = json.loads(run(["bench", "report", run_id, "--groups", *bins, "--json"], db).stdout)
    rows = out["groups"][run_id]
    by = {}
    for r in rows:
        by.setdefault(r["attribute"], []).append(r)
    return by, out


def test_numeric_attributes_are_binned(ws_runs):
    db, run_id = ws_runs["db"], ws_runs["a"]["run_id"]
    scored = ws_runs["heldout"] - len(ws_runs["dropped"])
    by, _ = _groups(db, run_id)
    assert set(by) == {"gender", "age", "income"}  # reputation is not declared demographic
    assert [g["group"] for g in by["age"]] == [
        g for g in ("<18", "18-24", "25-34", "35-44", "45-54", "55+") if g in {r["group"] for r in by["age"]}
    ]
    income = [g["group"] for g in by["income"]]
    assert len(income) == 4 and all(re.fullmatch(r"\[\d+, \d+[)\]]", g) for g in income)  # quartiles by default
    for rows in by.values():
        assert sum(r["n_users"] for r in rows) == scored  # every scored user in exactly one group
    by, _ = _groups(db, run_id, "--bins", "reputation=quantiles:3", "--bins", "age=30,50")
    rep = [g["group"] for g in by["reputation"]]
    assert rep[-1] == "unknown" and 1 <= len(rep) - 1 <= 3 and sum(r["n_users"] for r in by["reputation"]) == scored
    lows = [float(re.match(r"\[(\d+)", g).group(1)) for g in rep[:-1]]
    assert lows == sorted(lows)  # bins low to high, not as text
    assert {g["group"] for g in by["age"]} <= {"<30", "[30, 50)", ">=50"}
    bad = run(["bench", "report", run_id, "--bins", "nosuch=values"], db, ok=False)
    assert bad.exit_code == 1 and "--bins nosuch: no user of dataset rep has attribute 'nosuch'" in bad.output
    assert "reputation" in bad.output  # what the users do carry


def test_a_dataset_without_demographics_says_so(ws_runs):
    db, run_id = ws_runs["db"], ws_runs["plain"]["run_id"]
    out = run(["bench", "report", run_id, "--groups"], db).output
    assert (
        f"run {run_id}: no group breakdown: dataset plain has no user attributes (demographics); import them with "
        "pwb data import table --into plain --users-file USERS.csv" in out
    )
    assert "by group:" not in out
    _, rep = _groups(db, ws_runs["a"]["run_id"])
    assert rep["group_notes"] == {}
    both = json.loads(run(["bench", "report", run_id, ws_runs["a"]["run_id"], "--groups", "--json"], db).stdout)
    assert set(both["groups"]) == {ws_runs["a"]["run_id"]} and set(both["group_notes"]) == {run_id}
