"""``vllm``: offline batched generation with vLLM's ``LLM.chat`` (GPU machines). vLLM is imported only
when the backend is built; :func:`sampling_kwargs` (the request this backend sends) is plain data and
is tested without vLLM. To serve a model to many workers instead, run ``vllm serve`` and use the
``openai`` backend."""

from __future__ import annotations

from prompting.backends.chat import ChatBackend
from prompting.params import RewriteParams


def sampling_kwargs(params: RewriteParams, stop: tuple[str, ...] = ()) -> dict:
    """Keyword arguments of ``vllm.SamplingParams`` for ``params``."""
    return {
        "temperature": params.temperature,
        "max_tokens": params.max_tokens,
        "seed": params.seed,
        "repetition_penalty": params.repeat_penalty,
        **({"stop": list(stop)} if stop else {}),
    }


class VllmBackend(ChatBackend):
    """vLLM in process.

    Args:
        model: Model id or path. **llm_options: Passed to ``vllm.LLM`` (e.g. ``tensor_parallel_size``,
            ``gpu_memory_utilization``, ``max_model_len``).
    """

    name = "vllm"

    def __init__(
        self, model: str | None = None, template: str = "rewrite_v2", check_subject: bool = True, **llm_options
    ):
        super().__init__(template=template, check_subject=check_subject)
        if not model:
            raise ValueError("model: pass a model id or path, e.g. model='Qwen/Qwen2.5-7B-Instruct'")
        try:
            import vllm  # noqa: F401
        except ImportError:
            raise RuntimeError(
                "the vllm backend needs vLLM on a CUDA machine: `pip install vllm` "
                "(or run `vllm serve` elsewhere and use the openai backend)"
            ) from None
        self._model_name, self.llm_options = model, llm_options
        self._llm = None

    @property
    def model_id(self) -> str:
        return self._model_name.rstrip("/").split("/")[-1]

    def complete(self, conversations, params: RewriteParams) -> list[str]:
        from vllm import LLM, SamplingParams

        if self._llm is None:
            self._llm = LLM(model=self._model_name, **self.llm_options)
        outputs = self._llm.chat(conversations, SamplingParams(**sampling_kwargs(params, self.stop)), use_tqdm=False)
        return [o.outputs[0].text for o in outputs]
