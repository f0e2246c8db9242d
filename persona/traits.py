"""What sets a user apart from the population: distinctive traits and an open cue vocabulary.

Summing a user's tag weights ranks the population's commonest tags first (on MovieLens, *Drama* and
*Comedy* top almost every card), so two users with different tastes get the same persona. Here each tag
is instead scored by the **weighted log-odds ratio with an informative Dirichlet prior** (Monroe,
Colaresi and Quinn 2008, "Fightin' Words", *Political Analysis* 16(4), section 3.5) of the user's
evidence against the population's:

.. math::
    \\delta_t = \\log\\frac{y^u_t + \\alpha_t}{n^u + \\alpha_0 - y^u_t - \\alpha_t}
              - \\log\\frac{y^p_t + \\alpha_t}{n^p + \\alpha_0 - y^p_t - \\alpha_t},\\qquad
    \\sigma^2_t \\approx \\frac{1}{y^u_t + \\alpha_t} + \\frac{1}{y^p_t + \\alpha_t},\\qquad
    z_t = \\delta_t / \\sigma_t

with :math:`y^u_t` the user's evidence mass on tag :math:`t` (attention weights rescaled to item counts),
:math:`y^p_t` the population's (every user's visible likes), and the prior :math:`\\alpha_t = \\alpha_0\\,
y^p_t / n^p` (``prior_strength`` :math:`\\alpha_0`). The z-score shrinks users with little evidence
towards zero, so one odd item does not make a trait. Every interest trait keeps both numbers: ``share``
(the tag's fraction of the user's evidence mass) and ``distinctiveness`` (:math:`z_t`); the mode
(``traits="distinctive"`` or ``"share"``) decides which ranks the card and leads the persona text.

Open cues come from the items themselves rather than a fixed genre list:

* **keyphrases**: TF-IDF 1-2-grams of the items' titles, texts and tags (scikit-learn's
  ``TfidfVectorizer`` over the catalogue); a user's profile is the evidence-weighted mean of their liked
  items' rows, the population's the mean over every visible like, and a phrase's score is the difference,
  so phrases everyone's items share score nothing;
* **titles**: the most telling liked items of the evidence, named (``in the spirit of ...``).

The evidence weights these start from are the encoder's (attention for ``gat``) times a recency prior
(:func:`recency_prior`), since what a user liked lately says more about what they like next.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

from persona.evidence import merge_ranked, own_words
from workbench.scrub import PLACEHOLDER, scrub_terms, scrub_text

TRAIT_MODES = ("distinctive", "share")
DEFAULT_PRIOR = 10.0
_PLACEHOLDER_TITLE = re.compile(r"^[A-Za-z]+ [A-Za-z]?\d+$")


@lru_cache(maxsize=1)
def load_cues() -> dict[str, str]:
    """Visual cues for known tags (``persona/cues.yaml``, matched case-insensitively): the closed part of
    the cue vocabulary, beside the open keyphrases and titles."""
    import yaml

    text = resources.files("persona").joinpath("cues.yaml").read_text(encoding="utf-8")
    return {str(k).lower(): str(v) for k, v in (yaml.safe_load(text) or {}).items()}


_WORD = re.compile(r"[a-z][a-z'-]{2,}")
_STOP = frozenset(
    {
        "the",
        "and",
        "for",
        "with",
        "from",
        "that",
        "this",
        "are",
        "was",
        "you",
        "your",
        "how",
        "what",
        "can",
        "not",
        "but",
        "all",
        "its",
        "into",
        "about",
        "when",
        "why",
        "which",
        "who",
        "will",
        "has",
        "have",
    }
)


def item_terms(context, item_id: str) -> tuple[str, ...]:
    """The terms a trait can be: the item's tags, or the words of its title where the dataset has no tags;
    scrubbed of personal identifiers first (:func:`workbench.scrub.scrub_terms`: a tag that is an identifier,
    such as ``@carol99``, is no term at all)."""
    use_tags = context.cache.get("use_tags")
    if use_tags is None:
        use_tags = context.cache["use_tags"] = any(it.tags for it in context.items.values())
    item = context.items[item_id]
    if use_tags:
        return scrub_terms(tuple(item.tags))
    title = PLACEHOLDER.sub(" ", scrub_text(item.title or ""))
    return tuple(w for w in _WORD.findall(title.lower()) if w not in _STOP)


def check_mode(traits: str) -> str:
    if traits not in TRAIT_MODES:
        raise ValueError(f"traits must be one of {', '.join(TRAIT_MODES)}, got {traits!r}")
    return traits


def log_odds_z(
    user: dict[str, float], population: dict[str, float], prior_strength: float = DEFAULT_PRIOR
) -> dict[str, float]:
    """Monroe et al.'s z-scored log-odds of each tag in ``user`` against ``population`` (informative
    Dirichlet prior of total mass ``prior_strength`` spread like the population's counts).

    >>> z = log_odds_z({"Noir": 3, "Drama": 3}, {"Noir": 20, "Drama": 400, "Comedy": 300})
    >>> z["Noir"] > 0 > z["Drama"], round(z["Noir"], 2)
    (True, 2.79)
    """
    if prior_strength <= 0:
        raise ValueError(f"prior_strength must be > 0, got {prior_strength}")
    n_pop = float(sum(population.values()))
    n_user = float(sum(user.values()))
    out = {}
    for t, y_user in user.items():
        y_pop = float(population.get(t, 0.0))
        # a tag the population never shows still gets a small prior mass (one pseudo-count's share)
        alpha = prior_strength * max(y_pop, 1.0) / max(n_pop, 1.0)
        delta = math.log((y_user + alpha) / max(n_user + prior_strength - y_user - alpha, 1e-9)) - math.log(
            (y_pop + alpha) / max(n_pop + prior_strength - y_pop - alpha, 1e-9)
        )
        out[t] = delta / math.sqrt(1.0 / (y_user + alpha) + 1.0 / (y_pop + alpha))
    return out


@dataclass
class Population:
    """What the population's visible likes look like: tag counts and the mean keyphrase profile.

    Built once per split context (:func:`population_of`) from every user's visible liked interactions, so
    a cold-start user's card is scored against the same population as everyone else's.
    """

    tag_counts: dict[str, float]
    item_likes: dict[str, int]
    phrase_index: dict[str, int] = field(default_factory=dict)
    vectorizer: Any = None
    matrix: Any = None  # items x phrases (rows in ``phrase_index`` order), L2-normalised TF-IDF
    phrase_mean: np.ndarray | None = None
    phrases: list[str] = field(default_factory=list)
    tag_words: frozenset[str] = frozenset()  # words of any tag: a phrase made only of them repeats a trait
    common_words: frozenset[str] = frozenset()  # words in most items' text: a phrase holding one says little
    placeholder_titles: bool = False  # titles are ids ("image 162"): naming them says nothing


def _item_document(item) -> str:
    """An item's title and text (scrubbed), each word once: the tags are traits of their own."""
    return PLACEHOLDER.sub(" ", scrub_text(f"{item.title or ''}. {item.text or ''}"))


def _words_document(text: str) -> str:
    """A user's own words as :func:`_item_document` has an item's text: scrubbed, placeholders dropped."""
    return PLACEHOLDER.sub(" ", scrub_text(text))


def _liked_words(context) -> list[tuple[str, str]]:
    """``(item_id, text)`` for each user's liked visible item on which they wrote something of their own
    (:func:`persona.evidence.own_words`), the texts joined; in user order."""
    out = []
    for u in sorted(context.visible):
        said = own_words(context, u)
        if said:
            sign = item_signs(context, u)
            out += [(i, "; ".join(said[i])) for i in said if sign.get(i) == 1.0]  # counted in the likes
    return out


def _with_words(pop: Population, context, said: list[tuple[str, str]], weights: np.ndarray) -> np.ndarray:
    """How much a weighted sum of item rows changes when each ``said`` item's row is that of the item's
    document with the user's words added (``weights``: one per ``said`` entry)."""
    idx = [pop.phrase_index[i] for i, _ in said]
    rows = pop.vectorizer.transform([f"{_item_document(context.items[i])} {_words_document(t)}" for i, t in said])
    return np.asarray(rows.T @ weights).ravel() - np.asarray(pop.matrix[idx].T @ weights).ravel()


def population_of(context) -> Population:
    """The split's :class:`Population` (computed on first use, then kept on the context)."""
    cached = context.cache.get("population")
    if cached is not None:
        return cached
    likes: dict[str, int] = defaultdict(int)
    for xs in context.visible.values():
        for x in xs:
            if context.is_liked(x) and x.item_id in context.items:
                likes[x.item_id] += 1
    pop = population_from(context, dict(likes), _liked_words(context))
    context.cache["population"] = pop
    return pop


def population_from(context, likes: dict[str, int], said: list[tuple[str, str]]) -> Population:
    """The :class:`Population` of a split whose visible likes are ``likes`` (``{item_id: liked interactions}``)
    and whose liked items with their likers' own words are ``said`` (:func:`_liked_words`, in its order); only
    ``context.items`` (and its meta) is read, so a split read as columns builds the same population without a
    record per interaction."""
    tags: dict[str, float] = defaultdict(float)
    for item_id, n in likes.items():
        for t in item_terms(context, item_id):
            tags[t] += float(n)  # one per liked interaction: counts, exact as floats
    pop = Population(dict(tags), dict(likes))
    pop.tag_words = frozenset(
        w
        for it in context.items.values()
        for t in scrub_terms(tuple(it.tags))
        for w in re.findall(r"[a-z']+", t.lower())
    )
    titles = [it.title for it in context.items.values() if it.title]
    pop.placeholder_titles = bool(titles) and sum(bool(_PLACEHOLDER_TITLE.match(t)) for t in titles) >= 0.5 * len(
        titles
    )
    ids = sorted(context.items)
    if len(ids) >= 2:
        from sklearn.feature_extraction.text import TfidfVectorizer

        vec = TfidfVectorizer(
            ngram_range=(1, 2),
            stop_words="english",
            min_df=2,
            max_df=0.5,
            sublinear_tf=True,
            token_pattern=r"(?u)\b[A-Za-z][A-Za-z'-]{2,}\b",
            dtype=np.float32,
        )
        docs = [_item_document(context.items[i]) for i in ids]
        try:  # the users' own words join the vocabulary (a tag a user wrote can be a keyphrase)
            m = vec.fit_transform(docs + [_words_document(t) for _, t in said])[: len(ids)]
        except ValueError:  # every term pruned (a tiny or uniform catalogue): no keyphrases
            m = None
        if m is not None:
            from sklearn.feature_extraction.text import CountVectorizer

            cv = CountVectorizer(binary=True, stop_words="english", token_pattern=vec.token_pattern)
            df = np.asarray(cv.fit_transform(docs).sum(axis=0)).ravel()
            pop.common_words = frozenset(w for w, d in zip(cv.get_feature_names_out(), df) if d > 0.5 * len(ids))
            pop.vectorizer, pop.matrix = vec, m.tocsr()
            pop.phrase_index = {i: k for k, i in enumerate(ids)}
            pop.phrases = vec.get_feature_names_out().tolist()
            w = np.zeros(len(ids), dtype=np.float32)
            for i, n in likes.items():
                w[pop.phrase_index[i]] = n
            total = np.asarray(pop.matrix.T @ w).ravel()
            if said:  # a like with the liker's words counts as the item with those words
                total += _with_words(pop, context, said, np.ones(len(said), dtype=np.float32))
            pop.phrase_mean = (total / max(float(w.sum()), 1.0)).astype(np.float32)
    return pop


def item_signs(context, user_id: str) -> dict[str, float]:
    """How the user took each visible item: ``1`` liked, ``-1`` disliked, ``0.25`` neither, from their latest
    interaction with it that has a value (a rating, a score), else their latest: a tag they wrote on a film
    they rated 1 leaves it disliked."""
    sign: dict[str, float] = {}
    valued: set[str] = set()
    for x in context.visible.get(user_id, []):
        if x.value is None and x.item_id in valued:
            continue
        if x.value is not None:
            valued.add(x.item_id)
        sign[x.item_id] = -1.0 if context.is_disliked(x) else (1.0 if context.is_liked(x) else 0.25)
    return sign


def evidence_mass(
    ranked: list[tuple[str, float]], context, user_id: str
) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """``(liked item mass, liked tag mass, disliked tag mass)``: evidence weights rescaled so that the
    liked (and, separately, the disliked) items' weights sum to how many such items there are, i.e. to
    counts, as the log-odds expect. Neutral items count a quarter. An item ranked more than once counts once,
    with the sum of its weights (:func:`persona.evidence.merge_ranked`)."""
    ranked = merge_ranked(ranked)
    sign = item_signs(context, user_id)
    pos = [(i, w * sign.get(i, 1.0)) for i, w in ranked if sign.get(i, 1.0) > 0 and i in context.items]
    neg = [(i, w) for i, w in ranked if sign.get(i, 1.0) < 0 and i in context.items]

    def rescale(pairs):
        total = sum(max(w, 0.0) for _, w in pairs)
        if total <= 0:
            return {i: 1.0 for i, _ in pairs}
        return {i: max(w, 0.0) * len(pairs) / total for i, w in pairs}

    items_pos, items_neg = rescale(pos), rescale(neg)
    liked_tags: dict[str, float] = defaultdict(float)
    disliked_tags: dict[str, float] = defaultdict(float)
    for i, w in items_pos.items():
        for t in item_terms(context, i):
            liked_tags[t] += w
    for i, w in items_neg.items():
        for t in item_terms(context, i):
            disliked_tags[t] += w
    return items_pos, dict(liked_tags), dict(disliked_tags)


def interest_traits(
    ranked: list[tuple[str, float]],
    context,
    user_id: str,
    *,
    mode: str = "distinctive",
    n_traits: int = 4,
    n_dislikes: int = 2,
    population: Population | None = None,
    prior_strength: float = DEFAULT_PRIOR,
) -> list[dict[str, Any]]:
    """Liked then disliked interest traits, each ``{"name", "weight", "kind": "interest", "share",
    "distinctiveness"}``, ranked by ``mode``: ``distinctive`` (log-odds z against the population; only
    tags the user shows more than the population) or ``share`` (the tag's share of the user's evidence)."""
    check_mode(mode)
    pop = population or population_of(context)
    _, liked, disliked = evidence_mass(ranked, context, user_id)
    z_like = log_odds_z(liked, pop.tag_counts, prior_strength) if liked else {}
    z_dis = log_odds_z(disliked, pop.tag_counts, prior_strength) if disliked else {}
    total_like, total_dis = sum(liked.values()) or 1.0, sum(disliked.values()) or 1.0
    out: list[dict[str, Any]] = []

    def entry(tag, weight, share, z):
        return {
            "name": tag,
            "weight": round(weight, 4),
            "kind": "interest",
            "share": round(share, 4),
            "distinctiveness": round(z, 3),
        }

    if mode == "share":
        # the tag's net share: liked mass minus disliked mass, over the liked mass (as the old cards)
        net = {t: liked.get(t, 0.0) - disliked.get(t, 0.0) for t in set(liked) | set(disliked)}
        likes = sorted((t for t, v in net.items() if v > 0), key=lambda t: (-net[t], t))[:n_traits]
        dislikes = sorted((t for t, v in net.items() if v < 0), key=lambda t: (net[t], t))[:n_dislikes]
        out += [entry(t, net[t] / total_like, liked.get(t, 0.0) / total_like, z_like.get(t, 0.0)) for t in likes]
        out += [entry(t, net[t] / total_dis, disliked.get(t, 0.0) / total_dis, -z_dis.get(t, 0.0)) for t in dislikes]
        return out
    likes = sorted((t for t, z in z_like.items() if z > 0), key=lambda t: (-z_like[t], t))[:n_traits]
    taken = set(likes)
    dislikes = sorted(
        (t for t, z in z_dis.items() if z > 0 and t not in taken and z > z_like.get(t, 0.0)),
        key=lambda t: (-z_dis[t], t),
    )[:n_dislikes]
    out += [entry(t, z_like[t], liked[t] / total_like, z_like[t]) for t in likes]
    out += [entry(t, -z_dis[t], disliked[t] / total_dis, -z_dis[t]) for t in dislikes]
    return out


def keyphrases(
    ranked: list[tuple[str, float]],
    context,
    user_id: str,
    *,
    k: int = 4,
    population: Population | None = None,
    exclude: tuple[str, ...] = (),
) -> list[tuple[str, float]]:
    """The ``k`` phrases of the user's liked evidence that most set it apart from the population's likes
    (see the module docstring), best first; a phrase inside a better one (``pool`` in ``stake pool``) and
    the ``exclude`` names (the interest traits) are skipped. An item the user wrote on (a tag, a review:
    :func:`persona.evidence.own_words`) enters the profile with those words added to its text."""
    pop = population or population_of(context)
    if pop.matrix is None or k < 1:
        return []
    items, _, _ = evidence_mass(ranked, context, user_id)
    rows = [(pop.phrase_index[i], w) for i, w in items.items() if i in pop.phrase_index and w > 0]
    if not rows:
        return []
    idx = np.array([r for r, _ in rows])
    w = np.array([x for _, x in rows], dtype=np.float32)
    profile = np.asarray(pop.matrix[idx].T @ w).ravel()
    words = own_words(context, user_id)
    said = [(i, "; ".join(words[i])) for i, x in items.items() if i in words and i in pop.phrase_index and x > 0]
    if said:
        profile += _with_words(pop, context, said, np.array([items[i] for i, _ in said], dtype=np.float32))
    profile /= float(w.sum())
    score = profile - pop.phrase_mean
    order = np.argsort(-score, kind="stable")
    skip = {e.lower() for e in exclude}
    tag_words = pop.tag_words
    out: list[tuple[str, float]] = []
    for j in order:
        if score[j] <= 0 or len(out) >= k:
            break
        phrase = pop.phrases[j]
        words = phrase.split()
        if (
            phrase in skip
            or all(w in tag_words for w in words)
            or any(w in pop.common_words for w in words)
            or any(phrase in p or p in phrase for p, _ in out)
        ):
            continue
        out.append((phrase, float(score[j])))
    return out


def telling_items(
    ranked: list[tuple[str, float]],
    context,
    user_id: str,
    *,
    k: int = 3,
    population: Population | None = None,
    prior_strength: float = DEFAULT_PRIOR,
) -> list[tuple[str, float]]:
    """The ``k`` liked evidence items that best stand for the user: evidence weight times how distinctive
    the item's tags are for this user (``1 + mean positive z``). Tag items (an item whose title is one of
    its tags) are skipped: the traits name them already; so is every item of a catalogue whose titles are
    placeholders (``image 162``)."""
    pop = population or population_of(context)
    if pop.placeholder_titles:
        return []
    items, liked, _ = evidence_mass(ranked, context, user_id)
    z = log_odds_z(liked, pop.tag_counts, prior_strength) if liked else {}
    scored = []
    for i, w in items.items():
        it = context.items[i]
        if not it.title or it.title in it.tags:
            continue
        zs = [max(z.get(t, 0.0), 0.0) for t in item_terms(context, i)]
        scored.append((w * (1.0 + (sum(zs) / len(zs) if zs else 0.0)), i))
    scored.sort(key=lambda t: (-t[0], t[1]))
    return [(i, s) for s, i in scored[:k]]


def recency_prior(ranked: list[tuple[str, float]], interactions, half_life: float | None) -> list[tuple[str, float]]:
    """Evidence weights times :math:`0.5^{a_i / h}`, :math:`a_i` the number of the user's visible
    interactions newer than item :math:`i` (its latest one), renormalised to sum 1 and re-ranked; ``None``
    leaves ``ranked`` as it is. Tastes drift: on MovieLens-100k the titles of a user's latest likes say
    more about what they like next than the titles their attention weights rank first (see the README's
    personal-signal section), so the cards weigh both. Without timestamps every age is 0."""
    if half_life is None:
        return ranked
    if half_life <= 0:
        raise ValueError(f"recency_half_life must be > 0 (interactions) or None, got {half_life}")
    order = sorted(
        interactions, key=lambda x: (-(x.timestamp if x.timestamp is not None else float("-inf")), x.item_id)
    )
    age: dict[str, int] = {}
    for r, x in enumerate(order):
        age.setdefault(x.item_id, r if x.timestamp is not None else 0)
    out = [(i, w * 0.5 ** (age.get(i, 0) / half_life)) for i, w in ranked]
    total = sum(w for _, w in out)
    if total <= 0:
        return ranked
    return sorted(((i, w / total) for i, w in out), key=lambda t: (-t[1], t[0]))
