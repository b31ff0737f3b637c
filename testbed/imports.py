"""Reading a package's imports from its source: the circle finder the import-direction tests share."""

from __future__ import annotations


def cycle_in(edges: dict[str, set[str]]) -> list[str] | None:
    """One circle in `edges` (module -> modules it imports), as the modules along it with the first repeated at
    the end, or None."""
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> list[str] | None:
        if name in path:
            return path[path.index(name):] + [name]
        if name in done:
            return None
        for imported in sorted(edges.get(name, ())):
            if found := visit(imported, [*path, name]):
                return found
        done.add(name)
        return None

    return next((found for name in sorted(edges) if (found := visit(name, []))), None)
