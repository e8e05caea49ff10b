"""Pre-query prefixes are derived from each model's own chat template."""

from __future__ import annotations

import pytest

from warrior.common.chat_template import (
    Message,
    TemplateError,
    completion_prequery_prefix,
    completion_prompt,
    prequery_prefix,
    render_chat,
)

CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Gemma-style: no system role (it raises), a BOS token, turns named user/model.
GEMMA_LIKE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)


def test_chatml_prefix_ends_where_the_user_begins() -> None:
    prefix = prequery_prefix(CHATML, "You help with Python.")
    assert prefix == "<|im_start|>system\nYou help with Python.<|im_end|>\n<|im_start|>user\n"


def test_template_default_system_prompt_is_kept_without_one() -> None:
    prefix = prequery_prefix(CHATML, None)
    assert prefix.endswith("<|im_start|>user\n")
    assert "You are a helpful AI assistant" in prefix


def test_template_refusing_system_role_folds_it_into_the_user_turn() -> None:
    prefix = prequery_prefix(GEMMA_LIKE, "Ask about Python.", bos_token="<bos>")
    assert prefix == "<bos><start_of_turn>user\nAsk about Python.\n\n"


def test_template_that_drops_the_user_text_cannot_give_a_prefix() -> None:
    with pytest.raises(TemplateError, match="0 times"):
        prequery_prefix("{% for m in messages %}<turn>{% endfor %}", "sys")


def test_broken_template_is_a_template_error() -> None:
    with pytest.raises(TemplateError):
        render_chat("{% for m in messages %}", [Message("user", "hi")])


def test_completion_style_for_base_models() -> None:
    prompt = completion_prompt([Message("user", "Reverse a list in Python?")])
    assert prompt == "### Question\nReverse a list in Python?\n\n### Answer\n"
    assert completion_prequery_prefix("Forum questions.").endswith("### Question\n")
