"""On-topic screening: is a mined request about programming at all?

Small models asked to write a coding request sometimes write about something else entirely (plan
a hike, a recipe, a cover letter). The score combines two cheap signals:

- **embedding**: the request's sentence embedding against short written descriptions of
  programming requests and of everything else (the prototypes below); the mean cosine similarity
  of the two closest of each side, coding minus other.
- **lexical**: code fences and code-shaped lines, identifiers (`snake_case`, `camelCase`, `f()`,
  `a.b`), error names, file extensions, programming-language and tool names, and programming
  vocabulary. A word such as "python", "java" or "shell" also names a snake, a coffee and a beach
  find, so those count for less than words that only programmers use.

A logistic function of the two gives a score in [0, 1]: how much the text is a programming
request. Prototype vectors are computed once per process (per embedding model) and cached; scoring
one request costs one embedding call of one short text.
"""

from __future__ import annotations

import functools
import math
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from warrior.common.embeddings import DEFAULT_MODEL, embedder

__all__ = [
    "CODING_PROTOTYPES",
    "DEFAULT_MIN_SCORE",
    "OTHER_PROTOTYPES",
    "TopicClassifier",
    "TopicScore",
    "classifier",
    "lexical_signal",
]

DEFAULT_MIN_SCORE = 0.4
"""Keep a request whose score is at least this (the weights below say how the score is made and why 0.4)."""

# Short descriptions of what programming requests are about. Written for this module; each one
# names a kind of request, not a particular task.
CODING_PROTOTYPES: tuple[str, ...] = (
    "Write a function or a small program in a programming language.",
    "Fix a bug in my code; it gives the wrong result.",
    "Explain this error message, exception or stack trace from my program.",
    "Write a SQL query that selects, joins or groups rows of database tables.",
    "Write a regular expression that matches a pattern in a string.",
    "A shell command, bash script or terminal one-liner.",
    "Git version control: commits, branches, merges and rebases.",
    "Dockerfiles, containers, Kubernetes manifests and deployment configuration.",
    "An algorithm question and its time and space complexity.",
    "Data structures: arrays, linked lists, trees, graphs, heaps and hash maps.",
    "Concurrency in software: threads, processes, locks and race conditions.",
    "Make slow code faster or use less memory; profile a program.",
    "Write unit tests or integration tests for a piece of software.",
    "Build a web page with HTML, CSS and JavaScript.",
    "A React, Vue or Angular component in a frontend web app.",
    "Design a REST API and backend endpoints for a web service.",
    "Translate source code from one programming language to another.",
    "Explain a programming concept such as closures, recursion, pointers or generics.",
    "Automate a spreadsheet with a VBA macro or a script.",
    "Compiler, linker and build system problems; installing packages and dependencies.",
    "Configure a continuous integration pipeline that builds and tests the code.",
    "Object-oriented design with classes, interfaces, inheritance and design patterns.",
    "Read, parse or write JSON, CSV or XML files in code.",
    "A segmentation fault, a memory leak or undefined behaviour in C or C++.",
    "Design a database schema, indexes and migrations.",
    "Develop a mobile app for Android or iOS.",
    "A command-line tool or a script that automates a task on files.",
    "Type errors, syntax errors, compile errors and null pointer exceptions.",
    "Network programming: sockets, HTTP requests and API clients.",
    "Secure a web application: SQL injection, authentication and password hashing.",
    "Data analysis code with pandas data frames or NumPy arrays.",
    "Infrastructure as code, cloud resources and server configuration files.",
    "Refactor code to be cleaner and easier to maintain.",
    "Organize the files, modules and layers of a growing software project.",
    "An unfinished request to write code that",
    "How do I do this in Python, JavaScript, Java, C#, Go or Rust?",
    "Scheduling a job with cron or a task scheduler in code.",
    "Add a feature to a web form or a user interface: validation, buttons, layout and styling.",
    "A coding interview problem about strings, arrays or numbers.",
)

# Short descriptions of requests that are not about programming, including those that borrow its
# words (a software job's cover letter, a laptop to buy, the history of computers).
OTHER_PROTOTYPES: tuple[str, ...] = (
    "Plan a trip, a hike or a travel itinerary.",
    "A cooking recipe, a meal plan or a grocery list.",
    "Personal finance: investing, stocks, savings, loans and mortgages.",
    "Health, fitness, diet, calories, sleep and medical symptoms.",
    "Write a letter, an email, a speech or a toast.",
    "Workplace communication: an announcement, a memo or a message to colleagues.",
    "Write a cover letter or a resume for a job application.",
    "Career advice, job interviews and salary negotiation.",
    "Creative writing: a poem, a short story or song lyrics.",
    "History, politics, wars and world events.",
    "Natural science: physics, chemistry, biology and astronomy explained.",
    "Explain in simple terms how something in nature, the human body or the universe works.",
    "A math homework problem in algebra, geometry, calculus or probability, solved by hand.",
    "A math word problem about distances, speeds, shapes, chances or money, to work out with pen and paper.",
    "Solve an equation, take a derivative or prove a theorem.",
    "Animals and pets, such as dogs, cats and snakes like pythons.",
    "Coffee, tea, drinks and food.",
    "Which laptop, phone or gadget should I buy? Product recommendations.",
    "Consumer tech support: a phone, printer, router or Bluetooth that does not work.",
    "Change the settings of a home router, a phone, a smart TV or an online account.",
    "Home repair, cleaning, gardening and house plants.",
    "Relationships, family, parenting and etiquette.",
    "Translate a phrase into another human language; grammar and vocabulary.",
    "Sports, games, hobbies and exercise plans.",
    "Books, movies, music, art and their plots.",
    "Law, taxes, contracts and tenant rights.",
    "Geography, trivia and general knowledge questions.",
    "An essay about the history of computers, inventors and technology.",
    "Marketing, running a small business and product descriptions.",
    "Philosophy, ethics and personal opinions.",
    "Study tips, learning a language and school homework.",
    "Cars, bikes and transport.",
    "Weather, seasons and nature.",
    "Party planning, gifts and celebrations.",
    "An unfinished question about everyday life that",
)

EMBEDDING_TOP_K = 2  # mean similarity of the closest prototypes of each side
# The score is sigmoid(WEIGHT_MARGIN * margin + WEIGHT_LEXICAL * lexical + BIAS): a logistic regression
# fit (rounded) on the development set, services/instruction_miner/tests/data/topic_dev.jsonl. On that
# set the coding requests score 0.60 and up but one, the others 0.39 and below; DEFAULT_MIN_SCORE sits
# low in that gap because a coding request dropped is lost, while an off-topic one kept still meets
# the ratings. bench/topic.py measures both on a held-out set.
WEIGHT_MARGIN = 24.0
WEIGHT_LEXICAL = 1.6
BIAS = -0.6
LEXICAL_CAP = 3.0  # a text full of code words is not more on topic than one with a few

# --- lexical signal --------------------------------------------------------------------------

_FENCE = re.compile(r"```|~~~")
_CODE_LINE = re.compile(
    r"""^\s*(?:
        (?:async\s+)?def\s+\w+\s*\(|class\s+\w+\s*[(:{]|import\s+[\w.]+|from\s+[\w.]+\s+import\b
      | \#include\b|function\s*\w*\s*\(|(?:const|let|var)\s+\w+\s*=|fn\s+\w+\s*\(
      | (?:public|private|protected)\s+\w+|return\b.*;?\s*$|for\s*\(.*\)|while\s*\(.*\)
      | if\s*\(.*\)\s*\{|\}\s*else|.*[;{]\s*$|\w+(?:\.\w+)*\s*=\s*\S.*$
      | Traceback\s\(most\srecent\scall\slast\)|File\s"[^"]+",\sline\s\d+
    )""",
    re.VERBOSE | re.MULTILINE,
)
_IDENTIFIER = re.compile(
    r"""(?:
        \b[a-z]+_[a-z0-9_]+\b                  # snake_case
      | \b[a-z]{2,}[A-Z][a-zA-Z0-9]*\b         # camelCase (not iPhone)
      | \b\w+\(\)                              # call()
      | \b[a-z_]\w*\.[a-z_]\w*\(               # obj.method(
      | (?:==|!=|=>|->|::|&&|\|\||\+=|<=|>=)   # operators prose does not use
      | </?[a-z]+>                             # a tag
    )""",
    re.VERBOSE,
)
_ERROR_NAME = re.compile(r"\b\w+(?:Error|Exception)\b|(?i:\bseg(?:mentation\s)?fault|\bstack\s?trace|\btraceback)")
_FILE_EXTENSION = re.compile(r"\.(?:py|js|ts|tsx|jsx|java|c|cpp|h|hpp|cs|go|rs|rb|php|sh|sql|yaml|yml|json|toml)\b")

# Names that programming uses and everyday language hardly does.
_STRONG_WORDS = frozenset(
    """
    javascript typescript kotlin haskell ocaml erlang elixir clojure scala golang fortran cobol
    php perl c++ c# f# objective-c matlab dart lua bash zsh powershell sql mysql postgresql
    postgres sqlite mongodb nosql regex regexp html css json yaml xml graphql numpy pandas django
    flask fastapi laravel react vue angular svelte node.js nodejs npm pip webpack jquery docker
    dockerfile kubernetes kubectl helm terraform nginx git github gitlab jenkins makefile cmake
    gcc clang jvm vba api apis sdk cli compiler linker debugger debug debugging refactor
    refactoring codebase programmer programming coding recursion recursive runtime syntax
    boolean struct enum async await callback callbacks closure closures lambda hashmap mutex
    backend frontend endpoint endpoints stdin stdout serialize pytest jest junit memoization
    big-o algorithm algorithms tuple tuples iterator iterators polymorphism inheritance
    substring http https localhost div
    """.split()
)
# Programming words that are also everyday words, or name a snake, a coffee or a gem.
_WEAK_WORDS = frozenset(
    """
    python java c go rust ruby swift shell r node spring rails excel spreadsheet macro formula
    data file files input output print error errors memory cache build install app web website
    page form code program programs function functions method methods variable variables array
    arrays string strings integer integers loop loops script scripts query queries database
    databases class classes interface module modules package packages library framework pointer
    pointers thread threads deadlock list lists dictionary queue stack heap tree graph bug bugs
    test tests unit mock pipeline deploy deployment container server servers socket cron
    repository repo commit branch merge rebase parse parser sort sorting complexity binary linked
    route routes field fields project
    """.split()
)
# Phrases that ask for code or state a programming problem.
_LANGUAGES = r"python|java|javascript|typescript|kotlin|rust|ruby|swift|php|perl|scala|haskell|bash|sql|c\+\+|c\#"
_CODING_PHRASE = re.compile(
    rf"""\b(?:
        (?:write|implement|create|build|code|generate|make)\s+(?:me\s+)?(?:a|an|the|some)?\s*(?:[\w-]+\s+){{0,3}}?
          (?:function|program|script|method|class|query|regex|module|endpoint|api|cli|unit\s+tests?)s?\b
      | given\s+(?:a|an|two)\s+(?:[\w-]+\s+){{0,2}}?(?:list|array|string|matrix|tree|graph|integer|sequence)s?\b
      | (?:in|using|with|into|to)\s+(?:{_LANGUAGES})\b
    )""",
    re.IGNORECASE | re.VERBOSE,
)
_CODING_PHRASE_CASED = re.compile(r"\b(?:in|using|with|into)\s+(?:Go|C|R)\b")  # "in Go", not "want to go"
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9+#.\-]*[A-Za-z0-9+#]|[A-Za-z]")


def lexical_signal(text: str) -> float:
    """Evidence in the text's surface that it is about code: 0 for none, more for more (capped)."""
    evidence = 0.0
    if _FENCE.search(text):
        evidence += 2.0
    evidence += min(2, len(_CODE_LINE.findall(text))) * 1.0
    evidence += min(2, len(_IDENTIFIER.findall(text))) * 0.75
    if _ERROR_NAME.search(text):
        evidence += 1.0
    if _FILE_EXTENSION.search(text):
        evidence += 0.75
    evidence += min(2, len(_CODING_PHRASE.findall(text)) + len(_CODING_PHRASE_CASED.findall(text))) * 1.0
    words = {w.lower().rstrip(".") for w in _WORD.findall(text)}
    evidence += min(3, len(words & _STRONG_WORDS)) * 0.75
    evidence += min(4, len(words & _WEAK_WORDS)) * 0.25
    return min(evidence, LEXICAL_CAP)


# --- the classifier --------------------------------------------------------------------------


@dataclass(frozen=True)
class TopicScore:
    """How much a text is a programming request (`score` in [0, 1]) and the two signals behind it."""

    score: float
    margin: float  # embedding: coding prototypes' similarity minus the others'
    lexical: float

    def record(self) -> dict[str, float]:
        """What screening records for the instruction."""
        return {"score": round(self.score, 4), "margin": round(self.margin, 4), "lexical": round(self.lexical, 3)}


def _top_k_mean(similarities: np.ndarray, k: int) -> np.ndarray:
    """Mean of the k largest values of each row."""
    k = min(k, similarities.shape[1])
    top = np.partition(similarities, similarities.shape[1] - k, axis=1)[:, -k:]
    return np.asarray(top.mean(axis=1))


class TopicClassifier:
    """Scores texts against the prototypes; `embed` maps texts to unit vectors (one row each)."""

    def __init__(self, embed: Callable[[list[str]], np.ndarray]) -> None:
        self._embed = embed
        self._coding = np.asarray(embed(list(CODING_PROTOTYPES)), dtype=np.float32)
        self._other = np.asarray(embed(list(OTHER_PROTOTYPES)), dtype=np.float32)

    def scores(self, texts: Sequence[str]) -> list[TopicScore]:
        if not texts:
            return []
        vectors = np.asarray(self._embed(list(texts)), dtype=np.float32)
        coding = _top_k_mean(vectors @ self._coding.T, EMBEDDING_TOP_K)
        other = _top_k_mean(vectors @ self._other.T, EMBEDDING_TOP_K)
        out = []
        for text, c, o in zip(texts, coding, other, strict=True):
            margin = float(c - o)
            lexical = lexical_signal(text)
            z = WEIGHT_MARGIN * margin + WEIGHT_LEXICAL * lexical + BIAS
            out.append(TopicScore(1.0 / (1.0 + math.exp(-z)), margin, lexical))
        return out

    def score(self, text: str) -> TopicScore:
        return self.scores([text])[0]


_LOADING = threading.Lock()


def classifier(model: str = DEFAULT_MODEL) -> TopicClassifier:
    """The process's classifier for an embedding model: prototypes embedded once (loads the model); the
    threads of a batch asking at once wait for one build."""
    with _LOADING:
        return _classifier(model)


@functools.lru_cache(maxsize=2)
def _classifier(model: str) -> TopicClassifier:
    return TopicClassifier(embedder(model).encode)
