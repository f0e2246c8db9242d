"""``transformers``: any causal LM by Hugging Face id or local path, prompted with its chat template,
generated in padded batches. ``Rewriter("transformers", model="Qwen/Qwen2.5-1.5B-Instruct")``."""

from __future__ import annotations

from prompting.backends.chat import ChatBackend
from prompting.params import RewriteParams


class TransformersBackend(ChatBackend):
    """A causal LM through ``transformers``.

    Args:
        model: Model id or path (required: nothing is assumed). batch_size: Conversations per ``generate``.
        device: ``cpu``, ``cuda``... (default: CUDA when available). dtype: torch dtype name (default
            float32 on CPU, bfloat16 on CUDA).
    """

    name = "transformers"

    def __init__(
        self,
        model: str | None = None,
        batch_size: int = 8,
        device: str | None = None,
        dtype: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not model:
            raise ValueError("model: pass a causal LM id or path, e.g. model='Qwen/Qwen2.5-1.5B-Instruct'")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self._model_name, self.batch_size, self.device, self.dtype = model, batch_size, device, dtype
        self._lm = self._tok = None

    @property
    def model_id(self) -> str:
        return self._model_name.rstrip("/").split("/")[-1] if "/" in self._model_name else self._model_name

    def load(self):
        if self._lm is None:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            dtype = (
                getattr(torch, self.dtype) if self.dtype else (torch.bfloat16 if device == "cuda" else torch.float32)
            )
            try:
                tok = AutoTokenizer.from_pretrained(self._model_name)
                lm = AutoModelForCausalLM.from_pretrained(self._model_name, dtype=dtype).to(device).eval()
            except OSError as exc:
                raise RuntimeError(
                    f"cannot load model {self._model_name!r}: {str(exc).splitlines()[0]} "
                    "(pass a local path on machines without hub access)"
                ) from None
            if tok.chat_template is None:
                raise ValueError(
                    f"model {self._model_name!r} has no chat template; use an instruct model "
                    "or set tokenizer.chat_template"
                )
            tok.padding_side = "left"
            if tok.pad_token is None:
                tok.pad_token = tok.eos_token

            # generate(stop_strings=...) needs the stop strings in the vocabulary (tiny test vocabularies lack "\n")
            def round_trips(s):
                ids = tok.encode(s, add_special_tokens=False)
                return bool(ids) and tok.unk_token_id not in ids and tok.decode(ids) == s

            self._stop = [s for s in self.stop if round_trips(s)]
            self._lm, self._tok, self._device = lm, tok, device
        return self._lm, self._tok

    def complete(self, conversations, params: RewriteParams) -> list[str]:
        import torch

        lm, tok = self.load()
        out = []
        for start in range(0, len(conversations), self.batch_size):
            chunk = conversations[start : start + self.batch_size]
            texts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chunk]
            enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            enc = {k: enc[k].to(self._device) for k in ("input_ids", "attention_mask")}  # no token_type_ids
            torch.manual_seed(params.seed)
            sample = params.temperature > 0
            with torch.no_grad():
                gen = lm.generate(
                    **enc,
                    max_new_tokens=params.max_tokens,
                    do_sample=sample,
                    temperature=params.temperature if sample else None,
                    top_p=None,
                    top_k=None,
                    repetition_penalty=params.repeat_penalty,
                    pad_token_id=tok.pad_token_id,
                    stop_strings=self._stop or None,
                    tokenizer=tok,
                )
            new = gen[:, enc["input_ids"].shape[1] :]
            out.extend(tok.batch_decode(new, skip_special_tokens=True))
        return out
