"""Cold start from the item states mining keeps beside its checkpoint, against the full load of the split.

A server needs, for a new user, the model, the items' states, the catalogue and the population: loading those
alone (no user, no interaction of the split) must give exactly the personas and the survey the full load gives,
and a checkpoint trained again since must not be answered by stale states.
"""

from __future__ import annotations

from dataclasses import replace

from evalbench.flows.coldstart import ColdStartSource, load_coldstart, read_coldstart
from persona.data.splits import SplitParams, make_split
from persona.data.synthetic import generate_community
from persona.mining import load_context, mine_personas
from persona.models.gat import items_path
from workbench.records import Interaction
from workbench.store import Workspace
from workbench.store.datasets import write_dataset


def test_new_users_get_the_same_personas_from_the_kept_item_states(tmp_path):
    with Workspace(tmp_path / "w.duckdb") as ws:
        write_dataset(ws, generate_community(200, 90, seed=12, interactions_per_user=20))
        split = make_split(ws, "synthetic-s12", SplitParams(seed=0))["split"]
        out = mine_personas(ws, split, "gat", encoder_kwargs={"max_steps": 6})
        lean = read_coldstart(ws, split, "gat", {"max_steps": 6})
        full = replace(lean, context=load_context(ws, split))
    assert (tmp_path / "models").glob("*.items.pt") and out["checkpoint"] == str(lean.checkpoint)
    assert lean.context.users == {} and lean.context.visible == {}  # the catalogue and population alone
    a, b = load_coldstart(lean), load_coldstart(full)
    assert a.survey == b.survey and a.items == b.items
    items = sorted(a.items)
    for k in range(6):
        xs = [Interaction(f"new{k}", i, "rating", float(1 + (k + j) % 5)) for j, i in enumerate(items[k : k + 4 + k])]
        ca = a.maker.persona(f"new{k}", xs, {"gender": "female"})
        cb = b.maker.persona(f"new{k}", xs, {"gender": "female"})
        assert (ca.summary, ca.traits, ca.evidence, ca.embedding) == (cb.summary, cb.traits, cb.evidence, cb.embedding)


def test_states_of_another_model_are_not_used(tmp_path):
    import torch

    with Workspace(tmp_path / "w.duckdb") as ws:
        write_dataset(ws, generate_community(120, 60, seed=13, interactions_per_user=15))
        split = make_split(ws, "synthetic-s13", SplitParams(seed=0))["split"]
        out = mine_personas(ws, split, "gat", encoder_kwargs={"max_steps": 3})
        assert read_coldstart(ws, split, "gat", {"max_steps": 3}).context.users == {}
        blob = torch.load(items_path(out["checkpoint"]), weights_only=False)
        blob["fingerprint"] = "states of other weights"
        torch.save(blob, items_path(out["checkpoint"]))
        source = read_coldstart(ws, split, "gat", {"max_steps": 3})
    assert isinstance(source, ColdStartSource) and source.context.users  # the full load instead
