"""Human labels in and out: label the persona-vs-baseline pairs in Label Studio (or a spreadsheet) and bring
the choices back.

``export_tasks`` writes one task per stored pair (:func:`evalbench.labels.label_pairs`), blind: the two
images in the pair's fixed order (``image_a`` left, ``image_b`` right; which one is the persona image is
fixed per pair by a hash, and not written), the generic prompt, and an opaque ``pair_key`` (a hash of the
pair) so nothing in the file says which side is the system. ``import_labels`` reads a Label Studio JSON
export (``Pairwise`` results: ``selected`` = ``left`` / ``right``; a ``flag`` choice marks a broken pair)
or the CSV filled in (``choice`` = ``a`` / ``b`` / ``flag``), maps each pair key back to its pair, and
stores the labels with ids made from the pair, the annotator and the annotation, so importing the same file
twice adds nothing. Label Studio's format: https://labelstud.io/guide/task_format and the ``Pairwise`` tag.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

from evalbench.labels import CHOICES, LabelPair, label_pairs, label_row
from workbench.errors import DataError
from workbench.store.labels import insert_new_labels

FORMATS = ("label-studio", "csv")
CSV_COLUMNS = ("pair_key", "user_id", "prompt_id", "prompt", "image_a", "image_b", "choice", "annotator", "note")

#: the labelling interface to paste into a Label Studio project (Settings > Labeling Interface)
LABEL_STUDIO_CONFIG = """<View>
  <Header value="Which image fits this user better? ($prompt)"/>
  <View style="display: grid; grid-template-columns: 1fr 1fr; column-gap: 8px">
    <Image name="image_a" value="$image_a"/>
    <Image name="image_b" value="$image_b"/>
  </View>
  <Pairwise name="choice" toName="image_a,image_b"/>
  <Choices name="problem" toName="image_a" showInline="true">
    <Choice value="flag" hint="something is wrong with this pair"/>
  </Choices>
</View>
"""


def pair_key(pair: LabelPair) -> str:
    """An opaque key of a pair: it names the pair without saying which image is the persona's."""
    return hashlib.sha256(f"pair|{pair.pair_id}".encode()).hexdigest()[:16]


def _image(path: str, prefix: str | None) -> str:
    return f"{prefix.rstrip('/')}/{Path(path).name}" if prefix else path


def export_tasks(ws, fmt: str, out: str | Path, *, image_prefix: str | None = None) -> dict[str, Any]:
    """Write every stored pair as a labelling task to ``out`` (``label-studio``: a JSON task list, with the
    labelling interface beside it as ``<out>.xml``; ``csv``: one row a pair, ``choice`` to fill in).
    ``image_prefix``: a URL the images are served under (their file names appended) instead of their paths."""
    if fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}", field="format", fix=f"Use one of {', '.join(FORMATS)}.")
    pairs = label_pairs(ws)
    if not pairs:
        raise DataError(
            "no persona-vs-baseline image pairs to label",
            field="labels",
            fix="Draw them first: `pwb generate --baseline` (each persona image beside its no-persona baseline).",
        )
    out = Path(out)
    rows = [
        {
            "pair_key": pair_key(p),
            "user_id": p.user_id,
            "prompt_id": p.prompt_id,
            "prompt": p.baseline_prompt,
            "image_a": _image(p.a_image, image_prefix),
            "image_b": _image(p.b_image, image_prefix),
        }
        for p in pairs
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    written = [str(out)]
    if fmt == "csv":
        with out.open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, CSV_COLUMNS)
            w.writeheader()
            w.writerows({**r, "choice": "", "annotator": "", "note": ""} for r in rows)
    else:
        out.write_text(json.dumps([{"data": r} for r in rows], indent=2), encoding="utf-8")
        config = out.with_suffix(".xml")
        config.write_text(LABEL_STUDIO_CONFIG, encoding="utf-8")
        written.append(str(config))
    return {"format": fmt, "pairs": len(rows), "written": written}


def _label_studio_choices(task: dict[str, Any]) -> list[tuple[str, str | None, str]]:
    """``(choice, annotator, annotation id)`` of a Label Studio task's annotations (cancelled ones skipped)."""
    out = []
    for ann in task.get("annotations") or []:
        if ann.get("was_cancelled"):
            continue
        choice = None
        for res in ann.get("result") or []:
            value = res.get("value") or {}
            if "flag" in (value.get("choices") or []):
                choice = "flag"
                break
            selected = value.get("selected")
            if selected in ("left", "right"):
                choice = "a" if selected == "left" else "b"
        if choice:
            who = ann.get("completed_by")
            who = who.get("email") if isinstance(who, dict) else who
            out.append((choice, None if who is None else str(who), str(ann.get("id", ""))))
    return out


def _read(path: Path) -> list[tuple[str, str, str | None, str | None, str, int]]:
    """``(pair_key, choice, annotator, note, annotation id, line)`` of a filled-in export."""
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            tasks = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"not JSON: {exc.msg}", file=str(path), line=exc.lineno) from None
        if not isinstance(tasks, list):
            raise DataError("expected a list of tasks (Label Studio's JSON export)", file=str(path))
        out = []
        for n, task in enumerate(tasks, 1):
            key = (task.get("data") or {}).get("pair_key")
            if not key:
                raise DataError(
                    f"task {n} has no data.pair_key",
                    file=str(path),
                    field="pair_key",
                    fix="Import the tasks `pwb labels export` wrote, not others.",
                )
            out += [(key, c, who, None, aid, n) for c, who, aid in _label_studio_choices(task)]
        return out
    out = []
    for n, row in enumerate(csv.DictReader(text.splitlines()), 2):
        choice = (row.get("choice") or "").strip().lower()
        if not choice:
            continue
        if choice not in CHOICES:
            raise DataError(
                f"expected one of {', '.join(CHOICES)}, got {choice!r}", file=str(path), line=n, field="choice"
            )
        who = (row.get("annotator") or "").strip() or None
        out.append(((row.get("pair_key") or "").strip(), choice, who, (row.get("note") or "").strip() or None, "", n))
    return out


def import_labels(ws, path: str | Path, *, annotator: str | None = None) -> dict[str, Any]:
    """Store the labels of a filled-in export (Label Studio JSON or the CSV); ``annotator`` for rows without
    one. Returns ``{"labels", "new", "already_stored"}``; a pair key no stored pair has is an error naming
    its line, and nothing is stored then."""
    path = Path(path)
    if not path.is_file():
        raise DataError("no such file", file=str(path), fix="Pass the file Label Studio exported or the CSV.")
    by_key = {pair_key(p): p for p in label_pairs(ws)}
    rows = []
    for key, choice, who, note, aid, line in _read(path):
        pair = by_key.get(key)
        if pair is None:
            raise DataError(
                f"pair {key!r} is not in this workspace",
                file=str(path),
                line=line,
                field="pair_key",
                fix="Import into the workspace the tasks were exported from.",
            )
        who = who or annotator
        row = label_row(pair, choice, annotator=who, note=note)
        seed = f"{pair.pair_id}|{who}|{aid or line}|{choice if not aid else ''}"
        row["label_id"] = "ext-" + hashlib.sha256(seed.encode()).hexdigest()[:16]
        rows.append(row)
    new = insert_new_labels(ws, rows)
    return {"labels": len(rows), "new": new, "already_stored": len(rows) - new}
