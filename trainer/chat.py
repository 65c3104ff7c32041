"""Chat messages: the type every prompt and reply travels in, the helpers that build them, and the prompt text
that asks a model for the next assistant turn."""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase as Tokenizer

Messages = list[dict[str, str]]


def as_messages(prompt: str | Messages) -> Messages:
    """A prompt as chat messages: a plain string becomes one user turn."""
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]


def assistant(text: str) -> Messages:
    return [{"role": "assistant", "content": text}]


def render(tokenizer: Tokenizer, messages: Messages, conv_template: str | None = None) -> str:
    """The prompt text that asks the model for the next assistant turn of `messages`: the tokenizer's chat
    template, or a FastChat conversation template by name."""
    if conv_template is None:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    from fastchat.conversation import get_conv_template

    conv = get_conv_template(conv_template)
    for message in messages:
        if message["role"] == "system":
            conv.set_system_message(message["content"])
        else:
            conv.append_message(
                conv.roles[0] if message["role"] == "user" else conv.roles[1], message["content"]
            )
    conv.append_message(conv.roles[1], None)
    return conv.get_prompt()
