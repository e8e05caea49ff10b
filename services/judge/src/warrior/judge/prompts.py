"""The answer and judge prompts, after the reference scripts' impartial-judge prompt."""

from __future__ import annotations

MAX_ANSWER_CHARS = 4000

JUDGE_SYSTEM = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two AI "
    "assistants to the user question displayed below. Choose the assistant that follows the user's "
    "instructions and answers the user's question better. Your evaluation should consider factors such "
    "as helpfulness, relevance and accuracy, and for code, correctness. Avoid any position biases and "
    "ensure that the order in which the responses were presented does not influence your decision. Do "
    "not allow the length of the responses to influence your evaluation. Do not favor certain names of "
    "the assistants. If both answers are equally good, prefer the shorter one. Be as objective as "
    "possible. After a short explanation, output your final verdict by strictly following this format: "
    '"[[A]]" if assistant A is better, "[[B]]" if assistant B is better, and "[[Tie]]" for a tie.'
)

# The start of the judge's turn when the verdict is read from the log-probabilities of its next token.
VERDICT_PREFIX = "My final verdict is: [["
VERDICT_CANDIDATES = ("A", "B", "Tie")


def _clip(text: str) -> str:
    if len(text) <= MAX_ANSWER_CHARS:
        return text
    return text[:MAX_ANSWER_CHARS] + "\n[... answer truncated for judging ...]"


def judge_messages(instruction: str, answer_a: str, answer_b: str) -> list[dict[str, str]]:
    """The conversation a judge sees for one order of one pair."""
    user = (
        f"[User Question]\n{instruction}\n\n"
        f"[The Start of Assistant A's Answer]\n{_clip(answer_a)}\n[The End of Assistant A's Answer]\n\n"
        f"[The Start of Assistant B's Answer]\n{_clip(answer_b)}\n[The End of Assistant B's Answer]"
    )
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


def answer_messages(instruction: str) -> list[dict[str, str]]:
    """What every competitor is asked: the instruction alone, as the user's turn."""
    return [{"role": "user", "content": instruction}]
