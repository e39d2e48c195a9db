"""The import floors of docs/ARCHITECTURE.md, read from the code (every import, also inside functions): no circle,
nothing imports a higher floor, tasks/ and continuation/ never reach the engine or torch.distributed; and no
function in contnet/ or cli/ is longer than 60 lines."""
from __future__ import annotations

import ast
import collections
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FLOORS = [  # module prefixes, from the ground up
    ("contnet.errors", "contnet.schema", "contnet.registry", "contnet.parallel", "contnet.metrics"),
    ("contnet.continuation", "contnet.models", "contnet.tasks", "contnet.optim", "contnet.peft"),
    ("contnet.validation", "contnet.engine"),
    ("contnet.report", "contnet.studies", "contnet.cli", "contnet.conf"),
]


def modules() -> dict[str, Path]:
    out = {}
    for p in (ROOT / "contnet").rglob("*.py"):
        name = ".".join(p.relative_to(ROOT).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = p
    for sub in ("cli", "conf"):
        for p in (ROOT / sub).glob("*.py"):
            out[f"contnet.{sub}" + ("" if p.stem == "__init__" else f".{p.stem}")] = p
    return out


def imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    edges = collections.defaultdict(set)
    for m, p in mods.items():
        pkg = m if p.name == "__init__.py" else m.rsplit(".", 1)[0]
        for n in ast.walk(ast.parse(p.read_text())):
            if isinstance(n, ast.ImportFrom):
                base = pkg.split(".")[: len(pkg.split(".")) - (n.level - 1)] if n.level else []
                target = ".".join(base + ([n.module] if n.module else [])) if n.level else (n.module or "")
                names = [target] + [f"{target}.{a.name}" for a in n.names]
            elif isinstance(n, ast.Import):
                names = [a.name for a in n.names]
            else:
                continue
            edges[m].update(x for x in names if x in mods and x != m or x == "torch.distributed")
    return edges


def floor(m: str) -> int | None:
    return next((i for i, f in enumerate(FLOORS) if any(m == x or m.startswith(x + ".") for x in f)), None)


def test_no_import_circle():
    mods = modules()
    edges, state, stack, circles = imports(mods), {}, [], []

    def visit(u):
        state[u] = 1
        stack.append(u)
        for v in edges[u]:
            if state.get(v) == 1:
                circles.append(stack[stack.index(v):] + [v])
            elif v not in state and v in mods:
                visit(v)
        stack.pop()
        state[u] = 2
    for m in mods:
        if m not in state:
            visit(m)
    assert circles == []


def test_nothing_imports_a_higher_floor_and_tasks_continuation_stay_off_the_engine():
    edges = imports(modules())
    up = [(m, d) for m, ds in edges.items() for d in ds
          if d != "torch.distributed" and floor(m) is not None and floor(d) is not None and floor(d) > floor(m)]
    assert up == []
    low = [(m, d) for m, ds in edges.items() for d in ds if m.startswith(("contnet.tasks", "contnet.continuation"))
           and (d.startswith("contnet.engine") or d == "torch.distributed")]
    assert low == []


def test_no_function_longer_than_60_lines():
    long = []
    for p in [*(ROOT / "contnet").rglob("*.py"), *(ROOT / "cli").rglob("*.py")]:
        for n in ast.walk(ast.parse(p.read_text())):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > 60:
                long.append(f"{p.relative_to(ROOT)}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)")
    assert long == []
