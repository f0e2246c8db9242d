"""``openai``: any OpenAI-compatible ``/v1/chat/completions`` server (``vllm serve``, llama.cpp's
server, hosted APIs). Standard library HTTP only; requests run concurrently up to ``concurrency``.

``Rewriter("openai", model="Qwen/Qwen2.5-7B-Instruct", base_url="http://gpu-box:8000/v1")``; the API key
comes from ``api_key`` or the ``OPENAI_API_KEY`` environment variable (local servers need none).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

from prompting.backends.chat import ChatBackend
from prompting.params import RewriteParams


def chat_request(
    model: str, conversation: list[dict[str, str]], params: RewriteParams, stop: tuple[str, ...] = ()
) -> dict:
    """The JSON body of one chat-completions request."""
    return {
        "model": model,
        "messages": conversation,
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "seed": params.seed,
        **({"stop": list(stop)} if stop else {}),
        # not in OpenAI's own API; vLLM and llama.cpp servers honour it, others ignore it
        "repetition_penalty": params.repeat_penalty,
        "repeat_penalty": params.repeat_penalty,
    }


class OpenAIBackend(ChatBackend):
    """A chat-completions HTTP endpoint.

    Args:
        model: Model name the server knows. base_url: Up to and including ``/v1``.
        api_key: Bearer token (default ``$OPENAI_API_KEY``). timeout: Seconds per request.
        concurrency: Requests in flight at once.
    """

    name = "openai"

    def __init__(
        self,
        model: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        concurrency: int = 8,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or "").rstrip("/")
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(
                "base_url: pass the server's URL up to /v1, e.g. http://localhost:8000/v1 (or set OPENAI_BASE_URL)"
            )
        if not model:
            raise ValueError("model: name the model the server serves, e.g. model='Qwen/Qwen2.5-7B-Instruct'")
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self._model, self.api_key = model, api_key or os.environ.get("OPENAI_API_KEY")
        self.timeout, self.concurrency = timeout, concurrency

    @property
    def model_id(self) -> str:
        return self._model

    def _post(self, body: dict) -> str:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(f"{self.base_url}/chat/completions", json.dumps(body).encode(), headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                data = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            raise RuntimeError(f"{self.base_url} answered HTTP {exc.code}: {detail}") from None
        except urllib.error.URLError as exc:
            raise RuntimeError(f"cannot reach {self.base_url}: {exc.reason}") from None
        return data["choices"][0]["message"].get("content") or ""

    def complete(self, conversations, params: RewriteParams) -> list[str]:
        from concurrent.futures import ThreadPoolExecutor

        bodies = [chat_request(self._model, c, params, self.stop) for c in conversations]
        if self.concurrency == 1 or len(bodies) == 1:
            return [self._post(b) for b in bodies]
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(self._post, bodies))
