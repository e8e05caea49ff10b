"""The chat template a run trains with: the tokenizer's own (``auto``) or ChatML (``chatml``).

Instruction-tuned models ship a template, and fine-tuning in that same format keeps what the model
already knows about turns. A base model has none, so ``chatml`` gives it one. When its vocabulary
lacks the two ChatML markers they are added as special tokens and the embedding matrix grows to
fit (``<|im_end|>`` starts from the old end-of-sequence row, ``<|im_start|>`` from the mean row).
``<|im_end|>`` becomes the end-of-sequence token, so generation stops at the end of the assistant
turn. The new token ids are returned: the run must train their embeddings (and output rows), since
the base model never learned them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from tokenizers import AddedToken

if TYPE_CHECKING:  # torch and transformers load with the model, not with this module
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["CHATML_TEMPLATE", "ChatTemplateError", "apply_chat_template_choice"]

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"

# ChatML without a default system prompt. A tokenizer whose BOS is a separate token (Gemma, Llama)
# gets it first, as its own templates would.
CHATML_TEMPLATE = (
    "{%- if bos_token is defined and bos_token and bos_token != '<|im_start|>' %}{{ bos_token }}{% endif %}"
    "{%- for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


class ChatTemplateError(ValueError):
    """The model cannot be trained with the chosen chat template."""


def _set_eos(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, token: str) -> None:
    tokenizer.eos_token = token
    eos_id = _token_id(tokenizer, token)
    model.config.get_text_config().eos_token_id = eos_id
    generation: Any = getattr(model, "generation_config", None)
    if generation is not None:
        generation.eos_token_id = eos_id
    if tokenizer.pad_token is None:
        # Padding is masked out of attention and loss, so the end token can double as padding.
        tokenizer.pad_token = token


def apply_chat_template_choice(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, choice: Literal["auto", "chatml"], source: str
) -> list[int]:
    """Give ``tokenizer`` the template ``choice`` names; returns the ids of tokens added to the vocabulary.

    ``source`` (the model folder) is only used in error messages.
    """
    if choice == "auto":
        if not tokenizer.chat_template:
            raise ChatTemplateError(
                f"{source} has no chat template (a base model?); set 'chat_template: chatml' to train it in ChatML"
            )
        return []
    tokenizer.chat_template = CHATML_TEMPLATE
    vocab = tokenizer.get_vocab()
    missing = [token for token in (IM_START, IM_END) if token not in vocab]
    added: list[int] = []
    if missing:
        tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in missing], special_tokens=True)
        added = [_token_id(tokenizer, t) for t in missing]
        _make_room(model, tokenizer, added)
    _set_eos(model, tokenizer, IM_END)
    return added


def _token_id(tokenizer: PreTrainedTokenizerBase, token: str) -> int:
    found = tokenizer.convert_tokens_to_ids(token)
    if not isinstance(found, int):
        raise ChatTemplateError(f"the tokenizer does not map {token!r} to one id")
    return found


def _make_room(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, new_ids: list[int]) -> None:
    """Grow the embeddings to fit the tokenizer and give the new tokens' rows a starting point.

    ``<|im_end|>`` starts as a copy of the old end-of-sequence row where there is one, so the base
    model's sense of where a text ends carries over to the new end-of-turn token, which then needs
    only a few steps to be learnt. Other new tokens start at the mean row
    (transformers' own ``mean_resizing`` estimates a full covariance matrix, slow for big vocabularies).
    """
    import torch

    embeddings: Any = model.get_input_embeddings()
    old_rows = int(embeddings.weight.shape[0])
    if len(tokenizer) > old_rows:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    old_eos = tokenizer.eos_token_id if isinstance(tokenizer.eos_token_id, int) else None
    end_id = _token_id(tokenizer, IM_END)
    loose: Any = model  # get_output_embeddings is not annotated
    layers: list[Any] = [model.get_input_embeddings(), loose.get_output_embeddings()]
    with torch.no_grad():
        for weight in {id(layer.weight): layer.weight for layer in layers if layer is not None}.values():
            mean = weight[: min(old_rows, weight.shape[0])].float().mean(dim=0).to(weight.dtype)
            for token in new_ids:
                source = old_eos if token == end_id and old_eos is not None and old_eos < old_rows else None
                weight[token] = weight[source].clone() if source is not None else mean
