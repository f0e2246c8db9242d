"""Task reports: every system against the no-persona baseline with CIs and a paired test, per-group
scores with raw vs IPF-reweighted results, cost; as a dict (JSON). :mod:`evalbench.task_render` words it
as Markdown or HTML."""

from __future__ import annotations

from typing import Any

import numpy as np

from evalbench.groups import Bins, assign_groups, check_bins_attributes, no_groups_note, parse_bins
from evalbench.leaderboard import ceiling_share, result_label, run_metric, run_results, user_attributes
from evalbench.metrics.paired import paired_comparison
from evalbench.metrics.preference import cluster_mean_ci
from evalbench.runner import dropped_line, unit_table, user_coverage
from workbench.store.rewrites import RewriteKey, load_rewrites, rewrite_stats
from workbench.store.runs import run_config, run_record
from workbench.store.splits import split_dataset
from workbench.store.workspace import Workspace, WorkspaceError

#: groups with fewer users are shown but do not define the worst-group gap or the disparity ratio
MIN_GROUP = 5


def _units(ws: Workspace, run_id: str) -> dict[str, np.ndarray]:
    """A bench run's per-unit scores (:func:`evalbench.runner.unit_table`); an error if it has none."""
    t = unit_table(ws, run_id, run_metric(ws, run_id, run_config(ws, run_id) or {}))
    if not t["unit"].size:
        raise WorkspaceError(f"run {run_id!r} has no scores")
    return t


def _user_groups(
    ws: Workspace, split: str, users: np.ndarray, attributes: list[str], bins: dict[str, Bins]
) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """Per attribute, each unit's user's group and the groups in order (:func:`evalbench.groups.assign_groups`
    over the units' users: ages in fixed bins, numeric attributes with many values in quantile bins)."""
    attrs = user_attributes(ws, split_dataset(ws, split))
    distinct = list(dict.fromkeys(users.tolist()))
    labels, order = {}, {}
    for a in attributes:
        per_user, order[a] = assign_groups({u: attrs.get(u, {}).get(a) for u in distinct}, a, bins.get(a))
        labels[a] = np.array([per_user[u] for u in users])
    return labels, order


def _in_order(per_attribute: dict[str, dict[str, Any]], order: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
    """A bias summary's per-attribute results with their groups in ``order`` (bins low to high)."""
    out = {}
    for a, r in per_attribute.items():
        groups = r["groups"]
        keys = [g for g in order.get(a, []) if g in groups] + [g for g in groups if g not in order.get(a, [])]
        out[a] = {**r, "groups": {g: groups[g] for g in keys}}
    return out


def _cost(ws: Workspace, bench_cfg: dict[str, Any]) -> dict[str, Any]:
    """Rewrite latency, output tokens (approximate: words and punctuation, the same count for every
    backend) and template fallbacks of the system's stored rewrites."""
    from persona.evidence import count_tokens

    key = RewriteKey(
        bench_cfg["split"], bench_cfg["encoder"], bench_cfg["backend"], bench_cfg["model"], bench_cfg["prompts"]
    )
    lat, n, fb = rewrite_stats(ws, key)
    texts = [t or "" for t in load_rewrites(ws, key).values()]
    return {
        "rewrite_latency_s": lat if lat is not None else float("nan"),
        "rewrites": n,
        "fallbacks": fb,
        "output_tokens_per_rewrite": float(np.mean([count_tokens(t) for t in texts])) if texts else float("nan"),
    }


def _bias_setup(task: dict[str, Any], bins: dict[str, Bins] | None = None) -> tuple[list[str], Any, dict[str, Bins]]:
    """The attributes the task reports per group (its ``bias.attributes``, then any other the bins name),
    its population targets (raked only on those) and each attribute's bins (``bins`` over the task's
    ``bias.bins``: ``{attribute: "quantiles:5" | "values" | [edges]}``)."""
    from evalbench.metrics.bias import Targets, load_targets

    bias_cfg = task.get("bias") or {}
    all_bins = {**parse_bins(bias_cfg.get("bins"), "bias.bins"), **(bins or {})}
    attributes = list(bias_cfg.get("attributes") or [])
    attributes += [a for a in all_bins if a not in attributes]
    if not bias_cfg.get("targets"):
        return attributes, None, all_bins
    targets = load_targets(bias_cfg["targets"])
    return (
        attributes,
        Targets(
            marginals={a: m for a, m in targets.marginals.items() if a in attributes},
            source=targets.source,
            notes=getattr(targets, "notes", None),
        ),
        all_bins,
    )


#: how a task report groups by an attribute (the task file's ``bias`` section)
TASK_GROUPS_FIX = "list one under bias.attributes in the task file (or pass --bins ATTR=values to pwb bench report)"


def _groups_note(
    ws: Workspace, rec: dict[str, Any], split: str, attributes: list[str], bins: dict[str, Bins]
) -> str | None:
    """Why a task report has no per-group table (no user attributes, none of those asked for, or none asked
    for), or ``None``; an error when ``bins`` names an attribute no user has. Reference tasks group by
    subject class, not user attributes."""
    if rec["config"]["task"].get("kind") == "reference":
        return None
    dataset_id = split_dataset(ws, split)
    attrs = user_attributes(ws, dataset_id)
    check_bins_attributes(bins, attrs, dataset_id)
    return no_groups_note(dataset_id, attrs, attributes, TASK_GROUPS_FIX, unasked="the task lists no bias.attributes")


def _dropped_notes(entries: list[dict[str, Any]]) -> list[str]:
    """One line per distinct count of held-out users not scored (:func:`evalbench.runner.dropped_line`),
    naming the systems unless it holds for every one."""
    by_line: dict[str, list[str]] = {}
    for e in entries:
        line = dropped_line(e)
        if line:
            by_line.setdefault(line, []).append(e["name"])
    if len(by_line) == 1 and len(next(iter(by_line.values()))) == len(entries):
        return list(by_line)
    return [f"{line} ({', '.join(dict.fromkeys(names))})" for line, names in by_line.items()]


def task_report(ws: Workspace, run_id: str, bins: dict[str, Bins] | None = None) -> dict[str, Any]:
    """The report of a ``task`` run (see :func:`evalbench.task_spec.run_task`); ``bins``
    (:func:`evalbench.groups.parse_bins`) bin its attributes (and add any other they name) over the task's
    ``bias.bins``. Every system (and the report, in ``dropped_notes``) counts the held-out users it could
    not score; ``groups_note`` says why there are no per-group results, where there are none, for the
    ``attributes_requested``."""
    rec = run_record(ws, run_id, kind="task")
    if rec is None:
        raise WorkspaceError(f"No task run {run_id!r}; see `pwb runs list --kind task`.")
    attributes, targets, all_bins = _bias_setup(rec["config"]["task"], bins)
    note = _groups_note(ws, rec, rec["config"]["split"], attributes, all_bins)
    requested = list(attributes)
    if note:  # nothing to group by: no per-group results, plots or raking
        attributes, targets = [], None
    if rec["config"]["task"].get("kind", "text") in ("image", "reference"):
        rep = _image_task_report(ws, run_id, rec, attributes, targets, all_bins)
    else:
        rep = _text_task_report(ws, run_id, rec, attributes, targets, all_bins)
    rep["groups_note"], rep["attributes_requested"] = note, requested
    rep["dropped_notes"] = _dropped_notes(rep["systems"])
    return rep


#: the leading keys of a text system's entry, from its text-preference result
PERSONAL_KEYS = (
    "personal_win_rate",
    "personal_ci",
    "personal_wilcoxon_p",
    "personal_dislikes",
    "personal_dislikes_ci",
    "personal_dislikes_users",
    "n_users",
    "n_units",
)


def _no_prompt() -> dict[str, Any]:
    """What a history ceiling's entry has no value for (no prompt, so no generic prompt to beat)."""
    nan = float("nan")
    return {
        "win_rate": nan,
        "win_rate_ci": [nan] * 2,
        "lift_x100": nan,
        "lift_x100_ci": [nan] * 2,
        "wilcoxon_p": nan,
        "sign_test_p": nan,
        "score": nan,
        "score_ci": [nan] * 2,
        "cost": {},
    }


def _text_task_report(
    ws: Workspace, run_id: str, rec: dict[str, Any], attributes: list[str], targets, bins: dict[str, Bins]
) -> dict[str, Any]:
    """Text tasks: every member run's personal win rate, its comparison with the generic prompt, groups, cost."""
    cfg = rec["config"]
    task, split, seed = cfg["task"], cfg["split"], cfg["task"]["seed"]
    # 1. The member runs with scores: their configs, metric results and units.
    members = []
    for m in cfg["members"]:
        bench_cfg = run_config(ws, m["run_id"])
        t = unit_table(ws, m["run_id"], run_metric(ws, m["run_id"], bench_cfg))
        if t["unit"].size:
            members.append((m, bench_cfg, run_results(ws, m["run_id"], bench_cfg), t))
    encoders = list(dict.fromkeys(_text_encoder(m, bench_cfg) for m, bench_cfg, _, _ in members))
    # 2. One entry per member; the baseline (the generic prompt) from the first encoder's first system.
    systems, groups_out, baseline, ceilings = [], {}, None, {}
    for m, bench_cfg, results, t in members:
        entry = {**_text_entry(m, bench_cfg, results, task), **user_coverage(ws, m["run_id"], bench_cfg)}
        if entry["reference"] == "history":
            ceilings[(entry["text_encoder"], bench_cfg.get("max_users", 0))] = entry["personal_win_rate"]
            systems.append({**entry, **_no_prompt()})
            continue
        if baseline is None or (baseline.get("text_encoder") != encoders[0] and entry["text_encoder"] == encoders[0]):
            baseline = {**_generic_baseline(task, entry, t, seed), **_coverage_of(entry)}
        entry.update(_against_generic(t, seed))
        entry["cost"] = _cost(ws, bench_cfg) if not entry["reference"] else {}
        if attributes:
            entry["bias"], groups_out[group_key(entry)] = _text_bias(ws, split, t, attributes, targets, seed, bins)
        systems.append(entry)
    # 3. Each row's share of its encoder's history ceiling; ceiling first, then systems, then the control.
    for e in systems:
        e["ceiling"] = ceilings.get((e["text_encoder"], e.get("max_users", 0)), float("nan"))
        e["ceiling_share"] = float("nan") if e["reference"] else ceiling_share(e["personal_win_rate"], e["ceiling"])
    systems.sort(
        key=lambda r: (
            encoders.index(r["text_encoder"]) if r["text_encoder"] in encoders else 99,
            {"history": 0, "": 1, "popularity": 2}.get(r["reference"], 1),
            -(r["personal_win_rate"] if r["personal_win_rate"] == r["personal_win_rate"] else -1.0),
        )
    )
    return {
        **_run_header(task, run_id, rec, split, seed),
        "prompts": task["prompts"],
        "text_encoder": task["text_encoder"],
        "text_encoders": encoders,
        "partners": task.get("partners", 0),
        "power": task.get("power") or {},
        "baseline": baseline,
        "systems": systems,
        "groups": groups_out,
        "attributes": attributes,
        "targets_source": getattr(targets, "source", None) if targets else None,
    }


def _run_header(task: dict[str, Any], run_id: str, rec: dict[str, Any], split: str, seed: int) -> dict[str, Any]:
    """What every task report (text or image) opens with: the task, the run and how it was made."""
    return {
        "task": task["task"],
        "version": task["version"],
        "run_id": run_id,
        "status": rec["status"],
        "split": split,
        "seed": seed,
        "code_version": rec["code_version"],
        "config_hash": rec["config_hash"],
    }


def _text_encoder(member: dict[str, Any], bench_cfg: dict[str, Any]) -> str:
    return member.get("text_encoder") or bench_cfg.get("text_encoder", "minilm")


def _text_entry(
    m: dict[str, Any], bench_cfg: dict[str, Any], results: list[dict[str, Any]], task: dict[str, Any]
) -> dict[str, Any]:
    """A member's entry from its metric results: the text-preference result's personal win rates, and
    (only where the task has them) the further metrics' results and the system's k-shot count."""
    primary = results[0]
    entry = {
        "name": m["name"],
        "run_id": m["run_id"],
        "system": m["system"],
        "metric": result_label(primary),
        "text_encoder": _text_encoder(m, bench_cfg),
        "reference": m.get("reference") or bench_cfg.get("reference", ""),
        "prompts": bench_cfg.get("prompts"),
        "partners": bench_cfg.get("partners", 0),
        "max_users": bench_cfg.get("max_users", 0),
        **{k: primary["result"][k] for k in PERSONAL_KEYS},
    }
    if len(results) > 1:
        entry["metrics"] = {
            result_label(r): {k: r[k] for k in ("metric", "encoder", "aggregation", "higher_is_better")} | r["result"]
            for r in results[1:]
        }
    shots = _shots(task, m["name"])
    if shots:
        entry["shots"] = shots
    return entry


def _shots(task: dict[str, Any], name: str) -> dict[str, Any] | None:
    """``{"k", "series"}`` for a member whose system sets ``rewrite.shots`` (the user's own items shown as
    examples), the series being the systems that differ only by k (one encoder, backend, control)."""
    for s in task.get("systems", []):
        control = name == f"{s['name']} (shuffled control)"
        if (name == s["name"] or control) and "shots" in (s.get("rewrite") or {}):
            suffix = " (shuffled control)" if control or s.get("control") == "shuffled" else ""
            return {"k": int(s["rewrite"]["shots"]), "series": f"{s['encoder']}+{s.get('backend', 'template')}{suffix}"}
    return None


def _generic_baseline(
    task: dict[str, Any], entry: dict[str, Any], t: dict[str, np.ndarray], seed: int
) -> dict[str, Any]:
    """The generic prompt's row: its text-preference score over the member's units."""
    b, blo, bhi = cluster_mean_ci(t["generic"], t["user"], seed=seed)
    return {
        "name": task["baseline"],
        "score": b,
        "score_ci": [blo, bhi],
        "n_users": int(np.unique(t["user"]).size),
        "n_units": int(t["unit"].size),
        "text_encoder": entry["text_encoder"],
        "metric": entry["metric"],
    }


def _against_generic(t: dict[str, np.ndarray], seed: int) -> dict[str, Any]:
    """The rewrite against the generic prompt, paired per unit: win rate, lift, tests, the rewrite's score."""
    pc = paired_comparison(t["rewritten"], t["generic"], t["user"], seed=seed)
    score, slo, shi = cluster_mean_ci(t["rewritten"], t["user"], seed=seed)
    return {
        "win_rate": pc.win_rate,
        "win_rate_ci": [pc.win_rate_ci_low, pc.win_rate_ci_high],
        "lift_x100": 100 * pc.mean_difference,
        "lift_x100_ci": [100 * pc.mean_difference_ci_low, 100 * pc.mean_difference_ci_high],
        "wilcoxon_p": pc.wilcoxon_p,
        "sign_test_p": pc.sign_test_p,
        "score": score,
        "score_ci": [slo, shi],
    }


def _text_bias(
    ws: Workspace, split: str, t: dict[str, np.ndarray], attributes: list[str], targets, seed: int, bins
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(bias entry, per-attribute groups)`` of the personal win rate. Groups under :data:`MIN_GROUP` users
    are reported but left out of the worst-group gap and the ratio; a user subset (``max_users``) that
    misses a target category gets raw groups only, with the reason."""
    from evalbench.metrics.bias import bias_summary

    g, order = _user_groups(ws, split, t["user"], attributes, bins)
    ipf_error = None
    try:
        rep = bias_summary(t["personal"], g, targets, cluster_ids=t["user"], seed=seed, min_n=MIN_GROUP)
    except ValueError as e:
        ipf_error = str(e)
        rep = bias_summary(t["personal"], g, None, cluster_ids=t["user"], seed=seed, min_n=MIN_GROUP)
    ipf = None
    if rep.ipf is not None:
        w = np.asarray(rep.ipf.weights, dtype=float)
        ipf = {
            "iterations": rep.ipf.iterations,
            "max_error": rep.ipf.max_error,
            "converged": rep.ipf.converged,
            "max_weight": float(w.max()),
            "effective_users": float(w.sum() ** 2 / (w**2).sum()),
        }
    bias = {"overall": rep.overall, "ipf": ipf, **({"ipf_error": ipf_error} if ipf_error else {})}
    return bias, _in_order(rep.attributes, order)


def _coverage_of(entry: dict[str, Any]) -> dict[str, Any]:
    """The held-out users an entry's run scored and dropped (:func:`evalbench.runner.user_coverage`)."""
    return {k: entry[k] for k in ("prompts", "n_users_heldout", "n_users_dropped", "dropped_reasons") if k in entry}


def _personal_of(u: dict[str, np.ndarray], seed: int) -> dict[str, Any]:
    """An image run's personal win rate (own images against the other users' images on the user's own
    hidden images) with its CI and Wilcoxon p; NaN where the run has none (reference tasks)."""
    from evalbench.metrics.preference import cluster_wilcoxon

    p = u.get("personal", np.array([]))
    keep = ~np.isnan(p) if p.size else np.array([], dtype=bool)
    if not keep.any():
        return {
            "personal_win_rate": float("nan"),
            "personal_ci": [float("nan"), float("nan")],
            "personal_wilcoxon_p": float("nan"),
        }
    m, lo, hi = cluster_mean_ci(p[keep], u["user"][keep], seed=seed)
    return {
        "personal_win_rate": m,
        "personal_ci": [lo, hi],
        "personal_wilcoxon_p": cluster_wilcoxon(u["personal_margin"][keep], u["user"][keep]),
    }


def group_key(entry: dict[str, Any]) -> str:
    """Where a system's per-group results are filed: its name, with the encoder when not the first."""
    return f"{entry['name']} [{entry['text_encoder']}]"


def _image_task_report(
    ws: Workspace, run_id: str, rec: dict[str, Any], attributes: list[str], targets, bins: dict[str, Bins]
) -> dict[str, Any]:
    """Image tasks: each system's image preference against the baseline system's, paired on shared units."""
    from evalbench.image_runs import image_units
    from evalbench.metrics.bias import bias_summary

    # 1. the baseline's units and score
    cfg = rec["config"]
    task, split, seed = cfg["task"], cfg["split"], cfg["task"]["seed"]
    units = {m["name"]: image_units(ws, m["run_id"]) for m in cfg["members"]}
    member_cfg = {m["name"]: run_config(ws, m["run_id"]) or {} for m in cfg["members"]}
    coverage = {
        m["name"]: {
            "prompts": member_cfg[m["name"]].get("prompts", "-"),
            **user_coverage(ws, m["run_id"], member_cfg[m["name"]]),
        }
        for m in cfg["members"]
    }
    base_name = task["baseline"]
    b = units[base_name]
    bs, blo, bhi = cluster_mean_ci(b["score"], b["user"], seed=seed) if b["unit"].size else (float("nan"),) * 3
    baseline = {
        "name": base_name,
        "score": bs,
        "score_ci": [blo, bhi],
        "n_users": int(np.unique(b["user"]).size),
        "n_units": int(b["unit"].size),
        "metric": b["metric"],
        **coverage[base_name],
    }
    # 2. every system against the baseline, with its groups
    bidx = {u: i for i, u in enumerate(b["unit"])}
    systems, groups_out = [], {}
    for m in cfg["members"]:
        if m["name"] == base_name:
            continue
        u = units[m["name"]]
        keep = [i for i, unit in enumerate(u["unit"]) if unit in bidx]
        if not keep:
            continue
        x = u["score"][keep]
        y = np.array([b["score"][bidx[u["unit"][i]]] for i in keep])
        users = u["user"][keep]
        pc = paired_comparison(x, y, users, seed=seed)
        score, slo, shi = cluster_mean_ci(x, users, seed=seed)
        entry = {
            "name": m["name"],
            "run_id": m["run_id"],
            "system": m["system"],
            "metric": u["metric"],
            **coverage[m["name"]],
            **_personal_of(u, seed),
            "win_rate": pc.win_rate,
            "win_rate_ci": [pc.win_rate_ci_low, pc.win_rate_ci_high],
            "lift_x100": 100 * pc.mean_difference,
            "lift_x100_ci": [100 * pc.mean_difference_ci_low, 100 * pc.mean_difference_ci_high],
            "wilcoxon_p": pc.wilcoxon_p,
            "sign_test_p": pc.sign_test_p,
            "score": score,
            "score_ci": [slo, shi],
            "n_users": pc.n_clusters,
            "n_units": pc.n_units,
            "copy_rate_32px": float(np.nanmean(u["copy"][keep])),
            "diversity": float(np.nanmean(u["diversity"][keep])),
            "cost": {
                "rewrite_latency_s": float("nan"),
                "rewrites": 0,
                "fallbacks": 0,
                "seconds_per_image": float(np.nanmean(u["latency"][keep])) if u["latency"].size else float("nan"),
            },
        }
        if attributes:
            wins = np.where(np.abs(x - y) <= 1e-9, 0.5, (x > y).astype(float))
            if task.get("kind") == "reference":  # subjects grouped by their DreamBench class
                classes = m.get("classes", {})
                g = {a: np.array([classes.get(s, "unknown") for s in users]) for a in attributes}
                order = {}
            else:
                g, order = _user_groups(ws, split, users, attributes, bins)
            rep = bias_summary(wins, g, targets, cluster_ids=users, seed=seed, min_n=MIN_GROUP)
            entry["bias"] = {"overall": rep.overall, "ipf": None}
            groups_out[m["name"]] = _in_order(rep.attributes, order)
        systems.append(entry)
    # 3. the report, systems ordered by personal win rate
    baseline.update(_personal_of(b, seed))
    systems.sort(
        key=lambda r: (
            -(r["personal_win_rate"] if r["personal_win_rate"] == r["personal_win_rate"] else -1.0),
            -r["win_rate"],
        )
    )
    return {
        **_run_header(task, run_id, rec, split, seed),
        "prompts": "-",
        "kind": task.get("kind"),
        "text_encoder": task["text_encoder"],
        "baseline": baseline,
        "systems": systems,
        "groups": groups_out,
        "attributes": attributes,
        "targets_source": getattr(targets, "source", None) if targets else None,
    }


def compare_runs(ws: Workspace, run_a: str, run_b: str) -> dict[str, Any]:
    """Two bench runs on the same units: paired comparison of their rewritten prompts' scores (A vs B)."""
    a, b = _units(ws, run_a), _units(ws, run_b)
    ia = {u: i for i, u in enumerate(a["unit"])}
    ib = {u: i for i, u in enumerate(b["unit"])}
    # units both scored a rewrite on (the history ceiling has none: one unit per user, no prompt)
    common = sorted(
        u for u in set(ia) & set(ib) if np.isfinite(a["rewritten"][ia[u]]) and np.isfinite(b["rewritten"][ib[u]])
    )
    if not common:
        raise WorkspaceError(
            f"runs {run_a} and {run_b} share no units with rewrites (different splits or prompt sets, "
            "or a history ceiling?)"
        )
    xa = np.array([a["rewritten"][ia[u]] for u in common])
    xb = np.array([b["rewritten"][ib[u]] for u in common])
    users = np.array([u.split("|", 1)[0] for u in common])
    pc = paired_comparison(xa, xb, users)
    names = {r: (run_config(ws, r) or {}).get("system", r) for r in (run_a, run_b)}
    return {
        "a": {"run_id": run_a, "system": names[run_a]},
        "b": {"run_id": run_b, "system": names[run_b]},
        "units": len(common),
        **pc.as_dict(),
    }
