"""``pwb personalize``: personas, rewrites and signed images for users, cohorts, archetypes or new users, with a
manifest, a contact sheet and the personas, in one folder a team hands on (evalbench.flows.personalize)."""

from __future__ import annotations

import click

from apps.cli.common import db_option, emit, friendly_errors, json_option, split_option, table, workspace


@click.command("personalize")
@click.option("--users", default=None, metavar="FILE|IDS", help="Stored users: a file of ids (txt, csv, tsv) or a,b,c.")
@click.option(
    "--cohort", "cohorts", multiple=True, metavar="NAME", help="A cohort, repeatable (with --where, or stored)."
)
@click.option(
    "--where",
    "wheres",
    multiple=True,
    metavar="SQL",
    help="The i-th --cohort's members: a SQL condition over the users' columns, e.g. \"age < 30\".",
)
@click.option("--archetypes", default=None, type=int, metavar="K", help="K archetype personas (k-means).")
@click.option(
    "--new-users",
    default=None,
    type=click.Path(dir_okay=False),
    help="Cold-start users: csv/tsv (user_id, item_id) or jsonl ({user_id, items}); needs a trained graph encoder.",
)
@click.option("--prompts", required=True, help="Prompt file (txt, tsv, csv, json, jsonl) or a stored or bundled set.")
@split_option
@click.option("--encoder", default=None, help="Persona encoder [default: gat when mined, else tfidf].")
@click.option("--rewriter", default="template", show_default=True, help="Rewriter backend (template, embedded, ...).")
@click.option("--rewriter-model", default=None, help="The rewriter backend's model.")
@click.option(
    "--candidates", default=1, show_default=True, type=int, help="Rewrites per prompt; the selector keeps one."
)
@click.option("--generator", default="patch", show_default=True, type=click.Choice(["patch", "diffusers"]))
@click.option(
    "--model", default=None, help="diffusers model id or folder (random:sdxl-tiny offline); patch:fast|reference|auto."
)
@click.option("--pool", default="samples", show_default=True, help="The patch generator's reference images.")
@click.option("--images", "n_images", default=1, show_default=True, type=int, help="Images per prompt (seeds seed..).")
@click.option("--size", default=256, show_default=True, type=int, help="Image side in pixels.")
@click.option("--steps", default=None, type=int, help="Sampling steps [default: the generator's].")
@click.option("--guidance", default="cfg", show_default=True, help="Guidance rule (diffusers).")
@click.option("--guidance-scale", default=None, type=float, help="Guidance scale [default: the rule's].")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--baseline", is_flag=True, help="Also draw the no-persona image beside each.")
@click.option("--out", "out_dir", default="personalized", show_default=True, type=click.Path(file_okay=False))
@db_option
@json_option
@friendly_errors
def personalize(**kw):
    """Personas, rewrites and signed images for users, cohorts, archetypes or new users, in one folder.

    Writes manifest.parquet and manifest.csv, images/, personas.jsonl, run.json and index.html (a contact
    sheet per target). Killed and rerun with the same options, it draws only what is missing.
    """
    from evalbench.flows.personalize import PersonalizeConfig, new_users_from, users_from
    from evalbench.flows.personalize import personalize as run

    cohorts, wheres = list(kw["cohorts"]), list(kw["wheres"])
    if wheres and len(wheres) != len(cohorts):
        raise click.UsageError(
            f"give one --where per --cohort ({len(cohorts)} cohorts, {len(wheres)} --where), or none for stored cohorts"
        )
    cfg = PersonalizeConfig(
        prompts=kw["prompts"],
        out=kw["out_dir"],
        users=users_from(kw["users"]) if kw["users"] else [],
        cohorts=[(c, wheres[i] if wheres else None) for i, c in enumerate(cohorts)],
        archetypes=kw["archetypes"],
        new_users=new_users_from(kw["new_users"]) if kw["new_users"] else {},
        split=kw["split"],
        encoder=kw["encoder"],
        rewriter=kw["rewriter"],
        rewriter_model=kw["rewriter_model"],
        candidates=kw["candidates"],
        generator=kw["generator"],
        model=kw["model"],
        pool=kw["pool"],
        images=kw["n_images"],
        size=kw["size"],
        steps=kw["steps"],
        guidance=kw["guidance"],
        guidance_scale=kw["guidance_scale"],
        seed=kw["seed"],
        baseline=kw["baseline"],
    )
    with workspace(kw["db"]) as ws:
        result = run(ws, cfg)
    if kw["as_json"]:
        return emit(result, True)
    _summary(kw["out_dir"], result)


def _summary(out_dir: str, result: dict) -> None:
    """Per target: kind, members, images and the selector's mean score; then the files and the time per stage."""
    import csv
    from pathlib import Path

    with open(Path(out_dir) / "manifest.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    per: dict[str, dict] = {}
    for r in rows:
        t = per.setdefault(
            r["target_id"], {"target": r["target_id"], "kind": r["target_kind"], "members": r["members"] or "-"}
        )
        t["images"] = t.get("images", 0) + (r["variant"] == "persona")
        t["baselines"] = t.get("baselines", 0) + (r["variant"] == "baseline")
        if r["selector_score"]:
            t.setdefault("_scores", []).append(float(r["selector_score"]))
    for t in per.values():
        scores = t.pop("_scores", [])
        t["selector"] = round(sum(scores) / len(scores), 3) if scores else None
    cols = [("target", "target"), ("kind", "kind"), ("members", "members"), ("images", "images")]
    cols += [("baselines", "baselines"), ("selector", "mean selector score")]
    click.echo(table(list(per.values()), cols))
    secs = result["timings_s"]
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in secs.items())
    click.echo(
        f"\n{result['images']} images ({result['drawn']} drawn, {result['reused']} already there) in {out_dir}/: "
        "manifest.parquet, manifest.csv, personas.jsonl, run.json, index.html"
    )
    click.echo(f"time per stage: {stages}")
