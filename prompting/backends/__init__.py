"""Rewriter backends by name (lazy). LLM backends (embedded, transformers, vllm, openai) land with their issue."""

from persona.registry import Registry

BACKENDS = Registry("rewriter backend", {
    "template": "prompting.backends.template:TemplateBackend",
})
