"""The house rules the package keeps, module by module: no import cycle, imports run one way down the layers,
modules and functions stay small, public functions take few parameters.

How the import graph is read (:func:`imports_of`): every ``import cityseg...`` and ``from cityseg... import ...``
a module can run makes an edge, at its top or inside functions, methods and branches; those under
``if TYPE_CHECKING:`` do not (they never run). ``from cityseg.pkg import name`` reaches the submodule
``cityseg.pkg.name`` when there is one, otherwise the module ``name`` comes from: the submodule the package's
``__init__`` re-exports it from, or, for a package that loads its names lazily (a module ``__getattr__``, as
``cityseg.training`` does), the submodule that defines it.

Package ``__init__`` files count. Importing ``cityseg.a.b`` runs ``cityseg/a/__init__`` first, so a module
outside package ``a`` that imports anything inside it depends on ``a/__init__``, and so on every module that
``__init__`` imports: ``x -> a.b`` and ``a/__init__ -> a.c -> x`` is a cycle, and Python can fail on it
(a name imported from a partly initialised module) depending on which module is imported first. A module
inside ``a`` does not depend on ``a/__init__`` that way: the package has started before any of its modules runs.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "cityseg"
ROOT = PACKAGE.name
# The layers, lowest first: a module may import from its own layer or any layer below, never above. Entries
# name a stage ("labels": the package and every module in it) or, where one stage holds several layers, a
# module ("labels.tables"); a module takes the layer of the longest entry that names it or a package above it.
# "__init__" is cityseg's own __init__ (its version).
LAYERS = (
    ("__init__", "errors", "defaults"),
    # the classes: the Cityscapes table, ClassSet and the built-in sets, a user's table file, class_set()
    ("cityscapes", "class_sets", "class_lists", "user_classes", "classes"),
    ("files", "optim", "loss_registry", "loss_modules", "process_errors", "extras"),
    ("config", "run_folders", "model_card", "images", "plots", "report", "metrics"),
    ("label_formats", "layouts", "coco", "labelled_folders", "pairs", "synth"),
    ("labels",),
    ("splits", "transforms"),
    ("datasets", "models", "devices"),
    ("hub", "model_sources"),  # where a MODEL comes from: a folder, a built-in name, the Hugging Face Hub
    ("inference", "backends"),
    ("engine", "outputs"),  # the prediction engine and what a prediction writes: every consumer's one door
    ("training", "evaluation", "transfer"),
    ("video", "onnx_graphs"),  # videos use the prediction engine; the photo loop hands videos over to them
    ("predict",),
    ("export", "serve", "push"),
    ("demo",),
    ("cli",),
)
LAYER = {name: level for level, names in enumerate(LAYERS) for name in names}
TRAINING_IMPORTERS = ("training", "cli", "demo")  # the stages that may import cityseg.training
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
MAX_PUBLIC_PARAMETERS = 8  # more choices than that: take an options dataclass
MAX_HELPER_POSITIONALS = 5  # a helper handed more than that in a row takes an object (or keyword-only arguments)
# the tables that are data, not logic (the class table, the synth materials) may be longer
LONG_TABLES = {"cityscapes.py", "synth/materials.py"}


# ---- reading the package ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One module of the package: where it is, its syntax tree, and whether it is a package's ``__init__``."""

    path: Path
    tree: ast.Module
    package: bool


def read_package(root: Path = PACKAGE) -> dict[str, Source]:
    """Every module under ``root`` by dotted name (``cityseg.labels`` for ``labels/__init__.py``)."""
    sources = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        package = parts[-1] == "__init__"
        sources[".".join(parts[:-1] if package else parts)] = Source(path, ast.parse(path.read_text()), package)
    return sources


def runtime_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements that can run: anywhere in the module, except under ``if TYPE_CHECKING:``."""
    pending = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            pending.extend(node.orelse)
        else:
            pending.extend(ast.iter_child_nodes(node))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def absolute_module(sources: Mapping[str, Source], module: str, node: ast.ImportFrom) -> str:
    """The module a ``from ... import`` statement in ``module`` names, relative imports resolved."""
    if not node.level:
        return node.module or ""
    parts = module.split(".") if sources[module].package else module.split(".")[:-1]
    base = parts[: len(parts) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def _bound_names(body: Iterable[ast.stmt]) -> Iterator[tuple[str, ast.stmt]]:
    """(name, statement) for each name a module binds at its top (inside top-level if/try blocks too)."""
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            yield node.name, node
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                yield (alias.asname or alias.name).split(".")[0], node
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        yield name.id, node
        elif isinstance(node, ast.If | ast.Try | ast.With):
            for block in ("body", "orelse", "finalbody"):
                yield from _bound_names(getattr(node, block, []))
            for handler in getattr(node, "handlers", []):
                yield from _bound_names(handler.body)


def origin(sources: Mapping[str, Source], module: str, name: str, depth: int = 0) -> str | None:
    """The module ``from module import name`` gets ``name`` from; None when nothing there binds it."""
    if f"{module}.{name}" in sources:
        return f"{module}.{name}"
    source = sources.get(module)
    if source is None or depth > len(sources):
        return None
    for bound, node in _bound_names(source.tree.body):
        if bound != name:
            continue
        if isinstance(node, ast.ImportFrom):  # a re-export: follow it to where the name is defined
            imported = next(a.name for a in node.names if (a.asname or a.name) == name)
            where = absolute_module(sources, module, node)
            if where == ROOT or where.startswith(ROOT + "."):
                return origin(sources, where, imported, depth + 1) or module
        return module
    lazy = any(bound == "__getattr__" for bound, _ in _bound_names(source.tree.body))
    if source.package and lazy:  # PEP 562: the package imports the submodule that has the name on first use
        children = [other for other in sources if other.rpartition(".")[0] == module]
        binders = [
            (isinstance(node, ast.Import | ast.ImportFrom), child)  # where it is defined before where it is imported
            for child in children
            for bound, node in _bound_names(sources[child].tree.body)
            if bound == name
        ]
        return min(binders)[1] if binders else None
    return None


@dataclass(frozen=True)
class Unresolved:
    """An import of a cityseg module or name that does not exist."""

    line: int
    what: str


def imports_of(sources: Mapping[str, Source], module: str) -> tuple[dict[str, int], list[Unresolved]]:
    """The cityseg modules ``module`` imports (module -> line of its first import there), and what resolves nowhere.

    Importing ``cityseg.a.b.c`` runs the packages on the way (``cityseg.a``, ``cityseg.a.b``) too, save those
    that hold ``module`` itself: they have started already.
    """
    edges: dict[str, int] = {}
    unresolved: list[Unresolved] = []

    def add(target: str, line: int) -> None:
        if target == module or module.startswith(target + "."):
            return
        edges[target] = min(line, edges.get(target, line))

    for node in runtime_imports(sources[module].tree):
        if isinstance(node, ast.Import):
            wanted = [(alias.name, []) for alias in node.names]
        else:
            wanted = [(absolute_module(sources, module, node), [alias.name for alias in node.names])]
        for target, names in wanted:
            if target != ROOT and not target.startswith(ROOT + "."):
                continue
            if target not in sources:
                unresolved.append(Unresolved(node.lineno, target))
                continue
            parts = target.split(".")
            for end in range(2, len(parts) + 1):  # the packages on the way, then the module itself
                add(".".join(parts[:end]), node.lineno)
            for name in names:
                found = origin(sources, target, name) if name != "*" else target
                if found is None:
                    unresolved.append(Unresolved(node.lineno, f"{target}.{name}"))
                else:
                    add(found, node.lineno)
    return edges, unresolved


def import_graph(sources: Mapping[str, Source]) -> dict[str, dict[str, int]]:
    """module -> {imported module: line}, for every module of the package."""
    return {module: imports_of(sources, module)[0] for module in sources}


def cycle_groups(graph: Mapping[str, Iterable[str]]) -> list[set[str]]:
    """The groups of modules that reach each other, in name order: the strongly connected components (Tarjan's
    algorithm) of more than one module, or of one that imports itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph.get(node, ()):
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(groups, key=min)


def find_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """One cycle ``[a, b, ..., a]`` for each of the :func:`cycle_groups`: a shortest one through its first module."""
    return [_shortest_cycle(graph, group) for group in cycle_groups(graph)]


def _shortest_cycle(graph: Mapping[str, Iterable[str]], group: set[str]) -> list[str]:
    start = min(group)
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:  # breadth first inside the group, back to start
        following = []
        for node in frontier:
            for target in sorted(graph.get(node, ())):
                if target == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [start, *reversed(path[:-1]), start] if node != start else [start, start]
                if target in group and target not in came_from:
                    came_from[target] = node
                    following.append(target)
        frontier = following
    raise AssertionError(f"{sorted(group)} is not a cycle")


def layer(module: str) -> int | None:
    """The layer of a module: that of the longest LAYERS entry naming it or a package above it."""
    parts = module.split(".")[1:] or ["__init__"]
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in LAYER:
            return LAYER[".".join(parts[:end])]
    return None


SOURCES = read_package()
GRAPH = import_graph(SOURCES)


def _file(module: str) -> str:
    return str(SOURCES[module].path.relative_to(PACKAGE))


def _short(module: str) -> str:
    return module.removeprefix(ROOT + ".")


def _stage(module: str) -> str:
    """The first name below cityseg: the module or package a stage of the pipeline lives in."""
    return module.split(".")[1] if "." in module else "__init__"


# ---- the rules -------------------------------------------------------------------------------------------


def test_every_import_names_a_module_or_name_that_exists():
    """An import that resolves nowhere would be an edge the graph cannot see (and fails when it runs)."""
    broken = [
        f"{_file(module)}:{miss.line} imports {miss.what}"
        for module in SOURCES
        for miss in imports_of(SOURCES, module)[1]
    ]
    assert not broken, "; ".join(broken)


def test_no_import_cycle_between_modules():
    described = []
    for group in cycle_groups(GRAPH):
        cycle = _shortest_cycle(GRAPH, group)
        lines = ", ".join(f"{_file(a)}:{GRAPH[a][b]} imports {_short(b)}" for a, b in itertools.pairwise(cycle))
        members = ", ".join(_short(m) for m in sorted(group))
        described.append(f"{' -> '.join(_short(m) for m in cycle)} ({lines}; the modules in that circle: {members})")
    assert not described, f"{len(described)} import cycle(s): " + "; ".join(described)


def upward_imports(module: str, edges: Mapping[str, int]) -> list[str]:
    """The imports of ``module`` that reach above its layer (a module with no layer counts as the top)."""
    own = layer(module)
    return [
        f"{_short(target)} (layer {layer(target)}, line {line})"
        for target, line in sorted(edges.items())
        if (layer(target) if layer(target) is not None else len(LAYERS)) > own
    ]


@pytest.mark.parametrize("module", sorted(SOURCES), ids=_file)
def test_imports_point_down_the_layers(module):
    own = layer(module)
    assert own is not None, f"{_file(module)} has no place in LAYERS; add it where it belongs in the pipeline"
    upward = upward_imports(module, GRAPH[module])
    assert not upward, f"{_file(module)} (layer {own}) imports {', '.join(upward)}, which sit above it"


def test_only_the_command_line_and_the_demo_import_training():
    importers = sorted(
        f"{_file(module)}:{line}"
        for module, edges in GRAPH.items()
        if _stage(module) not in TRAINING_IMPORTERS
        for target, line in edges.items()
        if target == f"{ROOT}.training" or target.startswith(f"{ROOT}.training.")
    )
    assert not importers, f"cityseg.training imported by {', '.join(importers)}"


def _public(name: str) -> bool:
    return not name.startswith("_") or (name.startswith("__") and name.endswith("__"))  # __init__ is the class's


def _public_functions(tree: ast.Module) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef, bool]]:
    """(qualified name, function, is a method) of the module's public functions and its public classes' methods."""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _public(node.name):
            yield node.name, node, False
        elif isinstance(node, ast.ClassDef) and _public(node.name):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and _public(item.name):
                    static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in item.decorator_list)
                    yield f"{node.name}.{item.name}", item, not static


def parameter_count(function: ast.FunctionDef | ast.AsyncFunctionDef, method: bool) -> int:
    """The parameters a caller can pass: positional, keyword-only, ``*args`` and ``**kwargs``; not self or cls."""
    arguments = function.args
    count = len(arguments.posonlyargs) + len(arguments.args) + len(arguments.kwonlyargs)
    count += (arguments.vararg is not None) + (arguments.kwarg is not None)
    return count - 1 if method and count else count


def _crowded(functions: Iterable[tuple[str, ast.AST, bool]], count: Callable, limit: int) -> list[str]:
    """``name (count)`` of each function whose ``count(function, is_method)`` is over ``limit``."""
    return [f"{name} ({n})" for name, function, method in functions if (n := count(function, method)) > limit]


@pytest.mark.parametrize("module", sorted(SOURCES), ids=_file)
def test_public_functions_take_few_parameters(module):
    crowded = _crowded(_public_functions(SOURCES[module].tree), parameter_count, MAX_PUBLIC_PARAMETERS)
    assert not crowded, f"{_file(module)}: {', '.join(crowded)} parameters; take an options object instead"


def _private_functions(tree: ast.Module) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef, bool]]:
    """(name, function, is a method) of every helper (a name with a leading underscore, dunders aside)."""
    for node in ast.walk(tree):
        items = node.body if isinstance(node, ast.ClassDef | ast.Module) else []
        for item in items:
            function = isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
            if function and item.name.startswith("_") and not item.name.startswith("__"):
                yield item.name, item, isinstance(node, ast.ClassDef)


def positional_count(function: ast.FunctionDef | ast.AsyncFunctionDef, method: bool) -> int:
    """The parameters a caller may pass by position (not self or cls, not keyword-only)."""
    count = len(function.args.posonlyargs) + len(function.args.args)
    return count - 1 if method and count else count


@pytest.mark.parametrize("module", sorted(SOURCES), ids=_file)
def test_helpers_take_few_positional_arguments(module):
    crowded = _crowded(_private_functions(SOURCES[module].tree), positional_count, MAX_HELPER_POSITIONALS)
    assert not crowded, f"{_file(module)}: {', '.join(crowded)} positional parameters; pass an object instead"


def test_the_positional_check_can_fail():
    tree = ast.parse(
        "def _helper(a, b, c, d, e, f):\n    pass\nclass K:\n    def _m(self, a, b, *, c, d, e, f):\n        pass\n"
    )
    counts = {name: positional_count(function, method) for name, function, method in _private_functions(tree)}
    assert counts == {"_helper": 6, "_m": 2}


@pytest.mark.parametrize("module", sorted(SOURCES), ids=_file)
def test_modules_and_functions_stay_small(module):
    name = _file(module)
    source = SOURCES[module].path.read_text()
    if name not in LONG_TABLES:
        assert len(source.splitlines()) <= MAX_MODULE_LINES, f"{name} has over {MAX_MODULE_LINES} lines"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(SOURCES[module].tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno >= MAX_FUNCTION_LINES
    ]
    assert not long, f"{name}: {', '.join(long)}"


# ---- the checks can fail ---------------------------------------------------------------------------------


def test_find_cycles_reports_each_cycle_and_passes_a_graph_without_one():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"a", "c"}}) == []
    graph = {"a": {"b"}, "b": {"c", "e"}, "c": {"a"}, "d": {"a"}, "e": {"e"}, "f": {"g"}, "g": {"f"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"], ["e", "e"], ["f", "g", "f"]]


def _fake_package(modules: dict[str, str]) -> dict[str, Source]:
    """Sources from text: a name ending in ``/`` is a package's ``__init__``."""
    return {
        name.rstrip("/"): Source(Path(name.replace(".", "/").rstrip("/") + ".py"), ast.parse(text), name.endswith("/"))
        for name, text in modules.items()
    }


def test_the_graph_sees_imports_in_functions_and_through_packages_but_not_type_checking_ones():
    root = ROOT
    sources = _fake_package(
        {
            f"{root}/": "",
            f"{root}.low": "VALUE = 1\n",
            f"{root}.pkg/": f"from {root}.pkg.inner import Inner\n",
            f"{root}.pkg.inner": f"from {root}.low import VALUE\nclass Inner: ...\n",
            f"{root}.pkg.other": f"from {root}.pkg import Inner\n",
            f"{root}.lazy/": "def __getattr__(name): ...\n",
            f"{root}.lazy.run": "def train(): ...\n",
            f"{root}.top": (
                "from typing import TYPE_CHECKING\n"
                f"if TYPE_CHECKING:\n    from {root}.lazy import train\n"
                f"def f():\n    from {root}.pkg import inner\n"
            ),
            f"{root}.user": f"from {root}.lazy import train\nimport {root}.pkg.other\nfrom {root} import missing\n",
        }
    )
    graph = import_graph(sources)
    assert graph[f"{root}.top"] == {f"{root}.pkg": 5, f"{root}.pkg.inner": 5}  # the package runs first
    assert graph[f"{root}.pkg.other"] == {f"{root}.pkg.inner": 1}  # its own package has started already
    assert graph[f"{root}.user"] == {f"{root}.lazy": 1, f"{root}.lazy.run": 1, f"{root}.pkg": 2, f"{root}.pkg.other": 2}
    assert imports_of(sources, f"{root}.user")[1] == [Unresolved(3, f"{root}.missing")]
    assert find_cycles(graph) == []
    # importing a module of pkg runs pkg's __init__, whose re-export imports low: a cycle through the __init__
    sources |= _fake_package({f"{root}.pkg.lone": "", f"{root}.low": f"import {root}.pkg.lone\n"})
    assert find_cycles(import_graph(sources)) == [[f"{root}.low", f"{root}.pkg", f"{root}.pkg.inner", f"{root}.low"]]


def test_the_layer_check_finds_an_import_up_the_layers():
    assert layer(ROOT) == 0 and layer(f"{ROOT}.cli.registry") == layer(f"{ROOT}.cli") == len(LAYERS) - 1
    assert layer(f"{ROOT}.no_such_stage") is None
    assert upward_imports(f"{ROOT}.cli.registry", {f"{ROOT}.errors": 3, f"{ROOT}.labels.tables": 9}) == []
    assert upward_imports(f"{ROOT}.errors", {f"{ROOT}.cli": 3, f"{ROOT}.no_such_stage": 5}) == [
        f"cli (layer {len(LAYERS) - 1}, line 3)",
        "no_such_stage (layer None, line 5)",
    ]


def test_the_parameter_count_leaves_out_self_only():
    [function] = ast.parse("def f(a, /, b, *c, d, **e): ...").body
    assert parameter_count(function, method=False) == 5 and parameter_count(function, method=True) == 4
    module = ast.parse(
        "class A:\n    def __init__(self, a): ...\n    def run(self, a): ...\n    def _hide(self): ...\n"
    )
    assert [(name, method) for name, _, method in _public_functions(module)] == [("A.__init__", True), ("A.run", True)]
