"""Tests for the shape filters on mined instructions."""

from __future__ import annotations

import pytest

from warrior.instruction_miner.filters import (
    CODE_NOT_REQUEST,
    EMBEDDED_ANSWER,
    EMPTY,
    NOT_A_REQUEST,
    REASONS,
    TOO_LONG,
    TOO_SHORT,
    DropReason,
    FilterLimits,
    clean_instruction,
    drop_reason,
)

# Realistic mined texts and what the filter should do with them (None = keep).
CASES: list[tuple[str, DropReason | None]] = [
    # Plain questions and tasks.
    ("How do I reverse a linked list in Python without using extra memory?", None),
    (
        "Write a Python function that merges two sorted lists into one sorted list.",
        None,
    ),
    (
        (
            "Given an array of integers nums and an integer target, return indices of the two "
            "numbers such that they add up to target."
        ),
        None,
    ),
    ("In Python, write a function that flattens an arbitrarily nested list.", None),
    ("I need a regex that matches valid IPv4 addresses and rejects 256.1.1.1.", None),
    (
        "1. Implement a queue using two stacks in Java and analyse the amortised cost.",
        None,
    ),
    # Echoed role labels and quotes are cleaned, then the request is kept.
    ("User: How do I read a CSV file with pandas and skip the first two rows?", None),
    (
        "### Instruction:\nImplement a binary search in Rust that returns the index or None.",
        None,
    ),
    ('"Can you explain the difference between a process and a thread in Linux?"', None),
    # Requests that carry code to debug or explain are kept.
    ("Why does this fail?\n```python\nx=1/0\n```", None),
    (
        ("Why does this code raise a KeyError?\n```python\nd = {}\nfor k in ['a', 'b']:\n    d[k] += 1\nprint(d)\n```"),
        None,
    ),
    (
        "What is the output of the following code?\n```python\n"
        + "total = sum(i * i for i in range(10) if i % 3)\n" * 4
        + "print(total)\n```",
        None,
    ),
    (
        (
            "I'm trying to run my Flask app in Docker but the container exits immediately. "
            "Here is the code I have:\n```dockerfile\nFROM python:3.11\nCOPY . /app\nCMD python app.py\n```"
        ),
        None,
    ),
    (
        (
            "My React component re-renders forever when I call setState inside useEffect\n"
            "useEffect(() => {\n  setCount(count + 1);\n});\nWhat am I doing wrong"
        ),
        None,
    ),
    (
        "Why does my loop never end? Here is the code:\n```python\nwhile True:\n    i += 1\n    print(i)\n```",
        None,
    ),
    ("Explain what is a closure in JavaScript and when to use one.", None),
    ("List all files in a directory recursively using bash.", None),
    ("如何 用 Python 读取 一个 文件？", None),
    # Nothing there.
    ("", EMPTY),
    ("   \n\t  ", EMPTY),
    ("User:   ", EMPTY),
    ('""', EMPTY),
    # Length.
    ("Sort a list.", TOO_SHORT),
    ("User: Fix my code?", TOO_SHORT),
    ("Explain " + "this very long request " * 500, TOO_LONG),
    # The model kept going and answered itself.
    (
        ("How do I reverse a string in Python?\n\nAnswer: Use slicing, s[::-1], which returns a new reversed string."),
        EMBEDDED_ANSWER,
    ),
    (
        ("Sure! Here's a Python function that checks whether a number is prime:\n```python\ndef is_prime(n): ...\n```"),
        EMBEDDED_ANSWER,
    ),
    (
        "How do I reverse a list in Python? Here is the code: lst.reverse() and it works.",
        EMBEDDED_ANSWER,
    ),
    (
        "Certainly, I can help you with writing a sorting function in Java.",
        EMBEDDED_ANSWER,
    ),
    (
        (
            "Write a function to compute the nth Fibonacci number.\n\n### Response:\ndef fib(n):\n"
            "    return n if n < 2 else fib(n-1) + fib(n-2)"
        ),
        EMBEDDED_ANSWER,
    ),
    (
        (
            "How can I check if a string is a palindrome in Python?\n```python\n"
            "def is_palindrome(s: str) -> bool:\n    cleaned = ''.join(c.lower() for c in s if c.isalnum())\n"
            "    return cleaned == cleaned[::-1]\n```"
        ),
        EMBEDDED_ANSWER,
    ),
    (
        ("Create a REST API in Go with a users endpoint. Here is the implementation:\n```go\npackage main\n```"),
        EMBEDDED_ANSWER,
    ),
    (
        "Write a bubble sort in C.\n\n**Solution:** loop over the array and swap neighbours.",
        EMBEDDED_ANSWER,
    ),
    # Code dumps with no request.
    (
        "def reverse(s):\n    return s[::-1]\n\nprint(reverse('hello world'))",
        CODE_NOT_REQUEST,
    ),
    (
        "```javascript\nconst add = (a, b) => a + b;\nconsole.log(add(2, 3));\n```",
        CODE_NOT_REQUEST,
    ),
    (
        '#include <stdio.h>\nint main(void) {\n    printf("hello\\n");\n    return 0;\n}',
        CODE_NOT_REQUEST,
    ),
    (
        "import numpy as np\nimport pandas as pd\ndf = pd.read_csv('data.csv')\nprint(df.head())",
        CODE_NOT_REQUEST,
    ),
    ("int x = a > b ? a : b;\nint y = x * 2;\nint z = y + 1;", CODE_NOT_REQUEST),
    # Statements, not requests.
    (
        "Python is a popular programming language used for web development and data science.",
        NOT_A_REQUEST,
    ),
    (
        "The list is empty when the program starts and it will return zero.",
        NOT_A_REQUEST,
    ),
    ("I love programming in Rust with my friends on weekends.", NOT_A_REQUEST),
    ("List comprehensions are faster than loops in most cases.", NOT_A_REQUEST),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_drop_reason_table(text: str, expected: DropReason | None) -> None:
    assert drop_reason(text) == expected


def test_reasons_tuple_lists_every_reason_in_check_order() -> None:
    assert REASONS == (
        "empty",
        "too_long",
        "too_short",
        "embedded_answer",
        "code_not_request",
        "not_a_request",
    )
    assert {expected for _, expected in CASES} - {None} == set(REASONS)


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [
        ("  How do I sort a dict by value?  \n", "How do I sort a dict by value?"),
        ("User: How do I sort a dict by value?", "How do I sort a dict by value?"),
        ("user:How do I X?", "How do I X?"),
        ("Question: Why is my loop slow?", "Why is my loop slow?"),
        ("**Question:** Why is my loop slow?", "Why is my loop slow?"),
        ("### Instruction:\nWrite a parser.", "Write a parser."),
        ("### Instruction\nWrite a parser.", "Write a parser."),
        ("Human: Q: Explain closures.", "Explain closures."),
        ('Q: "How do I sort?"', "How do I sort?"),
        ("“Explain Python decorators.”", "Explain Python decorators."),
        ("'Explain Python decorators.'", "Explain Python decorators."),
        # Quotes that do not surround the whole text stay.
        ('"foo" and "bar" differ how?', '"foo" and "bar" differ how?'),
        ('What does "yield" do in Python?', 'What does "yield" do in Python?'),
        # A code fence is not a quote.
        ("```python\nx = 1\n```", "```python\nx = 1\n```"),
        # "Userland" is not a label.
        ("Userland drivers: how do they work?", "Userland drivers: how do they work?"),
        ("", ""),
    ],
)
def test_clean_instruction(raw: str, cleaned: str) -> None:
    assert clean_instruction(raw) == cleaned


@pytest.mark.parametrize("text", [text for text, _ in CASES])
def test_clean_instruction_is_idempotent(text: str) -> None:
    once = clean_instruction(text)
    assert clean_instruction(once) == once
    assert drop_reason(once) == drop_reason(text)


def test_limits_are_configurable() -> None:
    text = "Write a function to add two numbers."
    assert drop_reason(text) is None
    assert drop_reason(text, FilterLimits(min_words=10)) == TOO_SHORT
    assert drop_reason(text, FilterLimits(max_chars=20)) == TOO_LONG
    # Length is measured after cleaning: the echoed label does not count.
    assert drop_reason("User: " + text, FilterLimits(max_chars=len(text))) is None


def test_too_long_is_checked_before_too_short() -> None:
    assert drop_reason("x" * 2001) == TOO_LONG


def test_filter_limits_validate() -> None:
    with pytest.raises(ValueError):
        FilterLimits(min_words=-1)
    with pytest.raises(ValueError):
        FilterLimits(max_chars=0)
