"""Error text as data: what a failure inside the sandbox child may say about itself.

Everything a validation error contains is chosen here from fixed text: an exception category by type, a
few numbers or dtype names pulled out of torch's own messages, allow-listed operation names and candidate line
numbers. Exception messages are never copied, so an error cannot carry file contents, environment values or
text the candidate chose; and it is bounded (`MAX_ERROR_CHARS`).
"""

from __future__ import annotations

import re
import traceback

from sandbox.graph import GraphError
from sandbox.interpreter import GraphRuntimeError
from sandbox.namespace import CANDIDATE_FILENAME

MAX_ERROR_CHARS = 1000

CATEGORIES: dict[str, str] = {
    "SandboxRefusal": "the sandbox refused a file, process, signal or network operation",
    "MemoryError": "out of memory: the loss allocates far too much",
    "RecursionError": "recursion is too deep",
    "ZeroDivisionError": "division by zero in Python arithmetic",
    "OverflowError": "a number is too large",
    "AssertionError": "an assert statement failed",
    "UnboundLocalError": "a local variable is used before it is assigned",
    "NameError": "a name is not defined",
    "AttributeError": "an attribute does not exist",
    "ImportError": "an import was refused (only torch, torch.nn.functional and math)",
    "IndexError": "an index is out of range",
    "KeyError": "a key was not found",
    "LookupError": "a lookup failed (a module the sandbox did not load?)",
    "NotImplementedError": "an operation is not implemented for these inputs",
    "TypeError": "a function got arguments of the wrong type or number (a tensor where a number is needed?)",
    "ValueError": "a function got an invalid value",
    "OSError": "an operating-system call was refused or failed",
    "RuntimeError": "a tensor operation failed",
    "ArithmeticError": "an arithmetic error",
    "SystemExit": "the code tried to exit",
    "Exception": "the code raised an exception",
}

# (pattern in torch's message, template using only the captured numbers / dtype names)
_DETAILS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(
            r"size of tensor a \((\d+)\) must match the size of tensor b \((\d+)\) at non-singleton "
            r"dimension (\d+)"
        ),
        "shapes do not broadcast: sizes {0} and {1} at dimension {2}",
    ),
    (
        re.compile(r"shapes cannot be multiplied \((\d+x\d+) and (\d+x\d+)\)"),
        "matrix shapes cannot be multiplied: {0} and {1}",
    ),
    (
        re.compile(r"1D tensors expected, (?:but )?got (\d+)D and (\d+)D"),
        "1-D tensors expected, got {0}-D and {1}-D",
    ),
    (
        re.compile(
            r"expected (?:scalar type|dtype) (Float|Double|BFloat16|Half|Long|Int|Bool)"
            r" but found (Float|Double|BFloat16|Half|Long|Int|Bool)"
        ),
        "mixed dtypes: expected {0}, found {1}",
    ),
    (re.compile(r"Dimension out of range"), "a dimension is out of range (the inputs are 1-D)"),
    (re.compile(r"only one element tensors can be converted"), "a tensor was used where a number is needed"),
    (
        re.compile(r"does not support item assignment"),
        "item or slice assignment writes into a tensor in place; build a new one with torch.where or torch.cat",
    ),
    (
        re.compile(r"must be real number, not Proxy|argument must be .*not 'Proxy'|Proxy"),
        "a Python or math function was given a tensor or beta; use torch functions on tensors",
    ),
    (re.compile(r"__cuda_array_interface__"), "this function needs a plain number, not a tensor or beta"),
)


def _category(exc: BaseException) -> str:
    for cls in type(exc).__mro__:
        if cls.__name__ in CATEGORIES and (cls.__module__ in ("builtins", "sandbox.audit")):
            return cls.__name__
    return "Exception"


def _detail(exc: BaseException) -> str | None:
    try:
        text = str(exc)[:2000]
    except Exception:
        return None
    for pattern, template in _DETAILS:
        match = pattern.search(text)
        if match:
            return template.format(*match.groups())
    return None


def candidate_line_of(exc: BaseException) -> int | None:
    """The deepest line of candidate code in the exception's traceback."""
    line = None
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        if frame.f_code.co_filename == CANDIDATE_FILENAME:
            line = lineno
    return line


def exception_text(exc: BaseException) -> str:
    """`Category: fixed text (detail)` for an exception raised by or inside candidate code."""
    name = _category(exc)
    detail = _detail(exc)
    return f"{name}: {CATEGORIES[name]}" + (f" ({detail})" if detail else "")


def describe_exception(exc: BaseException) -> str:
    """`exception_text`, with the candidate line it was raised at."""
    line = candidate_line_of(exc)
    return bounded(exception_text(exc) + ("" if line is None else f" at line {line}"))


def describe_graph_failure(exc: GraphRuntimeError) -> str:
    """What failed while a graph ran: the node's allow-listed operation, its line, and the cause's category."""
    where = f"line {exc.line}: " if exc.line is not None else f"node {exc.node}: "
    text = f"{where}`{exc.target}` {exc.message}"
    if exc.__cause__ is not None:
        text += f": {exception_text(exc.__cause__)}"
    return bounded(text)


def describe_graph_error(exc: GraphError) -> str:
    """A graph rejected by the validator (its text names allow-listed names and node indices only)."""
    return bounded(str(exc))


def bounded(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."
