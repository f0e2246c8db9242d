"""Shared machinery of the language-model backends: messages in, guarded rewrites out.

A backend implements :meth:`ChatBackend.complete` (a batch of chat conversations -> reply texts).
This class builds the conversations from the versioned template (:mod:`prompting.messages`), parses the
replies, checks them (:func:`prompting.guard.check_rewrite`), retries the failures once with the next
seed and sampling on (:meth:`RewriteParams.for_retry`), and falls back to the ``template`` rewrite for
whatever still fails, saying why (``RewriteResult.fallback``), so every fallback is counted where the
rewrite is stored.
"""

from __future__ import annotations

from prompting.backends.base import PersonaRequest, RewriterBackend, RewriteRequest, RewriteResult
from prompting.params import RewriteParams


class ChatBackend(RewriterBackend):
    """Base class of chat-model backends.

    Args:
        template: Rewrite template name or YAML path (``rewrite_v2``).
        check_subject: Check subject preservation and persona restatement with the embedded MiniLM
            text encoder (about 4 s to load once); ``False`` keeps only the cheap checks.
    """

    name = "chat"
    #: Replies are one line (the rules say so and :func:`~prompting.messages.parse_reply` keeps the first
    #: non-empty line), so generation stops at a newline instead of spending tokens that are dropped.
    stop: tuple[str, ...] = ("\n",)

    def __init__(self, template: str = "rewrite_v2", check_subject: bool = True):
        from prompting.messages import load_template

        self.template = template
        self.template_version = load_template(template)["version"]
        self.check_subject = check_subject
        self._encoder = None

    # -- to implement ----------------------------------------------------------------------------
    @property
    def model_id(self) -> str:
        raise NotImplementedError

    def complete(self, conversations: list[list[dict[str, str]]], params: RewriteParams) -> list[str]:
        raise NotImplementedError

    # -- shared ------------------------------------------------------------------------------------
    @property
    def model(self) -> str:
        """``<model>|<template version>|<guard version>``: what decides the stored text, so a change to the
        template or the output checks is not answered from the cache or counted as already done."""
        from prompting.guard import GUARD_VERSION

        return f"{self.model_id}|{self.template_version}|{GUARD_VERSION}"

    def _text_encoder(self):
        if self.check_subject and self._encoder is None:
            from workbench.encoders.text import load_text_encoder

            self._encoder = load_text_encoder("minilm")
        return self._encoder

    def _check(self, reqs: list[RewriteRequest], texts: list[str], params: RewriteParams) -> list[list[str]]:
        from prompting.guard import check_rewrites
        from prompting.messages import first_person

        personas = [first_person(r.persona, params.persona_tokens) for r in reqs]
        data = [p + "\n" + "\n".join(r.history[: params.shots]) for p, r in zip(personas, reqs)]
        return check_rewrites(
            [r.prompt for r in reqs],
            texts,
            personas,
            max_words=params.max_words,
            encoder=self._text_encoder(),
            data=data,
        )

    def rewrite_batch(self, requests: list[RewriteRequest], params: RewriteParams | None = None) -> list[RewriteResult]:
        from prompting.messages import negative_messages, parse_reply, rewrite_messages

        params = params or RewriteParams()
        convs = [rewrite_messages(r.persona, r.prompt, r.history, params, self.template) for r in requests]
        texts = [parse_reply(t) for t in self.complete(convs, params)]
        problems = self._check(requests, texts, params)
        retry = [k for k, p in enumerate(problems) if p]
        if retry:
            again = [parse_reply(t) for t in self.complete([convs[k] for k in retry], params.for_retry())]
            for k, t, p in zip(retry, again, self._check([requests[k] for k in retry], again, params)):
                if not p:
                    texts[k], problems[k] = t, []
                else:
                    problems[k] = p
        out: list[RewriteResult | None] = [None] * len(requests)
        failed = [k for k, p in enumerate(problems) if p]
        if failed:
            from prompting.backends.template import TemplateBackend

            fb = TemplateBackend().rewrite_batch([requests[k] for k in failed])
            for k, res in zip(failed, fb):
                out[k] = RewriteResult(res.rewritten, res.negative, fallback="; ".join(problems[k]))
        ok = [k for k in range(len(requests)) if out[k] is None]
        negatives = {}
        if params.negative and ok:
            replies = self.complete([negative_messages(convs[k], texts[k], self.template) for k in ok], params)
            negatives = {k: parse_reply(t)[:300] for k, t in zip(ok, replies)}
        for k in ok:
            out[k] = RewriteResult(texts[k], negatives.get(k, ""))
        return out  # type: ignore[return-value]

    def verbalize_batch(self, requests: list[PersonaRequest]) -> list[str]:
        """Persona text from each card through the model (evidence fenced as data)."""
        from prompting.guard import persona_messages

        params = RewriteParams(max_tokens=120)
        replies = self.complete([persona_messages(r.card, r.item_noun) for r in requests], params)
        out = []
        from prompting.backends.template import TemplateBackend

        fallback = TemplateBackend().verbalize_batch(requests)
        for reply, fb in zip(replies, fallback):
            text = " ".join(reply.split())
            out.append(text if len(text.split()) >= 5 else fb)
        return out
