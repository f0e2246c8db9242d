"""Rewriter backends by name (lazy: a backend's heavy imports happen when it is built).

``template`` (deterministic baseline), ``embedded`` (llama.cpp GGUF in process, SmolLM2 by default),
``transformers`` (any causal LM by id or path), ``vllm`` (GPU, batched), ``openai`` (any
OpenAI-compatible chat-completions server, e.g. ``vllm serve``).
"""

from workbench.registry import Registry

BACKENDS = Registry(
    "rewriter backend",
    {
        "template": "prompting.backends.template:TemplateBackend",
        "embedded": "prompting.backends.embedded:EmbeddedBackend",
        "transformers": "prompting.backends.hf:TransformersBackend",
        "vllm": "prompting.backends.vllm:VllmBackend",
        "openai": "prompting.backends.openai:OpenAIBackend",
    },
)
