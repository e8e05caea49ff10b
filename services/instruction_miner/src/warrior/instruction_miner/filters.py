"""Shape filters for mined instructions: clean the text, then keep it or name why it is dropped.

Magpie-style mining lets a model write the user turn from a bare pre-query template, so
the raw text is sometimes not a request at all: the model echoes a role label, pastes a
code dump, keeps going into the answer, or writes a plain statement. These heuristics are
deliberately cheap and conservative: a request that carries a snippet to debug or explain
is kept, because those are among the most useful coding instructions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "CODE_NOT_REQUEST",
    "EMBEDDED_ANSWER",
    "EMPTY",
    "NOT_A_REQUEST",
    "REASONS",
    "TOO_LONG",
    "TOO_SHORT",
    "DropReason",
    "FilterLimits",
    "clean_instruction",
    "drop_reason",
]

DropReason = Literal[
    "empty",
    "too_long",
    "too_short",
    "embedded_answer",
    "code_not_request",
    "not_a_request",
]
"""The reasons this module gives; :func:`drop_reason` returns plain ``str`` so that callers can
keep one variable for these and their own later reasons ("near_duplicate", "truncated")."""

EMPTY: Final = "empty"
TOO_LONG: Final = "too_long"
TOO_SHORT: Final = "too_short"
EMBEDDED_ANSWER: Final = "embedded_answer"
CODE_NOT_REQUEST: Final = "code_not_request"
NOT_A_REQUEST: Final = "not_a_request"

REASONS: Final[tuple[DropReason, ...]] = (
    EMPTY,
    TOO_LONG,
    TOO_SHORT,
    EMBEDDED_ANSWER,
    CODE_NOT_REQUEST,
    NOT_A_REQUEST,
)
"""Every reason :func:`drop_reason` can return, in the order the checks run."""


@dataclass(frozen=True)
class FilterLimits:
    """Length bounds for a kept instruction: whitespace-split words, characters after cleaning."""

    min_words: int = 5
    max_chars: int = 2000

    def __post_init__(self) -> None:
        """Reject bounds that would drop everything."""
        if self.min_words < 0:
            raise ValueError(f"min_words must be >= 0, got {self.min_words}")
        if self.max_chars < 1:
            raise ValueError(f"max_chars must be >= 1, got {self.max_chars}")


# --- cleaning -------------------------------------------------------------------------

# A role or section label the model echoes from its chat template or from instruction-tuning
# formats: "User:", "**Question:**", "Q:", "### Instruction:", and a bare markdown heading
# "### Instruction" on its own line (Alpaca style, no colon).
_LABEL_WORDS = r"(?:user|human|question|instruction|query|prompt|request|task|problem|input|q)"
_ROLE_LABEL = re.compile(
    rf"""^(?:
        (?:\#{{1,6}}[ \t]*)?(?:\*\*|__)?[ \t]*{_LABEL_WORDS}[ \t]*(?:\*\*|__)?[ \t]*[:：][ \t]*(?:\*\*|__)?
      | \#{{1,6}}[ \t]*{_LABEL_WORDS}[ \t]*(?:\n|$)
    )""",
    re.IGNORECASE | re.VERBOSE,
)
_QUOTE_PAIRS: Final = {'"': '"', "'": "'", "“": "”", "‘": "’", "«": "»", "`": "`"}
# Enough for "User: Question: ..." or a quoted echo; bounded so cleaning is always cheap.
_MAX_CLEAN_PASSES = 4


def _strip_quotes(text: str) -> str:
    """Drop one pair of quotes around the whole text, if the opening quote closes at the very end.

    ``"foo" and "bar"`` starts and ends with a quote but is not quoted as a whole, so the
    first closing quote must be the last character; nested same-character quotes are left
    alone rather than guessed at.
    """
    if len(text) < 2 or text[0] not in _QUOTE_PAIRS:
        return text
    if text.startswith("```"):  # a code fence, not a quote
        return text
    close = _QUOTE_PAIRS[text[0]]
    if text.find(close, 1) == len(text) - 1:
        return text[1:-1]
    return text


def clean_instruction(raw: str) -> str:
    """Return ``raw`` stripped of whitespace, echoed role labels and surrounding quotes.

    Idempotent: cleaning a cleaned text changes nothing.
    """
    text = raw.strip()
    for _ in range(_MAX_CLEAN_PASSES):
        before = text
        text = _ROLE_LABEL.sub("", text, count=1).strip()
        text = _strip_quotes(text).strip()
        if text == before:
            break
    return text


# --- text structure -------------------------------------------------------------------

_FENCE = re.compile(r"^[ \t]*(```|~~~)[^\n]*\n(.*?)(?:^[ \t]*\1[ \t]*$|\Z)", re.MULTILINE | re.DOTALL)

# Lines that open or carry code in common languages; prose rarely starts this way.
_CODE_START = re.compile(
    r"""^\s*(?:
        ```|~~~|\#include\b|\#!/|\#define\b|<\?php|<!DOCTYPE|<html\b
      | (?:async\s+)?def\s+\w+\s*\(|class\s+\w+\s*[(:{]|import\s+[\w.]+|from\s+[\w.]+\s+import\b
      | package\s+[\w.]+|using\s+(?:namespace\s+)?[\w.]+\s*;|(?:public|private|protected)\s+(?:static\s+)?\w+
      | function\s*\w*\s*\(|(?:const|let|var)\s+\w+\s*=|fn\s+\w+|(?:pub\s+)?(?:struct|enum|impl)\s+\w+
      | (?:int|void|char|float|double|long|bool|auto)\s+\**\w+\s*[(=;\[]
      | SELECT\s+.+\s+FROM\b|CREATE\s+TABLE\b
    )""",
    re.VERBOSE,
)
_CODE_LINE = re.compile(
    r"""(?:
        [;{}]\s*$                                   # statement / block punctuation at the end
      | ^\s*[)\]}]+[;,]?\s*$                         # closing brackets alone
      | ^\s*(?://|/\*|\*/|--\s|\#(?!\#*\s+[A-Z][a-z]))  # comments (but not "# Heading" markdown)
      | ^\s*(?:return|elif|else|try|except|finally|for|while|if|with|yield|raise|print|console\.log|echo)\b.*[:;)({]\s*$
      | ^\s*@\w+                                     # decorators / annotations
      | ^\s*[\w.\[\]'"]+\s*(?:[-+*/%|&^]|//|<<|>>)?=\s*\S   # assignment
      | ^\s*[\w.]+\([^()]*(?:\([^()]*\)[^()]*)*\)\s*$      # a bare call
      | ^\s*(?:>>>|\$)\s                              # REPL / shell prompt
    )""",
    re.VERBOSE,
)
# An indented line counts as code when it also holds code punctuation; list items do not.
_INDENTED = re.compile(r"^(?:\t|[ ]{2,})(?![-*+]\s|\d+[.)]\s)\S")
_CODE_TOKENS = re.compile(r"[=(){}\[\];]|->|=>|::|\breturn\b")


def _looks_like_code(line: str) -> bool:
    """Return whether one non-fenced line looks like source code rather than prose."""
    if _CODE_START.match(line) or _CODE_LINE.search(line):
        return True
    return bool(_INDENTED.match(line) and _CODE_TOKENS.search(line))


@dataclass(frozen=True)
class _Shape:
    """A text split into prose and code: fenced blocks, plus unfenced lines that look like code.

    ``prose`` holds the non-code lines joined by newlines; ``outside`` is the text with every
    fenced block blanked to spaces, so its offsets are the text's; ``code_lines`` counts
    non-empty code lines (fence markers included) out of ``total_lines`` non-empty lines;
    ``fences`` holds ``(start, end, content)`` of each fenced block.
    """

    prose: str
    outside: str
    code_lines: int
    total_lines: int
    fences: tuple[tuple[int, int, str], ...]


def _shape(text: str) -> _Shape:
    """Split ``text`` into prose and code for the heuristics below."""
    fences: list[tuple[int, int, str]] = []
    prose_lines: list[str] = []
    code_lines = 0
    total_lines = 0
    pos = 0
    for match in _FENCE.finditer(text):
        outside = text[pos : match.start()]
        for line in outside.splitlines():
            if line.strip():
                total_lines += 1
                if _looks_like_code(line):
                    code_lines += 1
                else:
                    prose_lines.append(line)
        block_lines = sum(1 for line in match.group(0).splitlines() if line.strip())
        code_lines += block_lines
        total_lines += block_lines
        fences.append((match.start(), match.end(), match.group(2)))
        pos = match.end()
    for line in text[pos:].splitlines():
        if line.strip():
            total_lines += 1
            if _looks_like_code(line):
                code_lines += 1
            else:
                prose_lines.append(line)
    outside = text
    for start, end, _ in fences:
        outside = outside[:start] + " " * (end - start) + outside[end:]
    return _Shape("\n".join(prose_lines), outside, code_lines, total_lines, tuple(fences))


# --- request and answer cues --------------------------------------------------------------

# Many task verbs are also ordinary nouns or verbs ("the list is empty", "it will return 0"),
# so they only count as the first word of a sentence or of a comma clause ("In Python, write
# ..."), where English puts an imperative. Question words likewise open a sentence; a few
# polite or first-person asks count anywhere.
_IMPERATIVE = re.compile(
    r"""(?:
        write|implement|create|build|make|generate|design|develop|add|fix|debug|refactor
      | optimi[sz]e|convert|translate|port|rewrite|explain|describe|show|help|compare|find
      | calculate|compute|modify|improve|review|suggest|provide|tell|list|sort|parse|solve
      | return|print|count|check|determine|use|give|given|suppose|assume|consider|let'?s|need
      | define|extend|update|remove|replace|validate|test|document|simulate|model|set\s+up
    )\b
    # ... unless a verb follows, making the word a subject noun ("Test coverage is low"); a
    # wh-word or pronoun in between starts an object clause instead ("Explain what is ...").
    (?!\s+
        (?:(?!(?:what|which|who|how|why|where|when|whether|if|it|this|that|there)\b)\w+\s+)?
        (?:is|are|was|were|has|have|had|can|will|should|must|may)\b
    )""",
    re.IGNORECASE | re.VERBOSE,
)
_QUESTION_OPENER = re.compile(
    r"(?:how|why|what|which|when|where|who|is|are|does|do|can|could|should|would|will)\b",
    re.IGNORECASE,
)
_ASK_ANYWHERE = re.compile(
    r"""\b(?:
        can\s+you|could\s+you|would\s+you|will\s+you|please|help\s+me|show\s+me|tell\s+me
      | walk\s+me|i\s+need|i\s+want|i'?d\s+like|i\s+would\s+like|i'?m\s+trying|i\s+am\s+trying
      | is\s+there\s+a\s+way|is\s+it\s+possible|how\s+(?:to|do|does|can|could|should|would)
    )\b""",
    re.IGNORECASE | re.VERBOSE,
)
_SENTENCE_END = re.compile(r"(?<=[.!?:;])\s+|\n+")
# List bullets, numbering and quotes before a sentence's first word.
_SENTENCE_LEAD = re.compile(r"^[\s\-*+>\"'“‘(]*(?:\d+[.)]\s*)?")
# The not-a-request check looks for a cue this far into the prose: a mined request states
# its ask up front, and a long statement with an imperative buried deep in it is still a statement.
_LEADING_SENTENCES = 3


# The model has switched to the assistant's voice from the first word.
_ASSISTANT_OPENER = re.compile(
    r"^(?:sure|certainly|of\s+course|absolutely|great\s+question|good\s+question"
    r"|i'?d\s+be\s+(?:happy|glad)|i\s+would\s+be\s+(?:happy|glad)|happy\s+to\s+help)\b",
    re.IGNORECASE,
)
# A section or role marker that introduces an answer at the start of a line. "Response" only
# as a heading or in bold ("### Response", Alpaca style): a bare "Response: 500" is a user
# quoting an HTTP reply.
_ANSWER_MARKER = re.compile(
    r"""^[ \t]*(?:
        (?:\#{1,6}[ \t]*)?(?:\*\*|__)?[ \t]*(?:answer|solution|assistant)[ \t]*(?:\*\*|__)?[ \t]*[:：]
      | (?:\#{1,6}[ \t]*|\*\*|__)(?:answer|solution|response)\b
    )""",
    re.IGNORECASE | re.MULTILINE | re.VERBOSE,
)
# Answer-voice phrases that present a solution. Ambiguous on their own ("Here is the code
# that fails:" is a user), so they only count when the text is not about code it carries.
_ANSWER_PHRASE = re.compile(
    r"\b(?:here(?:\s+is|'s|’s)|below\s+is)\s+(?:the|a|an)\s+(?:\w+\s+){0,3}?"
    r"(?:code|solution|implementation|function|program|script|answer)\b",
    re.IGNORECASE,
)
# Signs that the request is about code it carries (debug, explain, review): then a code block
# or "here is the code" belongs to the user, not to an answer.
_CARRIED_CODE_CUE = re.compile(
    r"""\b(?:
        this|these|following|below|above|attached|my|mine|i'?ve|i\s+have|i\s+wrote|i'?m|i\s+am|we
      | error|errors|exception|traceback|fails?|failing|crash(?:es|ing)?|bugs?|broken|wrong
      | doesn'?t|does\s+not|isn'?t|won'?t|can'?t|cannot|fix|debug|refactor|review|optimi[sz]e
      | explain|output\s+of|what\s+does
    )\b""",
    re.IGNORECASE | re.VERBOSE,
)


# ASCII and full-width (CJK) question marks.
_QUESTION_MARK = re.compile(r"[?？]")
# Where the sentence holding an answer phrase ends, for reading its own words.
_CLAUSE_END = re.compile(r"[.!?:\n？。]")


def _asks(sentence: str) -> bool:
    """Return whether one sentence is a question or a task by its opening words or a polite ask."""
    if _ASK_ANYWHERE.search(sentence):
        return True
    opening = _SENTENCE_LEAD.sub("", sentence, count=1)
    if _QUESTION_OPENER.match(opening) or _IMPERATIVE.match(opening):
        return True
    clauses = opening.split(",")[1:]
    return any(_IMPERATIVE.match(clause.lstrip()) for clause in clauses)


def _has_request(prose: str, *, leading_only: bool) -> bool:
    """Return whether ``prose`` asks something: a question mark anywhere, or a sentence that asks.

    With ``leading_only`` only the first few sentences are searched for a request sentence.
    """
    if _QUESTION_MARK.search(prose):
        return True
    sentences = [s for s in _SENTENCE_END.split(prose) if s.strip()]
    if leading_only:
        sentences = sentences[:_LEADING_SENTENCES]
    return any(_asks(sentence) for sentence in sentences)


def _embeds_answer(shape: _Shape) -> bool:
    """Return whether the text already carries its own answer."""
    if _ASSISTANT_OPENER.match(shape.outside) or _ANSWER_MARKER.search(shape.outside):
        return True
    # "Here is the code:" answers the request unless what came before it (or its own
    # sentence: "Here is the code I wrote") says the code is the user's.
    for match in _ANSWER_PHRASE.finditer(shape.outside):
        sentence_end = _CLAUSE_END.search(shape.outside, match.end())
        context = shape.outside[: sentence_end.start() if sentence_end else None]
        if not _CARRIED_CODE_CUE.search(context):
            return True
    # A code block after the question that outweighs it, in a request that does not point at
    # carried code ("How do I reverse a list?" + 20 lines), is the model answering itself.
    question = _QUESTION_MARK.search(shape.outside)
    if question is None:
        return False
    question_end = question.start()
    question_length = len(shape.outside[: question_end + 1].strip())
    return any(
        start > question_end
        and len(content.strip()) > question_length
        and not _CARRIED_CODE_CUE.search(shape.outside[:start])
        for start, _, content in shape.fences
    )


def drop_reason(text: str, limits: FilterLimits = FilterLimits()) -> str | None:
    """Return None to keep the instruction, else the first failing check's reason (:data:`REASONS`).

    ``text`` is cleaned with :func:`clean_instruction` first, so raw and cleaned text get the
    same verdict. Checks run in the order empty, too_long, too_short, embedded_answer,
    code_not_request, not_a_request: the answer check precedes the code check because a
    question followed by its solution code is mostly code but is best described as answered.
    """
    cleaned = clean_instruction(text)
    if not cleaned:
        return EMPTY
    if len(cleaned) > limits.max_chars:
        return TOO_LONG
    if len(cleaned.split()) < limits.min_words:
        return TOO_SHORT
    shape = _shape(cleaned)
    if _embeds_answer(shape):
        return EMBEDDED_ANSWER
    starts_with_code = bool(_CODE_START.match(cleaned))
    mostly_code = shape.code_lines * 2 > shape.total_lines
    if (starts_with_code or mostly_code) and not _has_request(shape.prose, leading_only=False):
        return CODE_NOT_REQUEST
    if not _has_request(shape.prose, leading_only=True):
        return NOT_A_REQUEST
    return None
