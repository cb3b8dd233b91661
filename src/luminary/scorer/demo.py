"""An offline multi-task dataset from the CPython standard library.

Cappy is trained on many tasks and judged on tasks it never saw. Here every
short documented public function of the standard library (read with ``ast``,
nothing downloaded) yields one example per task:

======================  ==========================================  =====================
task                    instruction                                 reference
======================  ==========================================  =====================
docstring               write a one-line docstring for this code    the docstring's first line
parameters              list the parameters of this code            ``a, b, c``
returns                 does this code return a value?              ``yes`` / ``no``
returned                what expression does this code return?      ``self._count + 1``
assigned                name a local variable this code assigns     ``result``
module                  which module defines this code?             ``json``
name                    name the function this docstring describes  ``dumps``
raises                  name an exception this code raises          ``ValueError``
calls                   name a function this code calls             ``os.path.join``
======================  ==========================================  =====================

The split is by task (the scorer is trained on some tasks, judged on the
others) and by module (a seeded fifth of the modules is held out), so a
held-out task is also read on code the scorer never saw.
"""

from __future__ import annotations

import ast
import contextlib
import gc
import sysconfig
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from luminary.core.errors import LuminaryError
from luminary.core.seed import derive_seed

STDLIB = Path(sysconfig.get_paths()["stdlib"])
TRAIN_TASKS = ("parameters", "returned", "assigned", "docstring")
HELDOUT_TASKS = ("name", "raises", "calls")


@dataclass(frozen=True)
class FunctionFacts:
    """What the tasks ask about one function."""

    module: str
    qualname: str
    code: str  # the source without its docstring, dedented
    summary: str  # the docstring's first line
    parameters: tuple[str, ...]  # without self / cls
    returns_value: bool | None  # None for generators (the question is ambiguous)
    returned: tuple[str, ...]  # returned expressions, as written
    assigned: tuple[str, ...]  # local names assigned
    raises: tuple[str, ...]
    calls: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.qualname.rsplit(".", 1)[-1]


def _own_nodes(func: ast.AST):
    """Nodes of a function body, not descending into nested functions, lambdas or classes."""
    stack = list(ast.iter_child_nodes(func))
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            stack.extend(ast.iter_child_nodes(node))


def _dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for a chain of names and attributes (``self.`` dropped), else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    if node.id not in ("self", "cls"):
        parts.append(node.id)
    return ".".join(reversed(parts)) or None


def _facts(module: str, qualname: str, func: ast.FunctionDef, source: str, lines: list[str],
           max_lines: int) -> FunctionFacts | None:
    doc = ast.get_docstring(func)
    if not doc or qualname.rsplit(".", 1)[-1].startswith("_") or len(func.body) < 2:
        return None
    summary = doc.strip().splitlines()[0].strip()
    if not 3 <= len(summary.split()) <= 16:
        return None
    first, last = func.lineno - 1 - len(func.decorator_list), func.end_lineno
    doc_node = func.body[0]
    kept = lines[first : doc_node.lineno - 1] + lines[doc_node.end_lineno : last]
    kept = [line for line in kept if line.strip()]
    if len(kept) > max_lines:
        return None
    nodes = list(_own_nodes(func))
    if any(isinstance(n, (ast.Yield, ast.YieldFrom)) for n in nodes):
        returns = None
    else:
        returns = any(isinstance(n, ast.Return) and n.value is not None
                      and not (isinstance(n.value, ast.Constant) and n.value.value is None) for n in nodes)
    returned = _unique(" ".join(ast.get_source_segment(source, n.value).split())
                       for n in nodes if isinstance(n, ast.Return) and n.value is not None)
    assigned = _unique(t.id for n in nodes if isinstance(n, (ast.Assign, ast.AugAssign, ast.AnnAssign))
                       for t in (n.targets if isinstance(n, ast.Assign) else [n.target]) if isinstance(t, ast.Name))
    raises, calls = [], []
    for n in sorted((n for n in nodes if isinstance(n, (ast.Raise, ast.Call))), key=lambda n: (n.lineno, n.col_offset)):
        if isinstance(n, ast.Raise) and n.exc is not None:
            name = _dotted(n.exc.func if isinstance(n.exc, ast.Call) else n.exc)
            if name and name not in raises:
                raises.append(name)
        elif isinstance(n, ast.Call):
            name = _dotted(n.func)
            if name and not name.split(".")[-1].startswith("_") and name not in calls:
                calls.append(name)
    args = func.args
    params = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs if a.arg not in ("self", "cls")]
    params += [f"*{args.vararg.arg}"] if args.vararg else []
    params += [f"**{args.kwarg.arg}"] if args.kwarg else []
    return FunctionFacts(module, qualname, textwrap.dedent("\n".join(kept)), summary, tuple(params),
                         returns, tuple(r for r in returned if len(r) <= 60), assigned, tuple(raises),
                         tuple(c for c in calls if c not in raises))


def _unique(items) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


@contextlib.contextmanager
def _gc_paused():
    """Syntax trees are large graphs of small objects: the cyclic collector would
    walk them again and again while they are built (it more than doubles the time)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def stdlib_functions(max_lines: int = 10, root: Path = STDLIB) -> list[FunctionFacts]:
    """Short documented public functions and methods of the top-level stdlib modules."""
    with _gc_paused():
        return _collect(root, max_lines)


def _collect(root: Path, max_lines: int) -> list[FunctionFacts]:
    out = []
    for path in sorted(root.glob("*.py")):
        module = path.stem
        if module.startswith("_") or module == "this":
            continue
        try:
            source = path.read_text(encoding="utf-8")
            tree = ast.parse(source)
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        lines = source.splitlines()
        for node in tree.body:
            members = [(node.name, node)] if isinstance(node, ast.FunctionDef) else []
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                members = [(f"{node.name}.{m.name}", m) for m in node.body if isinstance(m, ast.FunctionDef)]
            for qualname, func in members:
                facts = _facts(module, qualname, func, source, lines, max_lines)
                if facts is not None:
                    out.append(facts)
    return out


@dataclass(frozen=True)
class Task:
    """An instruction template and the references it has for a function (empty: no example)."""

    instruction: str
    references: Callable[[FunctionFacts], list[str]]


TASKS: dict[str, Task] = {
    "docstring": Task("Write a one-line docstring for this Python function.\n\n{code}", lambda f: [f.summary]),
    "parameters": Task("List the parameters of this Python function, separated by commas.\n\n{code}",
                       lambda f: [", ".join(f.parameters)] if f.parameters else []),
    "returns": Task("Does this Python function return a value? Answer yes or no.\n\n{code}",
                    lambda f: [] if f.returns_value is None else ["yes" if f.returns_value else "no"]),
    "module": Task("Name the standard-library module that defines this Python function.\n\n{code}",
                   lambda f: [f.module]),
    "returned": Task("What expression does this Python function return?\n\n{code}", lambda f: list(f.returned)),
    "assigned": Task("Name a local variable that this Python function assigns.\n\n{code}",
                     lambda f: list(f.assigned)),
    "name": Task("Name the Python function whose docstring says: \"{summary}\"", lambda f: [f.name]),
    "raises": Task("Name an exception that this Python function raises.\n\n{code}", lambda f: list(f.raises)),
    "calls": Task("Name a function that this Python function calls.\n\n{code}", lambda f: list(f.calls)),
}


def task_rows(functions: Sequence[FunctionFacts], tasks: Sequence[str]) -> list[dict[str, Any]]:
    """One row ``{task, instruction, references, module, id}`` per (task, function) with references."""
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise LuminaryError(f"tasks: unknown {unknown} (known: {', '.join(TASKS)})")
    rows, seen = [], set()
    for task in tasks:
        spec = TASKS[task]
        for f in functions:
            refs = spec.references(f)
            instruction = spec.instruction.format(code=f.code, summary=f.summary)
            if not refs or (task, instruction) in seen:
                continue
            seen.add((task, instruction))
            rows.append({"task": task, "instruction": instruction, "references": refs, "module": f.module,
                         "id": f"{task}:{f.module}.{f.qualname}"})
    return rows


def is_heldout_module(module: str, seed: int, fraction: float = 0.2) -> bool:
    return derive_seed("heldout-module", seed, module) % 10_000 < fraction * 10_000


def demo_dataset(seed: int = 0, train_tasks: Sequence[str] = TRAIN_TASKS,
                 heldout_tasks: Sequence[str] = HELDOUT_TASKS, max_lines: int = 10,
                 heldout_fraction: float = 0.2) -> dict[str, list[dict[str, Any]]]:
    """Three splits of task rows:

    - ``train``: training tasks on training modules (what the scorer learns from);
    - ``heldout_tasks``: held-out tasks on held-out modules (ranking is judged here);
    - ``heldout_examples``: training tasks on held-out modules (best-of-n is judged here).
    """
    overlap = set(train_tasks) & set(heldout_tasks)
    if overlap:
        raise LuminaryError(f"tasks: {sorted(overlap)} are both training and held-out tasks")
    functions = stdlib_functions(max_lines)
    held = [f for f in functions if is_heldout_module(f.module, seed, heldout_fraction)]
    kept = [f for f in functions if not is_heldout_module(f.module, seed, heldout_fraction)]
    return {
        "train": task_rows(kept, train_tasks),
        "heldout_tasks": task_rows(held, heldout_tasks),
        "heldout_examples": task_rows(held, train_tasks),
    }
