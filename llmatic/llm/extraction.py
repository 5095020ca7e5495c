"""Cutting the Python class out of an LLM's output, by parsing only (nothing is executed).

An LLM's output (prefill plus continuation) may wrap the code in markdown fences, talk
before and after it, stop in the middle of a line, or run on into a usage example. We keep
the longest run of lines that parses, then only the module-level statements a network
definition needs: imports, classes, functions and assignments, up to the wanted class.
"""

from __future__ import annotations

import ast
import re
import textwrap

from llmatic.errors import CandidateError

# Lines that can begin the code: an import, a class or function definition, a decorator.
_START = re.compile(r"(import\s|from\s+[\w.]+\s+import\s|class\s|def\s|async\s+def\s|@)")
_CLASS_LINE = re.compile(r"^[ \t]*class\s+\w+\s*[(:]", re.MULTILINE)
_FENCE = re.compile(r"^[ \t]*(```|~~~)")

#: Stop sequences that end a completion writing a whole class: a next class, a docstring
#: or comment at the top level, a main block, a long gap, a closing fence.
CLASS_STOP = ("\nclass ", '\n"""', "\n#", "\nif __name__", "\n\n\n", "```")

_KEPT = (
    ast.Import,
    ast.ImportFrom,
    ast.ClassDef,
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.Assign,
)


def extract_class_code(text: str, *, class_name: str | None = None, truncated: bool = False) -> str:
    """Returns the module-level source that defines the class(es) in ``text``.

    Args:
        text: What should contain a Python class: the prefill followed by the generated
            continuation, possibly fenced, with chatter around it or cut mid-line.
        class_name: The class wanted. When ``text`` defines it, the result ends with it
            (helpers defined before it are kept, everything after it is dropped); otherwise
            the result keeps every class.
        truncated: The generation hit its token limit, so the last line of ``text`` is
            incomplete even when it parses (``x = self.e``) and is dropped.

    Returns:
        Source holding the import lines, helper functions, assignments and class
        definitions, in their original order and spelling; it always compiles.

    Raises:
        CandidateError: ``no_code`` when ``text`` holds no class definition, ``syntax_error``
            when it does but no class parses. Nothing else is ever raised.
    """
    try:
        return _extract(text, class_name, truncated)
    except CandidateError:
        raise
    except Exception as err:  # a bug or an exotic input must not crash the search loop
        raise CandidateError(
            "syntax_error", f"cannot extract code ({type(err).__name__})"
        ) from None


def _extract(text: str, class_name: str | None, truncated: bool) -> str:
    text = str(text).replace("\r\n", "\n").replace("\r", "\n")
    if truncated:
        text = text.rpartition("\n")[0]
    if not _CLASS_LINE.search(text):
        raise CandidateError("no_code", "no class definition in the completion")
    lines = _code_segment(text, class_name).split("\n")

    nodes: list[tuple[ast.stmt, list[str]]] = []  # each node with the lines it was parsed from
    pos = _next_start(lines, 0)
    while pos < len(lines):
        end, tree = _longest_parsing_prefix(lines, pos)
        if tree is None:
            pos = _next_start(lines, pos + 1)
            continue
        chunk = lines[pos:end]
        nodes.extend((node, chunk) for node in tree.body if isinstance(node, _KEPT))
        if class_name is not None and any(_is_class(n, class_name) for n in tree.body):
            break
        pos = _next_start(lines, end)

    classes = [i for i, (node, _) in enumerate(nodes) if isinstance(node, ast.ClassDef)]
    if not classes:
        raise CandidateError("syntax_error", "a class is written but no module-level class parses")
    wanted = [i for i in classes if _is_class(nodes[i][0], class_name)]
    # Everything after the wanted (or else the last) class is usage code or a restart.
    last = wanted[0] if wanted else classes[-1]
    source = "\n".join(_source_of(node, chunk) for node, chunk in nodes[: last + 1]) + "\n"
    try:
        compile(source, "<candidate>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as err:
        # Parses but does not compile, e.g. `return` directly in a class body.
        raise CandidateError(
            "syntax_error", f"line {getattr(err, 'lineno', None)}: {err.msg}"
        ) from None
    return source


def _is_class(node: ast.stmt, class_name: str | None) -> bool:
    return isinstance(node, ast.ClassDef) and class_name is not None and node.name == class_name


def _code_segment(text: str, class_name: str | None) -> str:
    """The fenced block holding the (wanted) class, or the whole text when there is none.

    The text is split at fence lines; an unclosed fence runs to the end. The prefill that
    begins the text sits before any fence, so the first segment can hold code too.
    """
    segments: list[list[str]] = [[]]
    for line in text.split("\n"):
        if _FENCE.match(line):
            segments.append([])
        else:
            segments[-1].append(line)
    if len(segments) == 1:
        return text
    blocks = ["\n".join(segment) for segment in segments]
    if class_name is not None:
        wanted = re.compile(rf"^[ \t]*class\s+{re.escape(class_name)}\s*[(:]", re.MULTILINE)
        for block in blocks:
            if wanted.search(block):
                return textwrap.dedent(block)
    for block in blocks:
        if _CLASS_LINE.search(block):
            return textwrap.dedent(block)
    return text


def _next_start(lines: list[str], pos: int) -> int:
    """Index of the first line at or after ``pos`` that can begin code; ``len(lines)`` if none."""
    for index in range(pos, len(lines)):
        if _START.match(lines[index]):
            return index
    return len(lines)


def _longest_parsing_prefix(lines: list[str], pos: int) -> tuple[int, ast.Module | None]:
    """The largest ``end`` such that ``lines[pos:end]`` parses, with its tree.

    The syntax error's line number bounds where the parsable prefix can end, so most texts
    take a few parses rather than one per line.
    """
    end = len(lines)
    while end > pos:
        try:
            return end, ast.parse("\n".join(lines[pos:end]))
        except SyntaxError as err:
            line = err.lineno if isinstance(err.lineno, int) else None
            # Lines before the reported one may parse; the reported one is kept only when the
            # error is "unexpected end" at the last line (then we drop it next round).
            bound = pos + line - 1 if line is not None and line >= 1 else end - 1
            end = min(end - 1, max(bound, pos))
        except (ValueError, RecursionError, MemoryError):  # null bytes, absurd nesting
            end -= 1
    return pos, None


def _source_of(node: ast.stmt, chunk: list[str]) -> str:
    """The original text of a module-level statement, decorators included."""
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    if node.end_lineno is None or node.end_col_offset is None:
        return ast.unparse(node)
    segment = chunk[first - 1 : node.end_lineno]
    if not segment:
        return ast.unparse(node)
    # Cut whatever shares the last line after a ';' (e.g. `import torch; print(1)`).
    segment[-1] = segment[-1].encode()[: node.end_col_offset].decode(errors="ignore")
    start_col = node.col_offset if first == node.lineno else 0
    segment[0] = segment[0].encode()[start_col:].decode(errors="ignore")
    return "\n".join(segment)
