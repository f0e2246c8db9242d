"""``pwb prompts import`` / ``pwb prompts list``, and a stored set used by name in ``pwb rewrite``."""

import json

from click.testing import CliRunner

from apps.cli import cli


def run(args, db, code=0):
    res = CliRunner().invoke(cli, [*args, "--db", str(db)], catch_exceptions=False)
    assert res.exit_code == code, res.output
    return res


def test_import_list_and_use_by_name(tmp_path):
    db = tmp_path / "w.duckdb"
    src = tmp_path / "ranked.jsonl"
    src.write_text(
        "\n".join(json.dumps({"id": f"r{i}", "text": p}) for i, p in enumerate(["a red bicycle", "a quiet harbour"]))
    )
    out = json.loads(
        run(
            [
                "prompts",
                "import",
                str(src),
                "--name",
                "ranked2",
                "--id-column",
                "id",
                "--prompt-column",
                "text",
                "--json",
            ],
            db,
        ).stdout
    )
    assert out == {"prompt_set": "ranked2", "prompts": 2, "stored": True}
    listed = run(["prompts", "list"], db).output
    assert "ranked2" in listed and "parti36" in listed and "stored" in listed
    bad = run(["prompts", "import", str(src), "--name", "x"], db, code=1).output
    assert "no 'prompt' field" in bad and "--prompt-column" in bad
    run(["data", "import", "synthetic", "--users", "60", "--items", "60", "--seed", "1"], db)
    run(["data", "split"], db)
    run(["personas", "mine", "--encoder", "tfidf"], db)
    res = json.loads(run(["rewrite", "--encoder", "tfidf", "--prompts", "ranked2", "--json"], db).stdout)
    assert res["prompts"] == "ranked2", res
