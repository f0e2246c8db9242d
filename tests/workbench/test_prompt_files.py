"""Prompt sets as a newcomer brings them: every file format, a datasets folder, stored sets by name."""

from __future__ import annotations

import json

import pytest

from workbench.errors import DataError
from workbench.prompt_files import PromptColumns, read_prompts
from workbench.store import Workspace
from workbench.store.prompts import import_prompt_set, list_prompt_sets, load_prompts, register_prompt_set

PROMPTS = ["a lighthouse at dusk", "a bowl of ramen, steam rising", "a fox in the snow"]


def test_one_prompt_a_line(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("# my prompts\n" + "\n\n".join(PROMPTS) + "\n")
    rows = read_prompts(path)
    assert [r[1] for r in rows] == PROMPTS and [r[0] for r in rows] == ["p-0002", "p-0004", "p-0006"]


def test_csv_and_tsv_with_column_options(tmp_path):
    csv = tmp_path / "set.csv"
    csv.write_text("id,text,category\n" + "".join(f'x{i},"{p}",c{i}\n' for i, p in enumerate(PROMPTS)))
    rows = read_prompts(csv, PromptColumns(id="id", prompt="text"))
    assert rows == [(f"x{i}", p, f"c{i}", "") for i, p in enumerate(PROMPTS)]
    with pytest.raises(DataError, match="missing column"):
        read_prompts(csv)  # without the column options the prompt column is missing, and the error says so
    tsv = tmp_path / "set.tsv"
    tsv.write_text("prompt\n" + "\n".join(PROMPTS) + "\n")
    assert [r[1] for r in read_prompts(tsv)] == PROMPTS


def test_json_lists_objects_and_jsonl(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(PROMPTS))
    (tmp_path / "b.json").write_text(
        json.dumps({"prompts": [{"id": f"q{i}", "prompt": p} for i, p in enumerate(PROMPTS)]})
    )
    (tmp_path / "c.jsonl").write_text(
        "\n".join(json.dumps({"prompt": p, "prompt_id": f"r{i}"}) for i, p in enumerate(PROMPTS))
    )
    for name, ids in (
        ("a.json", ["p-0001", "p-0002", "p-0003"]),
        ("b.json", ["q0", "q1", "q2"]),
        ("c.jsonl", ["r0", "r1", "r2"]),
    ):
        rows = read_prompts(tmp_path / name)
        assert [r[1] for r in rows] == PROMPTS and [r[0] for r in rows] == ids, name
    (tmp_path / "bad.jsonl").write_text('"ok"\n{"prompt": \n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: not valid JSON"):
        read_prompts(tmp_path / "bad.jsonl")
    (tmp_path / "d.jsonl").write_text(json.dumps({"caption": "x"}))
    with pytest.raises(DataError, match="no 'prompt' field; the record has caption.*--prompt-column"):
        read_prompts(tmp_path / "d.jsonl")
    assert read_prompts(tmp_path / "d.jsonl", PromptColumns(prompt="caption"))[0][1] == "x"


def test_a_datasets_folder(tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_dict({"prompt": PROMPTS, "rank": [1, 2, 3]}).save_to_disk(str(tmp_path / "ds"))
    rows = read_prompts(f"hf:{tmp_path / 'ds'}", limit=2)
    assert [r[1] for r in rows] == PROMPTS[:2]


def test_duplicates_and_empties_are_refused_with_the_line(tmp_path):
    (tmp_path / "dup.jsonl").write_text('{"prompt_id": "a", "prompt": "x"}\n{"prompt_id": "a", "prompt": "y"}\n')
    with pytest.raises(DataError, match=r"dup.jsonl:2: field 'prompt_id': duplicate prompt id 'a'"):
        read_prompts(tmp_path / "dup.jsonl")
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(DataError, match="no prompts"):
        read_prompts(tmp_path / "empty.txt")


def test_a_stored_set_is_used_again_by_name(tmp_path):
    src = tmp_path / "imagereward.jsonl"
    src.write_text("\n".join(json.dumps(p) for p in PROMPTS))
    with Workspace(tmp_path / "w.duckdb") as ws:
        res = import_prompt_set(ws, str(src), name="ir3")
        assert res == {"prompt_set": "ir3", "prompts": 3, "stored": True}
        assert import_prompt_set(ws, str(src), name="ir3")["stored"] is False  # the same set again: a no-op
        assert register_prompt_set(ws, "ir3") == "ir3"
        assert [p for _, p in load_prompts(ws, "ir3")] == PROMPTS
        with pytest.raises(DataError, match=r"no prompt set or file 'ir4'.*stored: ir3.*pwb prompts import"):
            register_prompt_set(ws, "ir4")
        other = tmp_path / "other.txt"
        other.write_text("a different prompt\n")
        with pytest.raises(DataError, match="already stored with other prompts"):
            import_prompt_set(ws, str(other), name="ir3")
        assert [p for _, p in load_prompts(ws, "ir3")] == PROMPTS  # nothing stored was lost
        listed = {r["prompt_set"]: r for r in list_prompt_sets(ws)}
        assert listed["ir3"] == {"prompt_set": "ir3", "prompts": 3, "source": "stored"}
        assert listed["parti36"]["prompts"] == 36 and listed["parti36"]["source"] == "bundled"
