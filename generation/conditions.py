"""Per-user generation conditions and generation records.

A :class:`UserCondition` is everything that makes one user's image theirs: the persona-rewritten prompt,
a negative prompt, reference images for the IP-Adapter (with weights and a scale, a float or a block
dictionary), an identity reference that must carry a recorded consent, a guidance rule with its scale
and schedule, and a seed. Its :attr:`~UserCondition.condition_id` is a content hash, so the same
condition is stored once and its images are found again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.consent import Consent, IdentityReference

from .adapters.ip_adapter import PRESETS

if TYPE_CHECKING:
    from workbench.store.workspace import Workspace


def _image_digest(image: Any) -> str:
    """Content hash of a reference image (a path's bytes or a PIL image's pixels)."""
    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"reference image {str(image)!r} does not exist")
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    if hasattr(image, "tobytes") and hasattr(image, "size"):
        h = hashlib.sha256(f"{image.mode}{image.size}".encode())
        h.update(image.tobytes())
        return h.hexdigest()[:16]
    raise TypeError(f"a reference image must be a path or a PIL image, got {type(image).__name__}")


def _image_label(image: Any) -> str:
    return str(image) if isinstance(image, (str, Path)) else f"<image {_image_digest(image)}>"


@dataclass(frozen=True)
class Reference:
    """One reference image for the IP-Adapter and its weight among the user's references.

    Several references of one user are averaged in the image-embedding space, weighted by ``weight``.
    """

    image: Any
    weight: float = 1.0

    def __post_init__(self):
        if not (isinstance(self.weight, (int, float)) and self.weight > 0):
            raise ValueError(f"Reference.weight must be > 0, got {self.weight!r}")


@dataclass
class UserCondition:
    """What to draw for one user, and how.

    Attributes:
        user_id: whose image this is.
        prompt: the (persona-rewritten) prompt.
        negative_prompt: what to steer away from; ``None`` is the model's empty negative.
        references: reference images (paths or PIL images, or :class:`Reference`) for the IP-Adapter.
        reference_scale: IP-Adapter strength: a float, a block dictionary in diffusers'
            ``set_ip_adapter_scale`` form, or a preset (``"style"``, ``"layout"``, ``"style+layout"``).
        identity: a face reference for identity injection; refused without a recorded consent.
        guidance: rule name (``cfg``, ``interval``, ``apg``, ``cfgpp``, ``cfg_zero_star``, ``beta_cfg``,
            ``adaptive``, ``pag``) or a rule config dictionary.
        guidance_scale: the rule's scale (``None``: the rule's default).
        schedule: scale schedule (``constant``, ``linear``, ``cosine``, ``beta``) or ``None``.
        guidance_options: extra rule options (``{"start": 0.2, "stop": 0.8}`` for ``interval``).
        seed: initial-noise seed; the same condition and seed give the same image.
        persona_id: provenance: the persona (split, encoder, user) the prompt was rewritten for.
        prompt_id: provenance: the prompt set and id the rewrite came from.
    """

    user_id: str
    prompt: str
    negative_prompt: str | None = None
    references: list[Any] = field(default_factory=list)
    reference_scale: Any = 0.6
    identity: IdentityReference | None = None
    guidance: Any = "cfg"
    guidance_scale: float | None = 7.5
    schedule: Any = None
    guidance_options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    persona_id: str | None = None
    prompt_id: str | None = None

    def __post_init__(self):
        if not isinstance(self.user_id, str) or not self.user_id:
            raise ValueError(f"UserCondition.user_id must be a non-empty string, got {self.user_id!r}")
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise ValueError(f"UserCondition.prompt for user {self.user_id!r} is empty: pass the prompt to draw")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"UserCondition.seed must be an integer >= 0, got {self.seed!r}")
        self.references = [r if isinstance(r, Reference) else Reference(r) for r in (self.references or [])]
        if isinstance(self.reference_scale, str) and self.reference_scale not in PRESETS:
            raise ValueError(
                f"UserCondition.reference_scale {self.reference_scale!r} is not a preset; use a number, a "
                f"block dictionary or one of {', '.join(PRESETS)}"
            )
        if isinstance(self.reference_scale, (int, float)) and self.reference_scale < 0:
            raise ValueError(f"UserCondition.reference_scale must be >= 0, got {self.reference_scale!r}")
        if self.identity is not None and not isinstance(self.identity, IdentityReference):
            self.identity = IdentityReference(self.identity)

    # -- guidance --------------------------------------------------------------------------------------
    def make_rule(self):
        """A fresh guidance-rule instance for this condition (rules keep per-trajectory state)."""
        from .guidance import get_rule

        if isinstance(self.guidance, dict):
            spec = dict(self.guidance)
        else:
            spec = {"rule": str(self.guidance)}
        if self.guidance_scale is not None:
            spec["scale"] = self.guidance_scale
        if self.schedule is not None:
            spec["schedule"] = self.schedule
        spec.update(self.guidance_options)
        return get_rule(spec)

    def check_consent(self) -> None:
        """Refuse an identity reference without a recorded consent (raises ``ConsentError``)."""
        if self.identity is not None:
            self.identity.require_consent(field=f"UserCondition.identity (user {self.user_id})")

    # -- identity of the condition ---------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """JSON-able description: the fields that decide the image (images as content hashes)."""
        rule = self.make_rule()
        ident = None
        if self.identity is not None:
            consent = self.identity.consent
            ident = {
                "image": _image_digest(self.identity.image),
                "scale": self.identity.scale,
                "consent": consent.to_dict() if isinstance(consent, Consent) else None,
            }
        return {
            "user_id": self.user_id,
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "references": [{"image": _image_digest(r.image), "weight": r.weight} for r in self.references],
            "reference_scale": self.reference_scale,
            "identity": ident,
            "guidance": rule.config(),
            "seed": self.seed,
        }

    @property
    def condition_id(self) -> str:
        blob = json.dumps(self.describe(), sort_keys=True, default=str)
        return "c-" + hashlib.sha256(blob.encode()).hexdigest()[:16]

    def reference_labels(self) -> list[str]:
        return [_image_label(r.image) for r in self.references]


@dataclass
class Generation:
    """One generated image and how it was made.

    Attributes:
        condition_id: the :class:`UserCondition` it was drawn for.
        user_id: whose image it is.
        image: the image (PIL).
        image_path: where it was saved (content-addressed), or ``None`` when not saved.
        backend: ``diffusers``, ``diffusers-pipeline`` or another backend name.
        model: the model id or path (``random:sdxl-tiny`` for random weights).
        params: steps, size, guidance config, adapters, scheduler.
        latency_s: wall seconds for this image (its batch's time divided by the batch size).
        peak_mem: peak accelerator memory in bytes during its batch (process RSS high-water mark on CPU).
        unet_evals: UNet evaluations (batch rows) spent on this image.
        identity_similarity: similarity of the output's face to the identity reference (``None``: no
            identity reference, or no face found in the output).
        save_s: wall seconds spent saving it: PNG encoding, watermarking and C2PA signing, the write.
    """

    condition_id: str
    user_id: str
    image: Any
    backend: str
    model: str
    params: dict[str, Any]
    latency_s: float
    peak_mem: float | None
    unet_evals: int
    image_path: str | None = None
    identity_similarity: float | None = None
    generation_id: str | None = None
    save_s: float = 0.0


# -- conditions from a workspace's stored rewrites ---------------------------------------------------------
def conditions_from_rewrites(
    ws: Workspace,
    *,
    split: str | None = None,
    encoder: str = "tfidf",
    rewriter: str = "template",
    rewriter_model: str | None = None,
    prompts: str = "parti36",
    roles: tuple[str, ...] = ("heldout",),
    users: list[str] | None = None,
    max_users: int | None = None,
    prompt_ids: list[str] | None = None,
    max_prompts: int | None = None,
    seed: int = 0,
    **condition: Any,
) -> list[UserCondition]:
    """One condition per (user, prompt) rewrite stored by ``pwb rewrite``.

    Args:
        split, encoder, rewriter, rewriter_model, prompts: which stored rewrites (as ``pwb rewrite`` named
            them; the rewriter model defaults to the only one stored).
        roles: user roles of the split to draw for; ``users`` picks users by id instead.
        max_users, prompt_ids, max_prompts: limit the grid (users in id order, prompts in set order).
        seed: base seed; each (user, prompt) gets ``seed`` (the same noise for every user, so users are
            compared on equal footing).
        **condition: the other :class:`UserCondition` fields (references, guidance, ...), for every condition.
    """
    from workbench.store.prompts import load_prompts, register_prompt_set
    from workbench.store.rewrites import resolve_rewrite_model, rewrites_for_roles
    from workbench.store.splits import resolve_split
    from workbench.store.workspace import WorkspaceError

    split_id = resolve_split(ws, split)
    prompt_set = register_prompt_set(ws, prompts)
    model = resolve_rewrite_model(ws, split_id, encoder, rewriter, prompt_set, rewriter_model, prompts=prompts)
    rows = rewrites_for_roles(ws, split_id, encoder, rewriter, model, prompt_set, None if users else roles)
    order = {pid: i for i, (pid, _) in enumerate(load_prompts(ws, prompt_set))}
    if users:
        wanted = set(users)
        missing = wanted - {r[0] for r in rows}
        if missing:
            raise WorkspaceError(
                f"no {rewriter} rewrites stored for user(s) {', '.join(sorted(missing))} in split "
                f"{split_id!r} (prompt set {prompt_set!r}): run `pwb rewrite` for them first"
            )
        rows = [r for r in rows if r[0] in wanted]
    if prompt_ids:
        unknown = set(prompt_ids) - set(order)
        if unknown:
            raise WorkspaceError(f"prompt id(s) {', '.join(sorted(unknown))} are not in prompt set {prompt_set!r}")
        rows = [r for r in rows if r[1] in set(prompt_ids)]
    keep_prompts = sorted({r[1] for r in rows}, key=lambda p: order.get(p, 1 << 30))
    if max_prompts is not None:
        keep_prompts = keep_prompts[:max_prompts]
    keep_users = sorted({r[0] for r in rows})
    if max_users is not None:
        keep_users = keep_users[:max_users]
    ku, kp = set(keep_users), set(keep_prompts)
    rows = sorted((r for r in rows if r[0] in ku and r[1] in kp), key=lambda r: (r[0], order.get(r[1], 0)))
    if not rows:
        raise WorkspaceError(
            f"no rewrites match in split {split_id!r} (roles {', '.join(roles)}, prompt set {prompt_set!r})"
        )
    negative = condition.pop("negative_prompt", None)
    return [
        UserCondition(
            user_id=u,
            prompt=text,
            negative_prompt=neg or negative,
            seed=seed,
            persona_id=f"{split_id}/{encoder}/{u}",
            prompt_id=f"{prompt_set}/{p}",
            **condition,
        )
        for u, p, text, neg in rows
    ]


def baseline_conditions(
    ws: Workspace, conditions: list[UserCondition], *, negative_prompt: str | None = None
) -> list[UserCondition]:
    """The no-persona twin of each condition: the prompt set's original prompt, same user, seed, references
    and guidance, ``persona_id`` empty. Drawn beside the persona images, they are what the dashboard shows
    as "baseline" and what human labels compare against."""
    from dataclasses import replace

    from workbench.store.prompts import load_prompts

    text: dict[str, str] = {}
    for c in conditions:
        if not c.prompt_id or "/" not in c.prompt_id:
            raise ValueError(
                f"condition for user {c.user_id!r} has no prompt_id (prompt_set/prompt_id): "
                "baselines need to know the original prompt"
            )
        pset = c.prompt_id.rsplit("/", 1)[0]
        if pset not in {k.rsplit("/", 1)[0] for k in text}:
            text.update({f"{pset}/{pid}": p for pid, p in load_prompts(ws, pset)})
    return [replace(c, prompt=text[c.prompt_id], negative_prompt=negative_prompt, persona_id=None) for c in conditions]
