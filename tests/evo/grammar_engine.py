"""llama.cpp's own grammar engine, driven token by token: does a GBNF grammar parse, and is a text a sentence?

Loads only the embedded model's vocabulary (no weights) and runs ``llama_sampler_init_grammar`` /
``llama_sampler_apply`` / ``llama_sampler_accept`` from llama-cpp-python's bindings: the code path the server
uses to constrain sampling, so a text it accepts is one the constrained server can produce."""

from __future__ import annotations

import ctypes
import math

import llama_cpp

from trainer.models import smollm2_gguf_path


class GrammarEngine:
    def __init__(self) -> None:
        self.llm = llama_cpp.Llama(model_path=str(smollm2_gguf_path()), vocab_only=True, verbose=False)
        self.vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self.eos = self.llm.token_eos()

    def close(self) -> None:
        self.llm.close()

    def parses(self, grammar: str) -> bool:
        sampler = llama_cpp.llama_sampler_init_grammar(self.vocab, grammar.encode(), b"root")
        if not sampler:
            return False
        llama_cpp.llama_sampler_free(sampler)
        return True

    def _allowed(self, sampler, token: int) -> bool:
        data = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(token, 0.0, 0.0))
        array = llama_cpp.llama_token_data_array(data=data, size=1, selected=-1, sorted=False)
        llama_cpp.llama_sampler_apply(sampler, ctypes.byref(array))
        return not math.isinf(data[0].logit)

    def accepts(self, grammar: str, text: str) -> bool:
        """Whether ``text``, token by token, is allowed by ``grammar`` and ends where the grammar may end."""
        sampler = llama_cpp.llama_sampler_init_grammar(self.vocab, grammar.encode(), b"root")
        if not sampler:
            raise ValueError("the grammar does not parse")
        try:
            for token in self.llm.tokenize(text.encode(), add_bos=False, special=False):
                if not self._allowed(sampler, token):
                    return False
                llama_cpp.llama_sampler_accept(sampler, token)
            return self._allowed(sampler, self.eos)
        finally:
            llama_cpp.llama_sampler_free(sampler)
