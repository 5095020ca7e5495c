"""A static check of untrusted network code: rejects what a network definition never needs.

It reads the code's AST only (nothing runs) and is cheap, so the search process runs it
before it spends a sandbox call, and the sandboxed child runs it again right before it
executes the code. It is a first filter, not the wall: a determined program may find a
way past any check of Python source, and the child's limits, namespaces and Landlock
rules (:mod:`llmatic.sandbox._confine`) are what hold then. What it rejects, by rule:

* **imports** of anything but :data:`ALLOWED_IMPORTS` (torch, torch.nn,
  torch.nn.functional, torch.nn.init, math, typing, collections, functools, itertools,
  ``__future__``); star imports and relative imports. ``operator`` is left out on
  purpose: ``attrgetter`` and ``methodcaller`` reach any attribute by a computed name.
* **builtins** that run code, touch files or expose scopes (:data:`FORBIDDEN_BUILTINS`:
  ``eval``, ``exec``, ``compile``, ``open``, ``globals``, ``locals``, ``vars``,
  ``breakpoint``, ``input``, ...) named anywhere, called or not; and the names of
  :data:`FORBIDDEN_MODULES` (``os``, ``sys``, ``subprocess``, ...) anywhere.
* **dunder names**: any ``__x__`` name (``__builtins__``, ``__import__``) and any
  ``__x__`` attribute (``__class__``, ``__subclasses__``, ``__globals__``, ``__dict__``)
  except a called ``__init__`` (``super().__init__()``, ``nn.Module.__init__(self)``);
  string constants that spell a dunder name (docstrings excepted). Defining methods
  with dunder names (``__init__``, ``__call__``) is fine.
* **private attributes** (``_x``) of anything but ``self`` and ``cls``: ``torch._C``,
  ``torch._dynamo``, ``x._cdata``.
* **dangerous parts of torch**: any attribute chain rooted at a module that passes through
  :data:`FORBIDDEN_MODULE_ATTRIBUTES` (``torch.ops``, ``torch.classes``, ``torch.hub``,
  ``torch.load``, ``torch.save``, ``torch.jit``, ``torch.compile``,
  ``torch.multiprocessing``, ``torch.distributed``, ``torch.library``, ...) or
  ``torch.utils`` (``nn.utils`` is fine); and, on any object,
  :data:`FORBIDDEN_ATTRIBUTES` (frame and generator internals such as ``gi_frame`` and
  ``f_globals``, ``from_file``, ``tofile``, ``compile``, ``get_type_hints``).
  ``torch.cuda`` is allowed.
* **modules used as values** (``t = torch``, ``f(nn)``): a module may only be the base of
  an attribute access, so no alias can hide it from the rules above; and no assignment to
  or deletion of a module's attributes (``torch.nn.Linear = None``).
* **getattr, setattr, delattr, hasattr** used other than as a direct call, or with an
  attribute name that is not visibly safe: a string constant that passes the attribute
  rules, or (on objects other than modules) an f-string, ``+``, ``%`` or ``.format``
  whose literal start is not an underscore (``getattr(self, f"edge_{i}_{j}")``).

Code that does not parse passes: the child's ``compile`` reports it as ``syntax_error``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable

from llmatic.errors import CandidateError

#: Modules the code may import (exactly these names; ``from X import y`` needs X here).
ALLOWED_IMPORTS: frozenset[str] = frozenset(
    {
        "__future__",
        "collections",
        "functools",
        "itertools",
        "math",
        "torch",
        "torch.nn",
        "torch.nn.functional",
        "torch.nn.init",
        "typing",
    }
)
#: Modules named in a message of their own; any use of the name is rejected.
FORBIDDEN_MODULES: frozenset[str] = frozenset(
    {
        "builtins",
        "ctypes",
        "gc",
        "importlib",
        "inspect",
        "io",
        "marshal",
        "multiprocessing",
        "os",
        "pathlib",
        "pickle",
        "shutil",
        "signal",
        "socket",
        "subprocess",
        "sys",
        "threading",
    }
)
#: Builtins a network definition never needs: they run code, open files or expose scopes.
FORBIDDEN_BUILTINS: frozenset[str] = frozenset(
    {
        "breakpoint",
        "compile",
        "copyright",
        "credits",
        "eval",
        "exec",
        "exit",
        "globals",
        "help",
        "input",
        "license",
        "locals",
        "open",
        "quit",
        "vars",
    }
)
#: Builtins that reach attributes by name: allowed only as direct calls with a safe name.
ATTRIBUTE_BUILTINS: frozenset[str] = frozenset({"getattr", "setattr", "delattr", "hasattr"})
#: Attributes rejected on any object.
FORBIDDEN_ATTRIBUTES: frozenset[str] = frozenset(
    {
        # Frames, generators, coroutines, tracebacks and code objects: ways to globals.
        "ag_code",
        "ag_frame",
        "co_code",
        "cr_code",
        "cr_frame",
        "f_back",
        "f_builtins",
        "f_code",
        "f_globals",
        "f_locals",
        "gi_code",
        "gi_frame",
        "tb_frame",
        "tb_next",
        # Files and compilers reachable from tensors, storages, modules and typing.
        "compile",
        "cpp_extension",
        "dump",
        "from_file",
        "ForwardRef",
        "get_type_hints",
        "tofile",
    }
)
#: Attributes rejected anywhere in a chain that starts at a module (``torch.x.y``).
FORBIDDEN_MODULE_ATTRIBUTES: frozenset[str] = FORBIDDEN_MODULES | frozenset(
    {
        "classes",
        "distributed",
        "hub",
        "jit",
        "library",
        "load",
        "ops",
        "package",
        "save",
        "serialization",
        "torch",
    }
)
#: Names the child's namespaces bind to modules without an import.
NAMESPACE_MODULES: dict[str, str] = {
    "torch": "torch",
    "nn": "torch.nn",
    "F": "torch.nn.functional",
}

_ALLOWED_TEXT = "only " + ", ".join(sorted(ALLOWED_IMPORTS - {"__future__"})) + " may be imported"
_DUNDER = re.compile(r"__\w+__")
_SELF_NAMES = frozenset({"self", "cls"})


def check_code(code: str) -> str | None:
    """Why ``code`` must not run, as ``"line N: ..."``; ``None`` if it passes.

    Never raises: code that does not parse passes (running it reports the syntax
    error), and code too deeply nested to parse is rejected.
    """
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return None
    except (RecursionError, MemoryError):
        return "line 1: the code is too deeply nested to check"
    return _Checker(tree).first_violation()


def ensure_allowed(code: str) -> None:
    """Raises ``CandidateError("forbidden_code", reason)`` if :func:`check_code` rejects it."""
    reason = check_code(code)
    if reason is not None:
        raise CandidateError("forbidden_code", reason)


class _Checker:
    """One pass over a parsed module; collects every violation with its position."""

    def __init__(self, tree: ast.Module) -> None:
        self.nodes = list(ast.walk(tree))
        self.parent: dict[ast.AST, ast.AST] = {}
        for node in self.nodes:
            for child in ast.iter_child_nodes(node):
                self.parent[child] = node
        self.modules = dict(NAMESPACE_MODULES)
        for node in self.nodes:
            self.modules.update(_module_bindings(node))
        self.violations: list[tuple[int, int, str]] = []

    def first_violation(self) -> str | None:
        for node in self.nodes:
            for message in self._check(node):
                line = getattr(node, "lineno", 1)
                self.violations.append((line, getattr(node, "col_offset", 0), message))
        if not self.violations:
            return None
        line, _, message = min(self.violations)
        return f"line {line}: {message}"

    def _check(self, node: ast.AST) -> Iterable[str]:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield from _check_import(node)
        elif isinstance(node, ast.Name):
            yield from self._check_name(node)
        elif isinstance(node, ast.Attribute):
            yield from self._check_attribute(node)
        elif isinstance(node, ast.Call):
            yield from self._check_call(node)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
            yield from self._check_constant(node)

    def _check_name(self, node: ast.Name) -> Iterable[str]:
        name = node.id
        if _DUNDER.fullmatch(name):
            yield f"uses the name {name}"
        elif name in FORBIDDEN_BUILTINS:
            yield f"uses {name}()"
        elif name in FORBIDDEN_MODULES:
            yield f"uses the module {name}"
        elif name in ATTRIBUTE_BUILTINS and not self._is_called(node):
            yield f"uses {name} other than as a direct call"
        elif name in self.modules and isinstance(node.ctx, ast.Load):
            parent = self.parent.get(node)
            base_of_attribute = isinstance(parent, ast.Attribute) and parent.value is node
            if not (base_of_attribute or self._is_called(node)):
                yield f"uses the module {name} as a value (only its attributes may be used)"

    def _check_attribute(self, node: ast.Attribute) -> Iterable[str]:
        attr = node.attr
        if _DUNDER.fullmatch(attr):
            if not (attr == "__init__" and self._is_called(node)):
                yield f"accesses {attr}"
            return
        if attr.startswith("_") and not _is_self(node.value):
            yield f"accesses the private attribute {attr}"
            return
        if attr in FORBIDDEN_ATTRIBUTES:
            yield f"accesses {attr}"
            return
        path = self._module_path(node)
        if path is None:
            return
        if not isinstance(node.ctx, ast.Load):
            yield f"changes the module attribute {path}"
        elif attr in FORBIDDEN_MODULE_ATTRIBUTES:
            yield f"accesses {path}"
        elif path == "torch.utils" and not self._is_checkpoint(node):
            yield "accesses torch.utils"

    def _check_call(self, node: ast.Call) -> Iterable[str]:
        func = node.func
        if not (isinstance(func, ast.Name) and func.id in ATTRIBUTE_BUILTINS):
            return
        if len(node.args) < 2:
            return  # a TypeError when it runs
        target, name = node.args[0], node.args[1]
        on_module = self._module_path(target) is not None or (
            isinstance(target, ast.Name) and target.id in self.modules
        )
        if isinstance(name, ast.Constant) and isinstance(name.value, str):
            attr = name.value
            if _DUNDER.fullmatch(attr):
                yield f"{func.id}() of {attr}"
            elif attr.startswith("_") and not _is_self(target):
                yield f"{func.id}() of the private attribute {attr}"
            elif attr in FORBIDDEN_ATTRIBUTES or (
                on_module and attr in FORBIDDEN_MODULE_ATTRIBUTES
            ):
                yield f"{func.id}() of {attr}"
            elif on_module and func.id != "hasattr":
                yield f"{func.id}() on a module (use the attribute itself)"
        elif on_module:
            yield f"{func.id}() on a module with a computed name"
        elif not _has_safe_prefix(name):
            yield f"{func.id}() with a computed name that may start with an underscore"

    def _check_constant(self, node: ast.Constant) -> Iterable[str]:
        parent = self.parent.get(node)
        if isinstance(parent, ast.Expr):
            return  # a docstring or a bare string statement: it does nothing
        value = node.value
        text = value if isinstance(value, str) else value.decode("latin-1")
        match = _DUNDER.search(text)
        if match:
            yield f"a string spells the dunder name {match.group(0)}"

    def _is_called(self, node: ast.AST) -> bool:
        parent = self.parent.get(node)
        return isinstance(parent, ast.Call) and parent.func is node

    def _module_path(self, node: ast.AST) -> str | None:
        """``"torch.nn.Linear"`` for a pure attribute chain rooted at a module, else None."""
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not (parts and isinstance(node, ast.Name) and node.id in self.modules):
            return None
        return ".".join([self.modules[node.id], *reversed(parts)])

    def _is_checkpoint(self, node: ast.Attribute) -> bool:
        parent = self.parent.get(node)
        return isinstance(parent, ast.Attribute) and parent.attr == "checkpoint"


def _check_import(node: ast.Import | ast.ImportFrom) -> Iterable[str]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name not in ALLOWED_IMPORTS:
                yield f"imports {alias.name} ({_ALLOWED_TEXT})"
        return
    if node.level:
        yield "uses a relative import"
        return
    module = node.module or ""
    if module not in ALLOWED_IMPORTS:
        yield f"imports from {module} ({_ALLOWED_TEXT})"
        return
    for alias in node.names:
        name = alias.name
        if name == "*":
            yield f"uses from {module} import *"
        elif name.startswith("_") and module != "__future__":
            yield f"imports the private name {module}.{name}"
        elif name in FORBIDDEN_MODULE_ATTRIBUTES or name in FORBIDDEN_ATTRIBUTES:
            yield f"imports {module}.{name}"
        elif name in ATTRIBUTE_BUILTINS or name in FORBIDDEN_BUILTINS:
            yield f"imports {name}"
        elif module == "torch" and name == "utils":
            yield "imports torch.utils"


def _module_bindings(node: ast.AST) -> dict[str, str]:
    """Names an import statement binds to modules: ``{"F": "torch.nn.functional"}``."""
    bound: dict[str, str] = {}
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.asname:
                bound[alias.asname] = alias.name
            else:  # ``import torch.nn`` binds ``torch``
                top = alias.name.split(".")[0]
                bound[top] = top
    elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
        for alias in node.names:
            full = f"{node.module}.{alias.name}"
            if full in ALLOWED_IMPORTS:
                bound[alias.asname or alias.name] = full
    return bound


def _is_self(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id in _SELF_NAMES


def _has_safe_prefix(node: ast.AST) -> bool:
    """Whether the string ``node`` computes visibly starts with a non-underscore character."""
    while True:
        if isinstance(node, ast.Constant):
            return isinstance(node.value, str) and node.value[:1] not in ("", "_", "%", "{")
        if isinstance(node, ast.JoinedStr):
            return bool(node.values) and _has_safe_prefix(node.values[0])
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mod):
            node = node.left
            continue
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "format"
            and isinstance(node.func.value, ast.Constant)
        ):
            node = node.func.value
            continue
        return False
