"""A static check of untrusted network code: it lets through only what a network needs.

It reads the code's AST only (nothing runs) and is cheap, so the search process runs it
before it spends a sandbox call, and the sandboxed child runs it again right before it
executes the code. It is the first wall, not the last: a determined program may find a
way past any check of Python source, and the child's limits and confinement
(:mod:`llmatic.sandbox._confine`) are what hold then.

The check is an **allow-list**. Every name, attribute and construct must be one a
network definition uses; anything else is rejected, as ``"line N: reason"``:

* **Imports**: only :data:`ALLOWED_IMPORTS`, no star or relative imports, and ``from M
  import x`` only for an ``x`` that :data:`MODULE_ATTRIBUTES` allows on ``M``.
  ``operator`` is left out on purpose: ``attrgetter`` and ``methodcaller`` reach any
  attribute by a computed name.
* **Names**: a name must be bound by the code itself (an assignment, ``def``, ``class``,
  parameter, import, loop, ``with``, ``except ... as``), be a namespace name the child
  provides (:data:`NAMESPACE_MODULES`, :data:`NAMESPACE_VALUES`) or a builtin of
  :data:`SAFE_BUILTINS` (``range``, ``len``, ``isinstance``, ``super``, ``print``, the
  ``Exception`` classes, ...). Any other builtin (``eval``, ``open``, ``vars``,
  ``input``, ``memoryview``, ``type``, ...) only where a function's own parameter or
  local hides it: ``type`` not even as ``type(x)``, since ``type(type(x))`` is ``type``,
  whose three-argument call makes a class past the class rules. ``getattr``, ``setattr``,
  ``delattr``, ``hasattr`` only as direct calls with a visibly safe name (a string
  constant, or an f-string, ``+``, ``%`` or ``.format`` whose literal start can begin no
  forbidden or private name: ``getattr(self, f"edge_{i}")``), and never rebound. A
  module's name is bound to that module only. No dunder name but a read of ``__name__``
  (``if __name__ == "__main__":``).
* **Module attributes**: a chain rooted at a module (``torch``, ``nn``, ``F``, ``math``,
  ``typing``, ...) may take, at each step, only an attribute that
  :data:`MODULE_ATTRIBUTES` lists for that module: derived from the real modules where
  that is principled (torch's ATen operators and dtypes, ``nn``'s layer classes, the
  functions of ``F``, ``nn.init``, ``torch.linalg``/``fft``/``special``, all of
  ``math`` and ``itertools``), listed by hand elsewhere (``typing``'s annotation names,
  ``collections``, ``functools``, ``torch.cuda``'s device queries, ``nn.utils``'
  weight and spectral norms and RNN packing). No list holds a module but the submodules
  that have a list of their own; so ``typing.sys``, ``F.torch``, ``torch.cuda.os``,
  ``torch.load``, ``torch.ops`` and ``torch.utils.data`` are all out. A module may only be
  the base of an attribute (never a value that an alias could hide), and nothing reached
  from one may be assigned or deleted (``torch.nn.Conv2d.forward = f``).
* **Other attributes**: on ``self`` and ``cls`` (the code's own objects, where a missing
  name is a bug that fails when it runs) any name; on other objects (tensors, layers,
  lists, ...) a name in :data:`ATTRIBUTES` (the public attributes of ``torch.Tensor``,
  ``nn.Module`` and every allowed layer class, of the builtin containers and scalars,
  ...) or one the code defines (``x.name = ...``, a method or class attribute, a string
  naming a submodule, the literal start of a computed ``setattr`` name). Never one of
  :data:`FORBIDDEN_ATTRIBUTES` (frame, code and generator internals such as ``gi_frame``
  and ``f_globals``; ``numpy``, ``tofile``, ``from_file``, storages, shared memory,
  ``compile``, module names), even if the code defines it; never a dunder but a called
  ``__init__`` (``super().__init__()``, ``nn.Module.__init__(self)``); private ones
  (``_x``) only on ``self`` and ``cls``, and never a tensor's or storage's
  (:data:`TENSOR_PRIVATE`: any object can be passed as ``self``).
* **Classes** derive only from ``nn.Module`` classes, the code's own classes (names bound
  by ``class`` statements alone) or ``object``; take no keywords (``metaclass=``); define
  no dunder method but ``__init__`` (no ``__eq__``, ``__format__``, ``__del__``,
  ``__getattr__``, ``__reduce__``, ``__init_subclass__``, ``__class_getitem__``,
  ``__call__``): dunder names are never bound at all.
* **Decorators**: ``staticmethod``, ``classmethod``, ``property`` (and its ``.setter``),
  and :data:`DECORATORS` (``torch.no_grad``, ``functools.lru_cache``, ...).
* **Statements**: no ``async``/``await`` and no ``match`` (its class patterns read
  attributes by name); string constants that spell a dunder name are rejected (docstrings
  and ``"__main__"`` excepted). Loops, recursion, generators, ``try``, ``raise``,
  ``assert``, ``global``, ``del``, lambdas and comprehensions are fine.

Code that does not parse passes: the child's ``compile`` reports it as ``syntax_error``.
The allow-lists are built once, at import, from the real module objects (``vars``, so no
lazy import runs, and no torch op: the zygote imports this module before it forks). A
check costs about half a millisecond for an NB201 cell.
"""

from __future__ import annotations

import ast
import builtins
import collections
import contextlib
import functools
import inspect
import itertools
import math
import re
import sys
import types
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.functional
import torch.nn.functional
import torch.nn.utils.parametrizations
import torch.nn.utils.parametrize
import torch.nn.utils.rnn
import torch.return_types
import torch.utils.checkpoint
from torch import nn

from llmatic.errors import CandidateError


def _names(text: str) -> frozenset[str]:
    """The whitespace-separated names in ``text``: long lists stay readable."""
    return frozenset(text.split())


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
#: Names the child's namespaces bind to modules without an import.
NAMESPACE_MODULES: dict[str, str] = {
    "torch": "torch",
    "nn": "torch.nn",
    "F": "torch.nn.functional",
}
#: Names the child's namespaces bind to other values (the NB201 cell's operation table).
NAMESPACE_VALUES: frozenset[str] = frozenset({"OPS"})

#: Builtins that reach attributes by name: allowed only as direct calls with a safe name.
ATTRIBUTE_BUILTINS: frozenset[str] = frozenset({"getattr", "setattr", "delattr", "hasattr"})
#: Builtins the code may name freely: they compute, convert, iterate or print, no more.
SAFE_BUILTINS: frozenset[str] = frozenset(
    {
        *(
            name
            for name, value in vars(builtins).items()
            if isinstance(value, type) and issubclass(value, Exception)
        ),
        *_names(
            "abs all any ascii bin bool bytearray bytes callable chr classmethod complex dict "
            "divmod enumerate filter float format frozenset hash hex id int isinstance "
            "issubclass iter len list map max min next object oct ord pow print property range "
            "repr reversed round set slice sorted staticmethod str sum super tuple zip "
            "Ellipsis NotImplemented"
        ),
    }
)
#: Module names: never an attribute, whatever the object.
FORBIDDEN_MODULES: frozenset[str] = _names(
    "builtins ctypes gc importlib inspect io marshal multiprocessing os pathlib pickle "
    "shutil signal socket subprocess sys threading torch typing"
)
#: Attributes rejected on any object, even one the code defines: the internals of frames,
#: code objects, tracebacks and generators (ways to globals and builtins), and what
#: reads or writes files, shares memory or compiles.
FORBIDDEN_ATTRIBUTES: frozenset[str] = frozenset(
    {
        *(
            name
            for kind, prefix in (
                (types.FrameType, "f_"),
                (types.CodeType, "co_"),
                (types.TracebackType, "tb_"),
                (types.GeneratorType, "gi_"),
                (types.CoroutineType, "cr_"),
                (types.AsyncGeneratorType, "ag_"),
            )
            for name in dir(kind)
            if name.startswith(prefix)
        ),
        *FORBIDDEN_MODULES,
        *_names(
            "call_super_init compile const_data_ptr cpp_extension data_ptr dump dump_patches "
            "dumps ForwardRef from_buffer from_dlpack from_file from_numpy frombuffer fromfile "
            "get_type_hints is_shared load loads module_load mro numpy obj pin_memory popen "
            "record_stream save share_memory share_memory_ storage storage_type system "
            "to_dlpack tofile untyped_storage"
        ),
    }
)
#: Allowed values (``torch.no_grad``) that may decorate a function, called or not.
DECORATORS: frozenset[str] = frozenset(
    {
        "functools.cache",
        "functools.cached_property",
        "functools.lru_cache",
        "torch.enable_grad",
        "torch.inference_mode",
        "torch.no_grad",
    }
)

#: Python-level torch values a network uses, besides the operators and dtypes.
_TORCH_VALUES = _names(
    "Generator Size Tensor autocast device dtype e enable_grad finfo get_default_dtype "
    "iinfo inf inference_mode is_grad_enabled is_tensor manual_seed nan newaxis no_grad pi "
    "set_grad_enabled cuda fft linalg nn special utils"
)
#: Operators that make tensors from files, raw buffers or numpy arrays.
_TORCH_IO = frozenset({"from_file", "from_numpy", "frombuffer"})
#: ATen kernels of single backends, fed raw packed weights: a network reaches them via F.
_BACKEND_PREFIXES = ("cudnn_", "fbgemm_", "miopen_", "mkldnn_")
#: Layers that replicate a network over devices or processes: the trainer's business.
_NOT_LAYERS = frozenset({"DataParallel", "DistributedDataParallel"})
#: Attributes that layers and parametrizations set on their instances, which their
#: classes do not declare.
_INSTANCE_ATTRIBUTES = _names(
    "activation_relu_or_gelu dropout1 dropout2 dropout3 head_dim in_proj_bias "
    "in_proj_weight k_proj_weight layers linear1 linear2 multihead_attn norm1 norm2 norm3 "
    "num_batches_tracked original original0 original1 out_proj parametrizations "
    "q_proj_weight running_mean running_var self_attn v_proj_weight weight_g weight_orig "
    "weight_u weight_v"
)
#: What the code may use of torch.cuda: device queries, seeding, the cache.
_CUDA = _names(
    "current_device device_count empty_cache is_available manual_seed manual_seed_all synchronize"
)
#: What the code may use of nn.utils and its submodules: weight and spectral norms,
#: parametrizations, RNN sequence packing, parameter vectors and gradient clipping.
_NN_UTILS = {
    "torch.nn.utils": _names(
        "clip_grad_norm_ clip_grad_value_ parameters_to_vector parametrizations parametrize "
        "remove_spectral_norm remove_weight_norm rnn skip_init spectral_norm "
        "vector_to_parameters weight_norm"
    ),
    "torch.nn.utils.parametrizations": frozenset({"orthogonal", "spectral_norm", "weight_norm"}),
    "torch.nn.utils.parametrize": frozenset(
        {"cached", "is_parametrized", "register_parametrization", "remove_parametrizations"}
    ),
    "torch.nn.utils.rnn": _names(
        "PackedSequence pack_padded_sequence pack_sequence pad_packed_sequence pad_sequence "
        "unpack_sequence unpad_sequence"
    ),
}
#: The names of ``typing`` that annotations use.
_TYPING = _names(
    "Any Callable ClassVar DefaultDict Deque Dict Final FrozenSet Iterable Iterator List "
    "Literal Mapping MutableMapping Optional OrderedDict Sequence Set TYPE_CHECKING Tuple "
    "Type Union cast"
)
#: Types whose public attributes are what a network calls on its values.
_VALUE_TYPES: tuple[type, ...] = (
    torch.Tensor,
    nn.Parameter,
    torch.Size,
    torch.dtype,
    torch.device,
    torch.finfo,
    torch.iinfo,
    torch.Generator,
    nn.utils.rnn.PackedSequence,
    *(value for value in vars(torch.return_types).values() if isinstance(value, type)),
    bool,
    int,
    float,
    complex,
    str,
    bytes,
    bytearray,
    list,
    tuple,
    dict,
    set,
    frozenset,
    range,
    slice,
    property,
    BaseException,
    collections.OrderedDict,
    collections.defaultdict,
    collections.deque,
    collections.Counter,
    functools.partial,
    itertools.chain,
    types.GeneratorType,
)
#: The flattened weights of recurrent layers: ``weight_ih_l0``, ``bias_hh_l1_reverse``.
_RNN_WEIGHT = re.compile(r"(?:weight|bias)_(?:ih|hh|hr)_l\d+(?:_reverse)?")
_DUNDER = re.compile(r"__\w+__")
_SELF_NAMES = frozenset({"self", "cls"})
_PROPERTY_PARTS = frozenset({"setter", "getter", "deleter"})
#: Methods that name an attribute of ``self`` by their first argument.
_NAMING_METHODS = frozenset(
    {"add_module", "register_buffer", "register_module", "register_parameter"}
)
_MAX_MESSAGE = 240


def _is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def _public(module: types.ModuleType) -> dict[str, Any]:
    """A module's public globals; ``vars``, not ``getattr``, so no lazy import runs."""
    return {name: value for name, value in vars(module).items() if not name.startswith("_")}


def _functions(module: types.ModuleType, *homes: str) -> set[str]:
    """Public functions that ``module`` defines or takes from one of torch's C ``homes``.

    Filtering by the defining module leaves out what ``module`` merely imported
    (``typing.Optional``, ``handle_torch_function``, modules).
    """
    wanted = {module.__name__, *homes}
    return {
        name
        for name, value in _public(module).items()
        if callable(value)
        and not isinstance(value, type)
        and getattr(value, "__module__", None) in wanted
    }


def _torch_names() -> set[str]:
    """torch's ATen operators (minus file, buffer and numpy ones), dtypes and a few values."""
    public = _public(torch)
    operators = {name for name in dir(torch._C._VariableFunctions) if name in public}
    operators |= set(torch.functional.__all__) & public.keys()
    kinds = (torch.dtype, torch.memory_format, torch.layout)
    constants = {name for name, value in public.items() if isinstance(value, kinds)}
    tensor_types = {
        name
        for name, value in public.items()
        if name.endswith("Tensor") and isinstance(value, type)
    }
    names = (operators | constants | tensor_types | _TORCH_VALUES) - _TORCH_IO
    return {name for name in names if not name.startswith(_BACKEND_PREFIXES)}


def _nn_names() -> set[str]:
    """nn's layer classes, parameters and buffers, and its functional, init and utils."""
    layers = {
        name
        for name, value in _public(nn).items()
        if isinstance(value, type) and issubclass(value, nn.Module)
    }
    extras = "Buffer Parameter UninitializedBuffer UninitializedParameter functional init utils"
    return (layers - _NOT_LAYERS) | set(extras.split())


def _resolvable(path: str, names: Iterable[str], table: dict[str, Any]) -> frozenset[str]:
    """The ``names`` that exist on module ``path``; a module only if it has a list in ``table``."""
    namespace = vars(sys.modules[path])
    kept = set()
    for name in names:
        if name not in namespace:
            continue
        value = namespace[name]
        child = f"{path}.{name}"
        if isinstance(value, types.ModuleType) and not (
            child in table and value is sys.modules.get(child)
        ):
            continue
        kept.add(name)
    return frozenset(kept)


def _module_attributes() -> dict[str, frozenset[str]]:
    wanted: dict[str, Any] = {
        "torch": _torch_names(),
        "torch.nn": _nn_names(),
        "torch.nn.functional": _functions(nn.functional, "torch", "torch._C._nn"),
        "torch.nn.init": _functions(nn.init),
        **_NN_UTILS,
        "torch.cuda": _CUDA,
        "torch.linalg": _functions(torch.linalg, "torch._C._linalg"),
        "torch.fft": _functions(torch.fft, "torch._C._fft"),
        "torch.special": _functions(torch.special, "torch._C._special"),
        "torch.utils": {"checkpoint"},
        "torch.utils.checkpoint": {"checkpoint", "checkpoint_sequential"},
        "math": set(_public(math)),
        "typing": _TYPING,
        "collections": {"Counter", "OrderedDict", "defaultdict", "deque", "namedtuple"},
        "functools": {"cache", "cached_property", "lru_cache", "partial", "reduce"},
        "itertools": set(_public(itertools)),
    }
    return {path: _resolvable(path, names, wanted) for path, names in wanted.items()}


#: For each module a chain may pass through, the attributes it may take there. A name
#: whose value is a module is one of these modules itself.
MODULE_ATTRIBUTES: dict[str, frozenset[str]] = _module_attributes()
#: The ``nn.Module`` classes a class may derive from, by path (``"torch.nn.Conv2d"``).
NN_CLASSES: frozenset[str] = frozenset(
    f"torch.nn.{name}"
    for name in MODULE_ATTRIBUTES["torch.nn"]
    if isinstance(vars(nn)[name], type) and issubclass(vars(nn)[name], nn.Module)
)
_LAYERS: tuple[type, ...] = tuple(vars(nn)[path.rsplit(".", 1)[1]] for path in sorted(NN_CLASSES))


def _declared_attributes(classes: Iterable[type]) -> set[str]:
    """What classes declare: attributes, annotations, ``__constants__``, constructor names."""
    names: set[str] = set()
    for cls in classes:
        names.update(dir(cls))
        for klass in cls.__mro__:
            names.update(inspect.get_annotations(klass))  # its own, and evaluates nothing
            names.update(klass.__dict__.get("__constants__", ()))
        with contextlib.suppress(TypeError, ValueError):
            names.update(inspect.signature(cls).parameters)
    return names


_DECLARED = _declared_attributes((*_VALUE_TYPES, *_LAYERS))
#: Attribute names the code may use on any object that is not a module.
ATTRIBUTES: frozenset[str] = frozenset(
    name
    for name in _DECLARED | _INSTANCE_ATTRIBUTES
    if not name.startswith("_") and name not in FORBIDDEN_ATTRIBUTES
)
#: The private attributes of ``nn.Module``: allowed on ``self`` even where tensors have
#: them too (``_version``, ``_backward_hooks``).
MODULE_PRIVATE: frozenset[str] = frozenset(
    name
    for name in _declared_attributes([nn.Module])
    if name.startswith("_") and not _is_dunder(name) and name not in FORBIDDEN_ATTRIBUTES
)
#: The private attributes of tensors and storages: never allowed, not even on ``self``
#: (any object can be passed as ``self``), unless ``nn.Module`` has them too.
TENSOR_PRIVATE: frozenset[str] = frozenset(
    name
    for kind in (torch.Tensor, torch.UntypedStorage, torch.TypedStorage)
    for name in dir(kind)
    if name.startswith("_") and not _is_dunder(name) and name not in MODULE_PRIVATE
)
_BUILTIN_NAMES = frozenset(dir(builtins))
_ALLOWED_TEXT = "only " + ", ".join(sorted(ALLOWED_IMPORTS - {"__future__"})) + " may be imported"


def check_code(code: str) -> str | None:
    """Why ``code`` must not run, as ``"line N: ..."``; ``None`` if it passes.

    Never raises: code that does not parse passes (running it reports the syntax
    error), and code too deeply nested to check, or that the check fails on, is rejected.
    """
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return None
    except (RecursionError, MemoryError):
        return "line 1: the code is too deeply nested to check"
    try:
        return _Checker(_Scan(tree)).first_violation()
    except (RecursionError, MemoryError):
        return "line 1: the code is too deeply nested to check"
    except Exception as err:  # a bug of the check must reject, never let code through
        return f"line 1: the code could not be checked ({type(err).__name__})"


def ensure_allowed(code: str) -> None:
    """Raises ``CandidateError("forbidden_code", reason)`` if :func:`check_code` rejects it."""
    reason = check_code(code)
    if reason is not None:
        raise CandidateError("forbidden_code", reason)


@dataclass(eq=False)
class _Scope:
    """A module, class or function (lambdas and comprehensions too) and the names it binds."""

    kind: str
    parent: _Scope | None
    bound: set[str] = field(default_factory=set)
    declared_global: set[str] = field(default_factory=set)

    def binds_locally(self, name: str) -> bool:
        """Whether ``name`` here is surely a local or closure variable, never a builtin.

        A module or class body looks a name up in globals and then builtins, so a binding
        there may not have happened yet; a function's binding shadows the builtin always.
        """
        scope: _Scope | None = self
        if self.kind == "class":
            if name in self.bound:
                return False
            scope = self.parent
        while scope is not None and scope.kind != "module":
            if scope.kind != "class":
                if name in scope.declared_global:
                    return False
                if name in scope.bound:
                    return True
            scope = scope.parent
        return False


@dataclass(frozen=True)
class _Ref:
    """What an expression refers to, if it is rooted at a module: a path, module or not."""

    path: str
    is_module: bool


_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
_NAMELESS = (ast.expr_context, ast.operator, ast.unaryop, ast.cmpop, ast.boolop)
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


class _Scan:
    """One walk over the tree: scopes, bindings, parents, and the names the code defines.

    It visits every node once, in source order, with the scope it is evaluated in
    (defaults and decorators in the enclosing scope, a comprehension's first iterable
    too), and records it for the checker.
    """

    def __init__(self, tree: ast.Module) -> None:
        self.visited: list[tuple[ast.AST, _Scope]] = []
        self.parent: dict[ast.AST, ast.AST] = {}
        #: ``(name, kind, node)`` per binding: kind is "class", "module:<path>",
        #: "import:<path>" or "other".
        self.bindings: list[tuple[str, str, ast.AST]] = []
        #: Attribute names the code defines, and literal starts of computed ones.
        self.defined: set[str] = set()
        self.prefixes: set[str] = set()
        #: Names in annotations that ``from __future__ import annotations`` never evaluates.
        self.unevaluated: set[ast.AST] = set()
        self._lazy_annotations = any(
            isinstance(node, ast.ImportFrom)
            and node.module == "__future__"
            and any(alias.name == "annotations" for alias in node.names)
            for node in tree.body
        )
        self._in_annotation = 0
        self._visit(tree, _Scope("module", None))

    def _visit(self, node: ast.AST, scope: _Scope) -> None:
        if isinstance(node, _NAMELESS):
            return  # shared singletons (``Load``, ``Add``) that hold no name
        self.visited.append((node, scope))
        if isinstance(node, _FUNCTIONS):
            self._function(node, scope)
        elif isinstance(node, ast.ClassDef):
            self._class(node, scope)
        elif isinstance(node, _COMPREHENSIONS):
            self._comprehension(node, scope)
        elif isinstance(node, ast.NamedExpr):
            target = scope
            while target.kind == "comprehension" and target.parent is not None:
                target = target.parent
            self._note(node.target, target)
            self._children(node, [node.target], scope, bind=False)
            self._children(node, [node.value], scope)
        else:
            self._note(node, scope)
            self._children(node, ast.iter_child_nodes(node), scope)

    def _children(
        self, node: ast.AST, children: Iterable[ast.AST | None], scope: _Scope, bind: bool = True
    ) -> None:
        for child in children:
            if child is None:
                continue
            self.parent[child] = node
            if bind:
                self._visit(child, scope)
            else:  # a walrus target: bound in the scope _note was given
                self.visited.append((child, scope))

    def _rest(self, node: ast.AST, done: list[Any], scope: _Scope) -> None:
        """Visits the children of ``node`` not in ``done`` (fields of newer Pythons)."""
        seen = {id(child) for child in done if child is not None}
        self._children(node, [c for c in ast.iter_child_nodes(node) if id(c) not in seen], scope)

    def _annotation(self, owner: ast.AST, annotation: ast.expr | None, scope: _Scope) -> None:
        if annotation is None:
            return
        self._in_annotation += 1
        try:
            self._children(owner, [annotation], scope)
        finally:
            self._in_annotation -= 1

    def _function(
        self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda, scope: _Scope
    ) -> None:
        inner = _Scope("function", scope)
        args = node.args
        done: list[Any] = [args]
        if not isinstance(node, ast.Lambda):
            self._bind(scope, node.name, "other", node)
            self._children(node, node.decorator_list, scope)
            self._annotation(node, node.returns, scope)
            done += [*node.decorator_list, node.returns]
        self.parent[args] = node
        self.visited.append((args, scope))
        self._children(args, [*args.defaults, *args.kw_defaults], scope)
        for arg in (*args.posonlyargs, *args.args, args.vararg, *args.kwonlyargs, args.kwarg):
            if arg is None:
                continue
            self.parent[arg] = args
            self.visited.append((arg, inner))
            self._bind(inner, arg.arg, "other", arg)
            self._annotation(arg, arg.annotation, scope)
        body = node.body if isinstance(node.body, list) else [node.body]
        self._children(node, body, inner)
        self._rest(node, [*done, *body], scope)

    def _class(self, node: ast.ClassDef, scope: _Scope) -> None:
        self._bind(scope, node.name, "class", node)
        outer = [*node.decorator_list, *node.bases, *node.keywords]
        self._children(node, outer, scope)
        self._children(node, node.body, _Scope("class", scope))
        self._rest(node, [*outer, *node.body], scope)

    def _comprehension(self, node: ast.expr, scope: _Scope) -> None:
        inner = _Scope("comprehension", scope)
        generators: list[ast.comprehension] = node.generators  # type: ignore[attr-defined]
        for index, generator in enumerate(generators):
            self.parent[generator] = node
            self.visited.append((generator, inner))
            self._children(generator, [generator.iter], scope if index == 0 else inner)
            self._children(generator, [generator.target, *generator.ifs], inner)
        parts = [getattr(node, name, None) for name in ("elt", "key", "value")]
        self._children(node, parts, inner)
        self._rest(node, [*generators, *parts], scope)

    def _note(self, node: ast.AST, scope: _Scope) -> None:
        """Records the bindings and attribute definitions a plain node makes."""
        if isinstance(node, ast.Name):
            if not isinstance(node.ctx, ast.Load):
                self._bind(scope, node.id, "other", node)
            elif self._in_annotation and self._lazy_annotations:
                self.unevaluated.add(node)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            self.defined.add(node.attr)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for name, kind in _import_bindings(node):
                self._bind(scope, name, kind, node)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            self._bind(scope, node.name, "other", node)
        elif isinstance(node, ast.Global):
            scope.declared_global.update(node.names)
        elif isinstance(node, ast.Nonlocal):
            scope.bound.update(node.names)
        elif isinstance(node, ast.keyword) and node.arg:
            self.defined.add(node.arg)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if not isinstance(self.parent.get(node), ast.Expr):  # not a docstring
                self.defined.update(_identifiers(node.value))
        elif isinstance(node, ast.Call):
            self._note_computed_name(node)

    def _note_computed_name(self, node: ast.Call) -> None:
        """``setattr(self, f"conv{i}", ...)``: attributes starting ``conv`` are defined."""
        func, name = node.func, None
        if isinstance(func, ast.Name) and func.id == "setattr" and len(node.args) >= 2:
            name = node.args[1]
        elif isinstance(func, ast.Attribute) and func.attr in _NAMING_METHODS and node.args:
            name = node.args[0]
        if name is not None and not isinstance(name, ast.Constant):
            prefix = _literal_prefix(name)
            if _is_safe_prefix(prefix):
                self.prefixes.add(prefix)

    def _bind(self, scope: _Scope, name: str, kind: str, node: ast.AST) -> None:
        scope.bound.add(name)
        self.bindings.append((name, kind, node))
        if scope.kind == "class":
            self.defined.add(name)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            self.defined.add(name)


def _import_bindings(node: ast.Import | ast.ImportFrom) -> Iterator[tuple[str, str]]:
    """``(name, kind)`` for each name an import binds: a module path or an imported value."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            allowed = alias.name in ALLOWED_IMPORTS
            if alias.asname:
                yield alias.asname, f"module:{alias.name}" if allowed else "other"
            else:  # ``import torch.nn`` binds ``torch``
                top = alias.name.split(".")[0]
                yield top, f"module:{top}" if allowed else "other"
        return
    module = node.module or ""
    if node.level or module == "__future__":
        return
    for alias in node.names:
        if alias.name == "*":
            continue
        path = f"{module}.{alias.name}"
        if module not in ALLOWED_IMPORTS:
            kind = "other"
        elif path in MODULE_ATTRIBUTES:
            kind = f"module:{path}"
        else:
            kind = f"import:{path}"
        yield alias.asname or alias.name, kind


class _Checker:
    """Applies the rules to every node the scan visited; keeps the first violation."""

    def __init__(self, scan: _Scan) -> None:
        self.scan = scan
        self.parent = scan.parent
        self.violations: list[tuple[tuple[int, int, int, int], int, str]] = []
        self.modules: dict[str, str] = {}
        self.imported: dict[str, str] = {}
        self.kinds: dict[str, set[str]] = collections.defaultdict(set)
        self._refs: dict[ast.AST, _Ref | None] = {}
        self._sort_bindings()

    def first_violation(self) -> str | None:
        for node, scope in self.scan.visited:
            self._check(node, scope)
        if not self.violations:
            return None
        position, _, message = min(self.violations)
        return f"line {position[0]}: {message}"

    def _flag(self, node: ast.AST, message: str) -> None:
        if len(message) > _MAX_MESSAGE:
            message = message[: _MAX_MESSAGE - 3] + "..."
        self.violations.append((self._position(node), len(self.violations), message))

    def _position(self, node: ast.AST) -> tuple[int, int, int, int]:
        """Where ``node`` is; of a positionless node (``arguments``), its nearest ancestor.

        The innermost of nodes that start together sorts first: ``F.torch`` before
        ``F.torch.os``, so the message names the step that broke the rule.
        """
        while not hasattr(node, "lineno") and node in self.parent:
            node = self.parent[node]
        return (
            getattr(node, "lineno", 1),
            getattr(node, "col_offset", 0),
            getattr(node, "end_lineno", None) or 1,
            getattr(node, "end_col_offset", None) or 0,
        )

    def _sort_bindings(self) -> None:
        """Which names are modules and imported values; flags a module name bound otherwise.

        A module's name may only ever be bound to that module, so no rebinding can make
        a chain the check read as ``nn.Module`` mean something else at run time.
        """
        by_name: dict[str, list[tuple[str, ast.AST]]] = collections.defaultdict(list)
        for name, kind, node in self.scan.bindings:
            by_name[name].append((kind, node))
            self.kinds[name].add(kind)
        for name in ATTRIBUTE_BUILTINS & by_name.keys():
            # Their calls are judged by name: a rebound ``hasattr`` could return a module.
            self._flag(by_name[name][0][1], f"rebinds the builtin {name}")
        for name in {*by_name, *NAMESPACE_MODULES}:
            events = by_name.get(name, [])
            paths = {kind[7:] for kind, _ in events if kind.startswith("module:")}
            if name in NAMESPACE_MODULES:
                paths.add(NAMESPACE_MODULES[name])
            if paths:
                expected = NAMESPACE_MODULES.get(name) or sorted(paths)[0]
                self.modules[name] = expected
                for kind, node in events:
                    if kind != f"module:{expected}":
                        self._flag(node, f"rebinds the module name {name}")
                        break
                continue
            imports = {kind for kind, _ in events}
            if len(imports) == 1 and next(iter(imports)).startswith("import:"):
                self.imported[name] = next(iter(imports))[7:]

    def _check(self, node: ast.AST, scope: _Scope) -> None:
        if isinstance(node, ast.Name):
            self._check_name(node, scope)
        elif isinstance(node, ast.Attribute):
            self._check_attribute(node)
        elif isinstance(node, ast.Call):
            self._check_call(node)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
            self._check_constant(node)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for message in _check_import(node):
                self._flag(node, message)
        elif isinstance(node, ast.FunctionDef):
            self._check_function(node)
        elif isinstance(node, ast.ClassDef):
            self._check_class(node)
        elif isinstance(node, ast.AsyncFunctionDef | ast.Await | ast.AsyncFor | ast.AsyncWith):
            self._flag(node, "uses async code (a network needs none)")
        elif isinstance(node, ast.Match):
            self._flag(node, "uses a match statement (its patterns read attributes by name)")
        elif type(node).__name__ in ("TypeAlias", "TypeVar", "ParamSpec", "TypeVarTuple"):
            self._flag(node, "uses type parameters (a network needs none)")
        else:
            self._check_identifiers(node)

    def _check_identifiers(self, node: ast.AST) -> None:
        """Dunder names bound by parameters, keywords, ``as`` clauses and declarations."""
        if isinstance(node, ast.arg | ast.keyword):
            names = [node.arg]
        elif isinstance(node, ast.ExceptHandler):
            names = [node.name]
        elif isinstance(node, ast.alias):
            names = [node.asname]
        elif isinstance(node, ast.Global | ast.Nonlocal):
            names = list(node.names)
        else:
            return
        for name in names:
            if name and _is_dunder(name):
                self._flag(node, f"binds the name {name}")

    def _check_name(self, node: ast.Name, scope: _Scope) -> None:
        name = node.id
        if _is_dunder(name):
            if not (name == "__name__" and isinstance(node.ctx, ast.Load)):
                self._flag(node, f"uses the name {name}")
            return
        if not isinstance(node.ctx, ast.Load):
            return
        if name in self.modules:
            if not self._is_module_use(node):
                self._flag(node, f"uses the module {name} as a value (only its attributes)")
            return
        if name in ATTRIBUTE_BUILTINS:
            if not self._is_called(node):
                self._flag(node, f"uses {name} other than as a direct call")
        elif scope.binds_locally(name) or name in SAFE_BUILTINS or name in NAMESPACE_VALUES:
            return
        elif name in _BUILTIN_NAMES:
            called = callable(getattr(builtins, name))
            self._flag(node, f"uses {name}()" if called else f"uses {name}")
        elif name not in self.kinds and node not in self.scan.unevaluated:
            self._flag(node, f"uses the unknown name {name}")

    def _check_attribute(self, node: ast.Attribute) -> None:
        attr = node.attr
        base = self._ref(node.value)
        if _is_dunder(attr):
            if not (attr == "__init__" and self._is_called(node)):
                self._flag(node, f"accesses {attr}")
            return
        if base is not None and not isinstance(node.ctx, ast.Load):
            self._flag(node, f"changes the module attribute {base.path}.{attr}")
        elif base is not None and base.is_module:
            if attr not in MODULE_ATTRIBUTES[base.path]:
                private = attr.startswith("_")
                self._flag(
                    node,
                    f"accesses the private attribute {attr}"
                    if private
                    else f"accesses {base.path}.{attr} (not allowed on {base.path})",
                )
            elif f"{base.path}.{attr}" in MODULE_ATTRIBUTES and not self._is_module_use(node):
                self._flag(node, f"uses the module {base.path}.{attr} as a value")
        else:
            problem = self._attribute_problem(node.value, attr)
            if problem:
                self._flag(node, f"accesses {problem}")

    def _attribute_problem(self, target: ast.AST, attr: str) -> str | None:
        """Why ``target.attr`` is not allowed on an object that is not a module, or None.

        ``self`` and ``cls`` are the code's own objects: an attribute they lack is a bug
        that fails when it runs (a truncated cell's missing edge), not a construct to
        forbid, so only the deny-lists apply to them.
        """
        if _is_dunder(attr) or attr in FORBIDDEN_ATTRIBUTES:
            return attr
        on_self = isinstance(target, ast.Name) and target.id in _SELF_NAMES
        if attr.startswith("_"):
            if not on_self:
                return f"the private attribute {attr}"
            if attr in TENSOR_PRIVATE:
                return f"the private attribute {attr} (a tensor internal)"
            return None
        if on_self or attr in ATTRIBUTES or attr in self.scan.defined:
            return None
        if _RNN_WEIGHT.fullmatch(attr) or attr.startswith(tuple(self.scan.prefixes)):
            return None
        return f"the attribute {attr}, which no allowed type has and the code does not define"

    def _check_call(self, node: ast.Call) -> None:
        func = node.func
        if not (isinstance(func, ast.Name) and func.id in ATTRIBUTE_BUILTINS):
            return  # and the code never binds these names (see _sort_bindings)
        name = func.id
        if node.keywords or any(isinstance(arg, ast.Starred) for arg in node.args):
            self._flag(node, f"{name}() with unpacked or keyword arguments")
            return
        if len(node.args) < 2:
            return  # a TypeError when it runs
        target, key = node.args[0], node.args[1]
        on_module = self._ref(target) is not None
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            if on_module and name != "hasattr":
                self._flag(node, f"{name}() on a module (use the attribute itself)")
            elif on_module and _is_dunder(key.value):
                self._flag(node, f"{name}() of {key.value}")
            elif not on_module and (problem := self._attribute_problem(target, key.value)):
                self._flag(node, f"{name}() of {problem}")
        elif on_module:
            self._flag(node, f"{name}() on a module with a computed name")
        elif not _is_safe_prefix(_literal_prefix(key)):
            self._flag(
                node,
                f"{name}() with a computed name that may start with an underscore "
                "or spell a forbidden attribute",
            )

    def _check_constant(self, node: ast.Constant) -> None:
        if isinstance(self.parent.get(node), ast.Expr):
            return  # a docstring or a bare string statement: it does nothing
        value = node.value
        text = value if isinstance(value, str) else value.decode("latin-1")
        for match in _DUNDER.finditer(text):
            if match.group(0) != "__main__":
                self._flag(node, f"a string spells the dunder name {match.group(0)}")
                return

    def _check_function(self, node: ast.FunctionDef) -> None:
        in_class = isinstance(self.parent.get(node), ast.ClassDef)
        if _is_dunder(node.name) and not (node.name == "__init__" and in_class):
            what = "defines the method" if in_class else "binds the name"
            self._flag(node, f"{what} {node.name} (the only dunder method allowed is __init__)")
        self._check_decorators(node)

    def _check_class(self, node: ast.ClassDef) -> None:
        if _is_dunder(node.name):
            self._flag(node, f"binds the name {node.name}")
        for keyword in node.keywords:
            self._flag(keyword, f"passes {keyword.arg or '**'}= to class {node.name}")
        for base in node.bases:
            if not self._is_allowed_base(base):
                self._flag(
                    base,
                    f"class {node.name} derives from {_text(base)} "
                    "(only nn.Module classes, the code's own classes and object)",
                )
        self._check_decorators(node)

    def _check_decorators(self, node: ast.FunctionDef | ast.ClassDef) -> None:
        for decorator in node.decorator_list:
            if not self._is_allowed_decorator(decorator):
                self._flag(
                    decorator,
                    f"uses the decorator @{_text(decorator)} (only staticmethod, classmethod, "
                    "property, torch.no_grad, functools.lru_cache and a few more)",
                )

    def _is_allowed_decorator(self, decorator: ast.expr) -> bool:
        if isinstance(decorator, ast.Name) and decorator.id in (
            "staticmethod",
            "classmethod",
            "property",
        ):
            return True
        if (
            isinstance(decorator, ast.Attribute)
            and decorator.attr in _PROPERTY_PARTS
            and isinstance(decorator.value, ast.Name)
        ):
            return True  # ``@value.setter`` of a property
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        ref = self._ref(target)
        return ref is not None and ref.path in DECORATORS

    def _is_allowed_base(self, base: ast.expr) -> bool:
        if isinstance(base, ast.Name):
            kinds = self.kinds.get(base.id, set())
            if not kinds:
                return base.id == "object"
            return all(
                kind == "class" or (kind.startswith("import:") and kind[7:] in NN_CLASSES)
                for kind in kinds
            )
        ref = self._ref(base) if isinstance(base, ast.Attribute) else None
        return ref is not None and ref.path in NN_CLASSES

    def _ref(self, node: ast.AST) -> _Ref | None:
        """The module or module-reached value ``node`` names (``nn.Conv2d``), if any."""
        if node in self._refs:
            return self._refs[node]
        ref: _Ref | None = None
        if isinstance(node, ast.Name):
            if node.id in self.modules:
                ref = _Ref(self.modules[node.id], True)
            elif node.id in self.imported:
                ref = _Ref(self.imported[node.id], False)
        elif isinstance(node, ast.Attribute):
            base = self._ref(node.value)
            if base is not None:
                path = f"{base.path}.{node.attr}"
                allowed = base.is_module and node.attr in MODULE_ATTRIBUTES[base.path]
                ref = _Ref(path, allowed and path in MODULE_ATTRIBUTES)
        self._refs[node] = ref
        return ref

    def _is_called(self, node: ast.AST) -> bool:
        parent = self.parent.get(node)
        return isinstance(parent, ast.Call) and parent.func is node

    def _is_module_use(self, node: ast.AST) -> bool:
        """Whether the module ``node`` is the base of an attribute or what getattr() reads.

        Only these uses keep a module visible to the rules: as a value, an alias could
        hide it (``t = typing; t.sys``). The getattr() rules of :meth:`_check_call` judge
        a module as their target.
        """
        parent = self.parent.get(node)
        if isinstance(parent, ast.Attribute):
            return parent.value is node
        return (
            isinstance(parent, ast.Call)
            and isinstance(parent.func, ast.Name)
            and parent.func.id in ATTRIBUTE_BUILTINS
            and bool(parent.args)
            and parent.args[0] is node
        )


def _check_import(node: ast.Import | ast.ImportFrom) -> Iterator[str]:
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
        elif module == "__future__":
            continue
        elif name.startswith("_"):
            yield f"imports the private name {module}.{name}"
        elif name not in MODULE_ATTRIBUTES[module]:
            yield f"imports {module}.{name} (not allowed on {module})"


def _identifiers(text: str) -> set[str]:
    """The names a string may define as attributes: ``"conv1"``, namedtuple's ``"x y"``."""
    words = text.replace(",", " ").split()
    return {word for word in words if word.isidentifier()} if len(words) < 64 else set()


def _literal_prefix(node: ast.AST) -> str:
    """The literal start of the string ``node`` computes, up to its first placeholder."""
    while True:
        if isinstance(node, ast.Constant):
            text = node.value if isinstance(node.value, str) else ""
            return re.split(r"[%{]", text, maxsplit=1)[0]
        if isinstance(node, ast.JoinedStr):
            if not node.values:
                return ""
            node = node.values[0]
            if not isinstance(node, ast.Constant):
                return ""
            continue
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
        return ""


def _is_safe_prefix(prefix: str) -> bool:
    """Whether no name starting with ``prefix`` is private, dunder or forbidden."""
    if not prefix or prefix.startswith("_"):
        return False
    return not any(name.startswith(prefix) for name in FORBIDDEN_ATTRIBUTES)


def _text(node: ast.AST) -> str:
    """A short, one-line rendering of ``node`` for a message."""
    text = " ".join(ast.unparse(node).split())
    return text if len(text) <= 60 else text[:57] + "..."
