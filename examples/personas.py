"""Persona miner tour: GATv2 personas, a SQL cohort, archetypes and a cold-start user (no downloads).

Run: python examples/personas.py [workspace.duckdb]
"""

import sys

from evalbench.flows.coldstart import load_coldstart, read_coldstart
from persona.cohorts import archetypes, cohort_persona, planted_recovery
from persona.data.splits import make_split
from persona.data.synthetic import generate_community
from persona.mining import get_persona, mine_personas
from workbench.records import Interaction
from workbench.store import Workspace
from workbench.store.datasets import list_datasets, write_dataset
from workbench.store.splits import visible_interactions

db = sys.argv[1] if len(sys.argv) > 1 else "personas.duckdb"
settings = {"epochs": 8, "hidden": 32}  # small and quick; the defaults are tuned for real data
with Workspace(db) as ws:
    if not any(d["dataset_id"] == "synthetic-s0" for d in list_datasets(ws)):
        write_dataset(ws, generate_community(n_users=300, n_items=200, seed=0))
    split = make_split(ws, "synthetic-s0")["split"]
    mined = mine_personas(ws, split, encoder="gat", encoder_kwargs=settings)
    personas = mined["encoder"]  # the persona set: the encoder and its options, "gat[epochs=8,hidden=32]"
    card = get_persona(ws, "u1", split, encoder=personas)
    print("persona of u1:", card.summary)
    print("top evidence:", ", ".join(f"{e.snippet} ({e.weight:.2f})" for e in card.evidence[:3]))

    group = cohort_persona(ws, "heavy", "n_visible >= 40", encoder=personas)
    print(f"cohort 'heavy' ({group['members']} users):", group["card"].summary)
    for a in archetypes(ws, 3, encoder=personas):
        print(f"{a['cohort']} ({a['members']} users):", a["card"].summary)
    rec = planted_recovery(ws, encoder=personas)
    print(f"planted personas recovered: NMI {rec['nmi']:.2f}, ARI {rec['ari']:.2f}")

    # A new user: one forward pass of the trained model over u1's first three items, no retraining.
    source = read_coldstart(ws, split, "gat", settings)  # the catalogue, the population, the model's files
    likes = [x.item_id for x in visible_interactions(ws, split, ["u1"])[:3]]

model = load_coldstart(source)  # what `pwb serve` loads at start-up (needs no workspace)
new = model.maker.persona(
    "new-user", [Interaction(user_id="new-user", item_id=i, kind="rating", value=5.0) for i in likes]
)
print("cold-start persona:", new.summary)
first = model.survey.questions[0]
answer = model.maker.from_survey("survey-user", model.survey, {first.qid: [first.options[0].label]})
print(f"survey answer {first.options[0].label!r} ->", answer.summary)
