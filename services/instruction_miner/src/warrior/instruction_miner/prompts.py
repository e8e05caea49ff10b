"""The mining system prompt, after the authors' code prompt, adapted for small models."""

from __future__ import annotations


def mining_system_prompt(language: str) -> str:
    """System prompt placed before the pre-query prefix of a chat model.

    The reference scripts say: an assistant giving step-by-step help on {language} coding problems,
    users asking a wide range of questions. Small code models otherwise write code in the user's
    turn, so it also asks for the request in plain English.
    """
    return (
        f"You are an AI assistant designed to provide helpful, step-by-step guidance on {language} coding "
        f"problems. The user will ask you a wide range of {language} coding questions. Users write their "
        "request in plain English: a clear task or question, sometimes with a short snippet of their code."
    )


def completion_system_prompt(language: str) -> str:
    """The header of the completion-style transcript for a base model without a chat template."""
    return (
        f"The following are {language} programming questions that users asked on a coding help forum. "
        "Each question states a clear task in plain English."
    )
