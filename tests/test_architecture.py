"""The architecture holds: the layers and contracts of pyproject.toml (import-linter), and no
import circle among the platform's and the HTTP kit's modules, imports inside functions included."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

from tests.support.project import ROOT

PACKAGES = ("config", "audit", "blog", "market")
NO_CYCLES_IN = ("config.multidb", "config.httpkit", "config.adminkit")


def test_import_contracts_hold():
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def strongly_connected(graph: grimp.ImportGraph) -> list[set[str]]:
    """Tarjan's components of the import graph (iterative: the graph may be deep)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                components.append(component)
    return components


def test_no_import_circle_in_the_platform_or_the_http_kit():
    # grimp reads every import statement of a module, those inside functions too.
    graph = grimp.build_graph(*PACKAGES)
    circles = [
        sorted(component)
        for component in strongly_connected(graph)
        if len(component) > 1 and any(m.startswith(NO_CYCLES_IN) for m in component)
    ]
    details = []
    for circle in circles:
        members = set(circle)
        for module in circle:
            for imported in sorted(graph.find_modules_directly_imported_by(module) & members):
                lines = graph.get_import_details(importer=module, imported=imported)
                where = ", ".join(f"line {d['line_number']}" for d in lines)
                details.append(f"{module} -> {imported} ({where})")
    assert circles == [], "import circles:\n" + "\n".join(details)
