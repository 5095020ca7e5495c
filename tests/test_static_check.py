"""The static check of untrusted network code (:mod:`llmatic.sandbox.static_check`).

It is an allow-list, so the risk is two-sided: it must pass every network the search
generates or an LLM plausibly writes (the NB201 cells, the corpus in
``network_corpus.py``, each also built and run here), and reject, with a one-line reason,
each way around it that an outside audit found (module attributes that lead back to
``sys`` or ``eval``, dunder methods, builtin subclasses, metaclasses). The allow-lists
are checked against the real modules: every name resolves and none is a module or holds
one. The check never raises and costs well under a millisecond per NB201 cell.
"""

from __future__ import annotations

import ast
import importlib
import itertools
import textwrap
import timeit
import types

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from llmatic.errors import CandidateError
from llmatic.nb201.cell import EDGES, arch_to_code, format_arch
from llmatic.nb201.ops import OP_NAMES
from llmatic.network_code import instantiate
from llmatic.sandbox import check_code, ensure_allowed, static_check
from llmatic.sandbox.static_check import (
    ATTRIBUTES,
    DECORATORS,
    FORBIDDEN_ATTRIBUTES,
    MODULE_ATTRIBUTES,
    MODULE_PRIVATE,
    NN_CLASSES,
    SAFE_BUILTINS,
)

try:
    from network_corpus import NETWORKS
except ImportError:  # tests/ became a package
    from tests.network_corpus import NETWORKS

ARCH = (
    "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|"
    "+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
)
#: Every 37th of the 15,625 NB201 cells (the cells differ only in their operation names).
NB201_ARCHS = [
    format_arch(dict(zip(EDGES, ops, strict=True)))
    for ops in itertools.islice(itertools.product(OP_NAMES, repeat=len(EDGES)), 0, None, 37)
]
IMPORTS = '''
    from __future__ import annotations
    import math
    from collections import OrderedDict
    from functools import partial
    from typing import Optional
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from torch.nn import init

    def conv_bn(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
        """A 3x3 convolution and its batch norm (docstrings may say __init__)."""
        return nn.Sequential(OrderedDict(conv=nn.Conv2d(c_in, c_out, 3, stride, 1),
                                         bn=nn.BatchNorm2d(c_out)))
    '''
# Ordinary network code that the static check must let through.
ORDINARY = {
    "nb201-cell": arch_to_code(ARCH),
    "imports-and-helpers": IMPORTS,
    "resnet-style": IMPORTS
    + """
    class Net(nn.Module):
        def __init__(self, classes: int = 10, width: Optional[int] = None):
            super(Net, self).__init__()
            nn.Module.__init__(self)
            self._layers = self._make_layer(3, width or 16)
            for i in range(3):
                setattr(self, f"block_{i}", nn.ReLU())
                setattr(self, "conv%d" % i, nn.Identity())
                setattr(self, "bn{}".format(i), nn.Identity())
            self.act = partial(F.leaky_relu, negative_slope=0.1)
            self.head = torch.nn.Linear(16, classes)
            init.kaiming_normal_(self.head.weight)
            nn.utils.parametrizations.weight_norm(self.head)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

        def _make_layer(self, c_in, c_out):
            return nn.Conv2d(c_in, c_out, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.act(self._layers(x)) * math.sqrt(2.0)
            for i in range(3):
                x = getattr(self, f"block_{i}")(x)
            x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
            return self.head(x) if hasattr(self, "head") else x
    """,
}
#: Small constructs a network may use that sit near a rule's edge.
EDGE_CASES = {
    "input-as-a-parameter": "def forward(self, input):\n    return input + 1",
    "builtin-name-as-a-local": "def f(x):\n    id = x.size(0)\n    return id",
    "type-as-a-parameter": "def f(x, type='conv'):\n    return type + str(x)",
    "fstring-repr-and-spec": "def f(x):\n    return f'{x!r:>10} {x:.3f}'",
    "generator-and-yield-from": "def g(xs):\n    yield from xs\n    yield 1",
    "walrus-in-comprehension": "ys = [y for x in range(3) if (y := x * 2) > 1]",
    "comprehension-shadows-builtin": "zs = [input for input in range(3)]",
    "lambda-defaults": "f = lambda x, k=2: x * k",
    "global-statement": "N = 0\ndef bump():\n    global N\n    N += 1",
    "try-finally-assert": "try:\n    assert 1, 'no'\nexcept (ValueError, KeyError):\n    pass\n"
    "finally:\n    pass",
    "main-guard": "if __name__ == '__main__':\n    print('run as a script')",
    "property-setter": "class A:\n    @property\n    def v(self):\n        return self._v\n"
    "    @v.setter\n    def v(self, value):\n        self._v = value",
    "lru-cache-and-no-grad": "import functools\nimport torch\n"
    "@functools.lru_cache(maxsize=None)\ndef f(n):\n    return n\n"
    "@torch.no_grad\ndef g(x):\n    return x",
    "self-private-from-nn-module": "class A(nn.Module):\n    def f(self):\n"
    "        return list(self._modules.values())",
    "undefined-attribute-of-self": "class A(nn.Module):\n    def forward(self, x):\n"
    "        return self.edge_0_2(x) + self._typo",
    "plain-class-and-object-base": "class A:\n    pass\nclass B(object):\n    pass\nclass C(A):\n"
    "    pass",
    "imported-layer-base": "from torch.nn import Module, Sequential\nclass A(Module):\n"
    "    pass\nclass B(Sequential):\n    pass",
    "namedtuple-fields": "from collections import namedtuple\nP = namedtuple('P', 'h w')\n"
    "p = P(1, 2)\nprint(p.h + p.w)",
    "rnn-weight-names": "lstm = nn.LSTM(4, 4, 2, bidirectional=True)\n"
    "w = lstm.weight_ih_l1_reverse, lstm.bias_hh_l0",
    "hasattr-on-a-module": "ok = hasattr(torch, 'compile')",
    "itertools-classmethod": "import itertools\nxs = list(itertools.chain.from_iterable([[1]]))",
    "unevaluated-annotation": "from __future__ import annotations\n"
    "def f(x: Tensor) -> Tensor:\n    return x",
}
#: Snippets to reject, with a fragment of the reason. Names the snippets use but do not
#: bind (``x``, ``f``, ``name``) are bound by a line appended after them.
REJECTED = [
    # Imports.
    ("import os", "imports os"),
    ("import numpy as np", "imports numpy"),
    ("import operator", "imports operator"),
    ("from torch import *", "import *"),
    ("from . import sibling", "relative import"),
    ("from torch import hub", "imports torch.hub"),
    ("from torch.utils import cpp_extension", "imports from torch.utils"),
    ("from collections import abc", "imports collections.abc"),
    ("from torch import _C", "imports the private name torch._C"),
    ("from typing import get_type_hints", "imports typing.get_type_hints"),
    ("import collections.abc", "imports collections.abc"),
    # Builtins and free names.
    ("x = open('f')", "uses open()"),
    ("f = eval", "uses eval()"),
    ("breakpoint()", "uses breakpoint()"),
    ("exit()", "uses exit()"),
    ("memoryview(b'x')", "uses memoryview()"),
    ("vars(x)", "uses vars()"),
    ("dir(x)", "uses dir()"),
    ("globals()['x']", "uses globals()"),
    ("locals()", "uses locals()"),
    ("input()", "uses input()"),
    ("help(x)", "uses help()"),
    ("compile('1', 'f', 'eval')", "uses compile()"),
    ("exec('1')", "uses exec()"),
    ("__import__('os')", "uses the name __import__"),
    ("__builtins__['exec']", "uses the name __builtins__"),
    ("__loader__.load_module('os')", "uses the name __loader__"),
    ("os.system('x')", "uses the unknown name os"),
    ("if False:\n    eval = None\neval('1')", "line 3: uses eval()"),
    ("def f():\n    global open\n    return open('f')", "uses open()"),
    ("class A:\n    input = 1\n    y = input()", "uses input()"),
    ("type('S', (str,), {})", "uses type()"),
    ("type(type(x))('S', (str,), {})", "uses type()"),
    ("t = type", "uses type()"),
    ("g = getattr", "getattr other than as a direct call"),
    ("xs = list(map(getattr, [x], ['y']))", "getattr other than as a direct call"),
    ("nn = 3", "rebinds the module name nn"),
    ("def f(hasattr):\n    return hasattr(torch, 'nn')", "rebinds the builtin hasattr"),
    ("hasattr = lambda m, n: m\nt = hasattr(torch, 'nn')", "rebinds the builtin hasattr"),
    ("import torch.nn as F", "rebinds the module name F"),
    ("def f(torch):\n    return torch", "rebinds the module name torch"),
    # getattr and friends.
    ("getattr(x, '__globals__')", "getattr() of __globals__"),
    ("getattr(x, name)", "computed name"),
    ("getattr(x, '_' + name)", "computed name"),
    ("getattr(x, 'f' + '_globals')", "computed name"),
    ("getattr(x, f'gi_{name}')", "computed name"),
    ("getattr(*[x, '__class__'])", "getattr() with unpacked or keyword arguments"),
    ("getattr(x, 'gi_frame')", "getattr() of gi_frame"),
    ("getattr(x, '_cdata')", "getattr() of the private attribute _cdata"),
    ("getattr(torch, name)", "on a module with a computed name"),
    ("getattr(torch, f'lo{a}')", "on a module with a computed name"),
    ("getattr(torch, 'cat')", "getattr() on a module"),
    ("setattr(nn, 'Linear', None)", "setattr() on a module"),
    ("setattr(nn.Conv2d, 'forward', f)", "setattr() on a module"),
    ("class A(nn.Module):\n    def f(self):\n        setattr(self, '__eq__', f)", "of __eq__"),
    ("hasattr(torch, '__loader__')", "hasattr() of __loader__"),
    # Dunders and private attributes.
    ("x.__class__.__mro__", "accesses __class__"),
    ("f = super().__init__", "accesses __init__"),
    ("object.__subclasses__()", "accesses __subclasses__"),
    ("(lambda: 0).__code__", "accesses __code__"),
    ("'{0.__class__}'.format(x)", "spells the dunder name __class__"),
    ("d = {'__builtins__': 1}", "spells the dunder name __builtins__"),
    ("dict(__class__=1)", "binds the name __class__"),
    ("def f(__x__):\n    pass", "binds the name __x__"),
    ("try:\n    pass\nexcept Exception as __e__:\n    pass", "binds the name __e__"),
    ("x._cdata", "private attribute _cdata"),
    (
        "def peek(self):\n    return self._typed_storage()\nself._typed_storage = 1",
        "tensor internal",
    ),
    ("torch._C._get_tracing_state()", "private attribute _C"),
    ("try:\n    pass\nexcept Exception as e:\n    e.__traceback__.tb_frame", "__traceback__"),
    # Module attributes outside the allow-lists, including the audit's chains.
    ("torch.ops.aten.add", "accesses torch.ops"),
    ("torch.classes.load_library('x')", "accesses torch.classes"),
    ("torch.load('w.pt')", "accesses torch.load"),
    ("torch.save(x, 'w.pt')", "accesses torch.save"),
    ("torch.from_file('w.pt')", "accesses torch.from_file"),
    ("torch.hub.load('a', 'b')", "accesses torch.hub"),
    ("torch.utils.cpp_extension.load_inline('x', '')", "accesses torch.utils.cpp_extension"),
    ("torch.utils.data.DataLoader", "accesses torch.utils.data"),
    ("torch.jit.script(f)", "accesses torch.jit"),
    ("torch.compile(model)", "accesses torch.compile"),
    ("torch.multiprocessing.Process", "accesses torch.multiprocessing"),
    ("torch.backends.cudnn.benchmark", "accesses torch.backends"),
    ("torch.cuda.os.system('x')", "accesses torch.cuda.os"),
    ("torch.cuda.memory", "accesses torch.cuda.memory"),
    ("torch.nn.modules.module.torch", "accesses torch.nn.modules"),
    ("nn.parallel.DataParallel", "accesses torch.nn.parallel"),
    ("nn.functional.torch.load('w')", "accesses torch.nn.functional.torch"),
    ("F.torch.os.system('x')", "torch.nn.functional.torch"),
    ("F.handle_torch_function", "accesses torch.nn.functional.handle_torch_function"),
    ("import typing\ntyping.sys.modules['os']", "line 2: accesses typing.sys"),
    ("import typing\ntyping.re", "accesses typing.re"),
    ("import typing\ntyping.get_type_hints(f)", "line 2: accesses typing.get_type_hints"),
    ("import collections\ncollections.abc.Callable", "accesses collections.abc"),
    ("import functools\nfunctools.sys", "accesses functools.sys"),
    ("import functools\nfunctools.reduce.__module__", "accesses __module__"),
    ("import math\nmath.__loader__.load_module('os')", "accesses __loader__"),
    ("import itertools\nitertools.__spec__", "accesses __spec__"),
    # Attributes of other objects.
    ("model.compile()", "accesses compile"),
    ("torch.Tensor.from_file('f')", "accesses from_file"),
    ("x.untyped_storage()", "accesses untyped_storage"),
    ("x.numpy().tofile('f')", "accesses numpy"),
    ("x.storage()._share_filename_cpu_()", "accesses storage"),
    ("x.share_memory_()", "accesses share_memory_"),
    ("(x for x in ()).gi_frame.f_back", "accesses gi_frame"),
    ("nn.Module.mro()", "accesses mro"),
    ("err.obj", "accesses obj"),
    ("nn.Module.dump_patches", "accesses dump_patches"),
    ("x.system('ls')", "accesses system"),
    ("self.os = 1", "accesses os"),
    ("x.frobnicate()", "the attribute frobnicate, which no allowed type has"),
    # Modules as values, and changes to what a module holds.
    ("t = torch", "uses the module torch as a value"),
    ("t = torch.nn", "uses the module torch.nn as a value"),
    ("import typing\nt = [typing][0]", "uses the module typing as a value"),
    ("f(F)", "uses the module F as a value"),
    ("torch.nn.Linear = None", "changes the module attribute torch.nn.Linear"),
    ("nn.Conv2d.forward = f", "changes the module attribute torch.nn.Conv2d.forward"),
    ("del torch.add", "changes the module attribute torch.add"),
    ("torch.add += 1", "changes the module attribute torch.add"),
    # Classes.
    ("class S(str):\n    pass", "class S derives from str"),
    ("class D(dict):\n    pass", "class D derives from dict"),
    ("class M(type):\n    pass", "class M derives from type"),
    ("class E(Exception):\n    pass", "class E derives from Exception"),
    ("class C(metaclass=M):\n    pass", "passes metaclass= to class C"),
    ("class C(nn.Module, **kw):\n    pass", "passes **= to class C"),
    ("from torch.nn import Module\nModule = str\nclass S(Module):\n    pass", "derives from"),
    ("object = str\nclass S(object):\n    pass", "class S derives from object"),
    ("class A:\n    pass\nA = str\nclass S(A):\n    pass", "class S derives from A"),
    ("class S(torch.Tensor):\n    pass", "derives from torch.Tensor"),
    ("class S(nn.Parameter):\n    pass", "derives from nn.Parameter"),
    ("import typing\nclass S(typing.NamedTuple):\n    pass", "derives from typing.NamedTuple"),
    ("class S(*bases):\n    pass", "derives from *bases"),
    ("class A:\n    __eq__ = lambda a, b: True", "uses the name __eq__"),
    ("class A:\n    __slots__ = ()", "uses the name __slots__"),
    ("def __getattr__(name):\n    pass", "binds the name __getattr__"),
    ("class A(nn.Module):\n    class __B__:\n        pass", "binds the name __B__"),
    *(
        (f"class A(nn.Module):\n    def {method}(self, *a):\n        pass", method)
        for method in (
            "__eq__",
            "__format__",
            "__del__",
            "__getattr__",
            "__getattribute__",
            "__reduce__",
            "__reduce_ex__",
            "__init_subclass__",
            "__class_getitem__",
            "__set_name__",
            "__call__",
            "__hash__",
            "__repr__",
        )
    ),
    # Decorators.
    ("def deco(f):\n    return f\n@deco\ndef g():\n    pass", "uses the decorator @deco"),
    ("import functools\n@functools.reduce\ndef g():\n    pass", "@functools.reduce"),
    ("import functools\n@functools.wraps(f)\ndef g():\n    pass", "functools.wraps"),
    ("import typing\n@typing.overload\ndef g():\n    pass", "uses the decorator @typing"),
    ("@torch.jit.script\ndef g():\n    pass", "accesses torch.jit"),
    # Statements no network needs.
    ("async def f():\n    pass", "uses async code"),
    ("match x:\n    case _:\n        pass", "uses a match statement"),
]
EDGE_HEADER = "import torch\nfrom torch import nn\n"
#: Every program the check must pass, by name.
PROGRAMS = {
    **NETWORKS,
    **{f"ordinary-{name}": textwrap.dedent(code) for name, code in ORDINARY.items()},
    **{f"edge-{name}": EDGE_HEADER + code for name, code in EDGE_CASES.items()},
}
BINDINGS = "\nx = name = a = b = f = model = err = kw = bases = M = self = None\n"


@pytest.mark.parametrize("name", sorted(ORDINARY))
def test_the_static_check_passes_ordinary_network_code(name: str) -> None:
    assert check_code(textwrap.dedent(ORDINARY[name])) is None


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_the_static_check_passes_the_corpus(name: str) -> None:
    assert check_code(NETWORKS[name]) is None


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_every_corpus_network_builds_and_runs(name: str) -> None:
    """The corpus holds working programs: through the real ``instantiate``, check included."""
    net = instantiate(NETWORKS[name], "Net", {"torch": torch, "nn": nn})
    net.eval()
    with torch.no_grad():
        assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_the_static_check_passes_nb201_cells() -> None:
    rejected = {arch: check_code(arch_to_code(arch)) for arch in NB201_ARCHS}
    assert len(rejected) > 400
    assert {arch: reason for arch, reason in rejected.items() if reason} == {}


@pytest.mark.parametrize("name", sorted(EDGE_CASES))
def test_the_static_check_passes_constructs_near_a_rule(name: str) -> None:
    assert check_code(EDGE_HEADER + EDGE_CASES[name]) is None


@pytest.mark.parametrize(("snippet", "reason"), REJECTED)
def test_the_static_check_rejects(snippet: str, reason: str) -> None:
    found = check_code(snippet + BINDINGS)
    assert found is not None and reason in found, found
    assert found.startswith("line ") and "\n" not in found


def test_ensure_allowed_raises_forbidden_code() -> None:
    ensure_allowed(arch_to_code(ARCH))
    with pytest.raises(CandidateError) as info:
        ensure_allowed("import os")
    assert info.value.kind == "forbidden_code" and info.value.message.startswith("line 1: ")


def test_the_reason_names_the_first_violation_and_the_broken_step() -> None:
    code = "x = 1\ny = typing.sys.modules\nz = eval('1')\nimport typing\n"
    assert check_code(code) == "line 2: accesses typing.sys (not allowed on typing)"
    long_name = "a" * 10_000
    assert len(check_code(f"{long_name}.frobnicate()") or "") < 300


def test_the_static_check_never_raises() -> None:
    assert check_code("class Cell(nn.Module) oops") is None  # syntax_error when it runs
    assert check_code("x = 1\0") is None
    assert check_code("x = " + "-" * 200_000 + "1").startswith("line 1:")
    assert check_code("x = " + "a." * 5000 + "b").startswith("line 1:")


def mutations(corpus: list[str]) -> st.SearchStrategy[str]:
    """Programs of the corpus with random cuts, duplications and inserted fragments."""
    fragments = ["__", "import os\n", "self.", "._", "(", ")", ":", "\n    ", "getattr(", "'"]

    @st.composite
    def mutated(draw: st.DrawFn) -> str:
        text = draw(st.sampled_from(corpus))
        for _ in range(draw(st.integers(0, 5))):
            at = draw(st.integers(0, len(text)))
            action = draw(st.sampled_from(["delete", "duplicate", "insert", "text"]))
            if action == "delete":
                text = text[:at] + text[at + draw(st.integers(1, 60)) :]
            elif action == "duplicate":
                text = text[:at] + text[at : at + 80] + text[at:]
            elif action == "insert":
                text = text[:at] + draw(st.sampled_from(fragments)) + text[at:]
            else:
                text = text[:at] + draw(st.text(max_size=8)) + text[at:]
        return text

    return mutated()


@pytest.mark.filterwarnings("ignore::SyntaxWarning")  # random text is rarely a valid literal
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(code=st.one_of(st.text(max_size=200), mutations(list(PROGRAMS.values()))))
def test_the_static_check_never_raises_on_random_code(code: str) -> None:
    """Nor does it fall back on its catch-all, which would hide a bug of the check."""
    found = check_code(code)
    assert found is None or (found.startswith("line ") and "\n" not in found), found
    assert "could not be checked" not in (found or "")


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_the_scan_visits_every_node(name: str) -> None:
    """Each node gets the rules: the scope-aware walk misses none that ``ast.walk`` sees."""
    tree = ast.parse(PROGRAMS[name])
    visited = [id(node) for node, _ in static_check._Scan(tree).visited]
    nameless = static_check._NAMELESS  # shared singletons such as ``Load``
    walked = [id(node) for node in ast.walk(tree) if not isinstance(node, nameless)]
    assert sorted(visited) == sorted(walked)


def test_every_allowed_module_attribute_resolves_and_is_no_module() -> None:
    for path, names in MODULE_ATTRIBUTES.items():
        module = importlib.import_module(path)
        assert names, path
        for name in names:
            value = getattr(module, name)
            if isinstance(value, types.ModuleType):
                child = f"{path}.{name}"
                assert child in MODULE_ATTRIBUTES and value is importlib.import_module(child)


def test_no_allowed_value_leads_to_a_module() -> None:
    """No public attribute of an allowed value is a module (a chain could not stop there)."""
    found = []
    for path, names in MODULE_ATTRIBUTES.items():
        module = importlib.import_module(path)
        for name in names:
            value = getattr(module, name)
            if isinstance(value, types.ModuleType):
                continue
            for attr in dir(value):
                if attr.startswith("_"):
                    continue
                try:
                    inner = getattr(value, attr)
                except Exception:  # a descriptor that needs an instance
                    continue
                if isinstance(inner, types.ModuleType):
                    found.append(f"{path}.{name}.{attr}")
    assert found == []


def sample_values() -> list[object]:
    """Instances a network holds: tensors, parameters and layers of every common kind."""
    lstm = nn.LSTM(4, 4, 2, bidirectional=True, proj_size=2)
    return [
        torch.zeros(2, 3),
        nn.Parameter(torch.zeros(2, 2)),
        torch.zeros(2).max(0),
        nn.Conv2d(2, 2, 3),
        nn.BatchNorm2d(2),
        lstm,
        nn.GRU(3, 3),
        nn.Linear(2, 2),
        nn.LayerNorm(4),
        nn.Embedding(3, 3),
        nn.MultiheadAttention(4, 2, kdim=2, vdim=2),
        nn.TransformerEncoderLayer(4, 2),
        nn.TransformerDecoderLayer(4, 2),
        nn.Sequential(nn.ReLU()),
        nn.ModuleList([nn.ReLU()]),
        nn.utils.spectral_norm(nn.Linear(2, 2)),
        nn.utils.parametrizations.weight_norm(nn.Linear(2, 2)),
        torch.float32,
        torch.device("cpu"),
        torch.finfo(torch.float32),
    ]


@pytest.mark.parametrize("value", sample_values(), ids=lambda value: type(value).__name__)
def test_attributes_of_network_values_are_allowed_and_lead_to_no_module(value: object) -> None:
    if isinstance(value, nn.Module):  # what the instance holds (classes may be patched
        # later: transformers adds nn.Module.smart_apply when it builds a model)
        names = {*vars(value), *value._parameters, *value._buffers, *value._modules}
    else:
        names = set(dir(value))
    public = {name for name in names if not name.startswith("_") and not name.isdigit()}
    unknown = {
        name
        for name in public - ATTRIBUTES
        if name not in FORBIDDEN_ATTRIBUTES and not static_check._RNN_WEIGHT.fullmatch(name)
    }
    assert unknown == set()
    for name in public & ATTRIBUTES:
        try:
            inner = getattr(value, name)
        except Exception:
            continue
        assert not isinstance(inner, types.ModuleType), name


def test_the_allow_lists_hold_what_networks_use_and_nothing_forbidden() -> None:
    needed = {
        "torch": {
            "cat",
            "flatten",
            "zeros",
            "randn",
            "float32",
            "long",
            "no_grad",
            "Tensor",
            "einsum",
            "split",
            "cuda",
            "nn",
            "channels_last",
            "FloatTensor",
            "pi",
        },
        "torch.nn": {
            "Module",
            "Conv2d",
            "BatchNorm2d",
            "LSTM",
            "Sequential",
            "ModuleList",
            "Parameter",
            "Identity",
            "functional",
            "init",
            "utils",
        },
        "torch.nn.functional": {
            "relu",
            "gelu",
            "adaptive_avg_pool2d",
            "pad",
            "interpolate",
            "scaled_dot_product_attention",
            "softmax",
            "cross_entropy",
        },
        "torch.nn.init": {"kaiming_normal_", "xavier_uniform_", "trunc_normal_", "zeros_"},
        "torch.cuda": {"is_available", "device_count", "empty_cache"},
        "math": {"sqrt", "log", "pi", "ceil"},
        "typing": {"Optional", "List", "Tuple", "Dict", "Union", "Any", "Callable"},
        "collections": {"OrderedDict", "defaultdict", "deque", "namedtuple"},
        "functools": {"partial", "reduce", "lru_cache"},
        "itertools": {"product", "chain", "combinations"},
    }
    for path, names in needed.items():
        assert names <= MODULE_ATTRIBUTES[path], (path, names - MODULE_ATTRIBUTES[path])
    assert {
        "weight",
        "bias",
        "view",
        "size",
        "parameters",
        "modules",
        "append",
        "items",
        "in_channels",
        "running_mean",
        "training",
        "join",
        "format",
    } <= ATTRIBUTES
    for path, names in MODULE_ATTRIBUTES.items():
        assert not names & {"load", "save", "from_file", "jit", "hub", "ops", "os", "sys"}, path
    assert not ATTRIBUTES & FORBIDDEN_ATTRIBUTES and not MODULE_PRIVATE & FORBIDDEN_ATTRIBUTES
    assert not SAFE_BUILTINS & {"eval", "exec", "open", "type", "getattr", "vars", "input"}
    assert {"_cdata", "_typed_storage", "_make_subclass"} <= static_check.TENSOR_PRIVATE
    assert "_version" not in static_check.TENSOR_PRIVATE  # nn.Module's own too
    assert "torch.nn.Module" in NN_CLASSES and "torch.nn.Parameter" not in NN_CLASSES
    assert all(path.rsplit(".", 1)[0] in MODULE_ATTRIBUTES for path in DECORATORS)


def test_the_check_of_a_cell_is_fast() -> None:
    code = arch_to_code(ARCH)
    assert check_code(code) is None
    seconds = min(timeit.repeat(lambda: check_code(code), number=50, repeat=5)) / 50
    assert seconds < 0.005, f"{seconds * 1e3:.2f} ms per cell"
