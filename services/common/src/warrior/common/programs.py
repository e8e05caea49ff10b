"""Code and unit tests in model text, and the programs that run one against the other.

An answer's code is taken from its fenced Python blocks (or the whole text, when it is a Python
program with a definition in it). Tests are assert statements a test writer returns in a fenced
block; each assert becomes one test, with the writer's imports and helper definitions before it.
A test calls the function the request names; when an answer names it differently but defines one
function that fits, the program binds the test's name to it and the record says so.

Every program ends by writing a completion marker straight to its stdout descriptor, so a program
that exits early (`sys.exit(0)` in an answer) does not pass by leaving before its asserts.
"""

from __future__ import annotations

import ast
import builtins
import difflib
import re
from dataclasses import dataclass, field

__all__ = [
    "DONE_MARKER",
    "Extracted",
    "UnitTest",
    "binding_for",
    "called_names",
    "defined_functions",
    "definitions_only",
    "extract_code",
    "load_program",
    "parse_tests",
    "unit_test_program",
]

# What the last line of every program writes; a run passed only if its stdout holds it.
DONE_MARKER = "warrior-program-done-7f3a"
MAX_TESTS_PER_WRITER = 6
MAX_TEST_CHARS = 2000
# The module name an answer runs under: its `if __name__ == "__main__":` demo does not run.
SOLUTION_MODULE = "warrior_solution"

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)
_PYTHON_TAGS = {"", "python", "py", "python3", "py3"}
_BUILTINS = frozenset(dir(builtins))


@dataclass(frozen=True)
class Extracted:
    """The code of one answer: `code` is None when the answer holds none that parses (`reason` says why)."""

    code: str | None
    reason: str  # "fenced", "whole_text", "no_code", "syntax_error: <line>"

    @property
    def runnable(self) -> bool:
        return self.code is not None


@dataclass(frozen=True)
class UnitTest:
    """One assert with the preamble (imports, helpers) its writer put before it."""

    id: str
    writer: str
    assertion: str
    preamble: str = ""
    calls: tuple[str, ...] = field(default_factory=tuple)

    def source(self) -> str:
        return f"{self.preamble}\n{self.assertion}\n" if self.preamble else f"{self.assertion}\n"


def _parses(code: str) -> tuple[bool, str]:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError) as exc:  # ValueError: null bytes
        line = getattr(exc, "lineno", None)
        return False, f"syntax_error: line {line}" if line else "syntax_error"
    return True, ""


def _has_definition(tree: ast.Module) -> bool:
    return any(isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) for n in tree.body)


def extract_code(text: str) -> Extracted:
    """The Python code of an answer, its example usage left out (see `definitions_only`).

    Fenced blocks tagged Python (or untagged) are joined in order; when the join does not parse,
    the longest block that parses alone is taken. Without fences, the whole text counts when it
    parses and defines a function or class (prose never does both).
    """
    blocks = [body for tag, body in _FENCE.findall(text) if tag.lower() in _PYTHON_TAGS and body.strip()]
    if blocks:
        joined = "\n\n".join(b.rstrip() for b in blocks) + "\n"
        ok, why = _parses(joined)
        if ok:
            return Extracted(definitions_only(joined), "fenced")
        alone = [b for b in blocks if _parses(b)[0]]
        if alone:
            return Extracted(definitions_only(max(alone, key=len).rstrip() + "\n"), "fenced")
        return Extracted(None, why)
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return Extracted(None, "no_code")
    if _has_definition(tree):
        return Extracted(definitions_only(text.rstrip() + "\n"), "whole_text")
    return Extracted(None, "no_code")


def definitions_only(code: str) -> str:
    """`code` without its example usage: what a module of the answer would define.

    When the code defines a function or class, top-level statements that only use it (calls,
    prints, loops, `input()`, assignments computed by calling its own functions) are left out, as
    EvalPlus's sanitizer does: an answer is judged on what it defines, not on a demo that may read
    stdin or print. Imports, definitions, constants and `try` blocks (guarded imports) stay. Code
    without a definition (a script) is kept whole.
    """
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return code
    if not _has_definition(tree):
        return code
    own = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)}

    def calls_own(node: ast.AST) -> bool:
        """Does the statement call the answer's own functions, or read input / print (a demo)?"""
        demo = own | {"input", "print", "open", "exit", "quit"}
        return any(
            isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in demo for n in ast.walk(node)
        )

    kept: list[ast.stmt] = []
    for node in tree.body:
        if isinstance(
            node, ast.Import | ast.ImportFrom | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Try
        ):
            kept.append(node)
        elif isinstance(node, ast.Assign | ast.AnnAssign) and not calls_own(node):
            kept.append(node)
    lines = code.splitlines()
    parts = []
    for node in kept:
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        parts.append("\n".join(lines[start - 1 : node.end_lineno]))
    return "\n".join(parts) + "\n"


def defined_functions(code: str) -> list[str]:
    """Top-level function names of `code`, in order (none when it does not parse)."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return []
    return [n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def _defined_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


def called_names(assertion: str, preamble: str = "") -> tuple[str, ...]:
    """Names an assert calls that neither Python nor the preamble defines: the functions under test."""
    try:
        tree = ast.parse(assertion)
        known = _defined_names(ast.parse(preamble)) if preamble else set()
    except (SyntaxError, ValueError):
        return ()
    bound = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            name = node.func.id
            if name not in _BUILTINS and name not in known and name not in bound and name not in out:
                out.append(name)
    return tuple(out)


def parse_tests(text: str, writer: str, *, limit: int = MAX_TESTS_PER_WRITER) -> list[UnitTest]:
    """The usable asserts of a test writer's reply (at most `limit`), each with the writer's preamble.

    An assert counts only when it calls a function the solution must define; asserts that call
    nothing of the solution (`assert True`, `assert 1 + 1 == 2`) test nothing and are left out.
    """
    blocks = [body for tag, body in _FENCE.findall(text) if tag.lower() in _PYTHON_TAGS]
    source = "\n".join(blocks) if blocks else text
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        # Keep what parses line by line: small models add prose after the asserts, or are cut off
        # in the middle of the last one.
        lines = [
            line.strip() for line in source.splitlines() if line.strip().startswith(("assert ", "import ", "from "))
        ]
        tree = ast.Module(body=[], type_ignores=[])
        for line in lines:
            try:
                tree.body.extend(ast.parse(line).body)
            except (SyntaxError, ValueError):
                continue
    preamble_nodes = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    preamble = "\n".join(ast.unparse(n) for n in preamble_nodes)
    tests: list[UnitTest] = []
    seen: set[str] = set()
    for node in tree.body:
        if not isinstance(node, ast.Assert):
            continue
        assertion = ast.unparse(node)
        if len(assertion) > MAX_TEST_CHARS or assertion in seen:
            continue
        calls = called_names(assertion, preamble)
        if not calls:
            continue
        seen.add(assertion)
        tests.append(UnitTest(id="", writer=writer, assertion=assertion, preamble=preamble, calls=calls))
        if len(tests) >= limit:
            break
    return tests


def binding_for(code: str, names: tuple[str, ...]) -> dict[str, str]:
    """How the names a test calls map onto an answer's functions when the answer named them otherwise.

    A name the answer defines needs nothing. Otherwise it is bound to the answer's only top-level
    function, or to the one whose name is closest (difflib ratio 0.6 or more); with no such
    function it stays unbound and the test fails with a NameError, as it should.
    """
    functions = defined_functions(code)
    if not functions:
        return {}
    try:
        defined = _defined_names(ast.parse(code))
    except (SyntaxError, ValueError):
        return {}
    public = [f for f in functions if not f.startswith("_")] or functions
    out: dict[str, str] = {}
    for name in names:
        if name in defined:
            continue
        if len(public) == 1:
            out[name] = public[0]
            continue
        scored = sorted(((difflib.SequenceMatcher(None, name, f).ratio(), f) for f in public), reverse=True)
        if scored and scored[0][0] >= 0.6:
            out[name] = scored[0][1]
    return out


def _prologue() -> str:
    return f"__name__ = {SOLUTION_MODULE!r}\n"


def _epilogue() -> str:
    # Straight to the descriptor: immune to a program that replaced or closed sys.stdout.
    return f"\n__import__('os').write(1, b'\\n{DONE_MARKER}\\n')\n"


def load_program(code: str) -> str:
    """The answer's code alone: does it load (define its functions) without an error?"""
    return _prologue() + code + _epilogue()


def unit_test_program(code: str, test: UnitTest, binding: dict[str, str]) -> str:
    """The answer's code, the name binding, then the test (run as the main module)."""
    shim = "".join(f"{name} = {target}\n" for name, target in sorted(binding.items()))
    return _prologue() + code + "\n" + shim + "__name__ = '__main__'\n" + test.source() + _epilogue()
