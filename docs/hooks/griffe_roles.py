"""Griffe extension of the docs site: the docstrings' Sphinx roles become cross-references.

The docstrings name other objects as ``:func:`check_batch``` or ``:class:`~alfa.rules.ALFA```
(readable in ``help()`` and in an editor). Here each role is resolved the way Python would read
the name from where the docstring is (the object's class, its module, the module's imports, or
a full ``alfa.`` path) and written as a Markdown cross-reference
(``[`ALFA`][alfa.rules.alfa.ALFA]``) to the object's own page. ``mkdocs build --strict`` fails
on a full ``alfa.`` name that names no object, and on a reference whose object is not rendered.
A name outside ``alfa`` (``torch.func.vmap``) or a private one stays code.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj):`(~?)([^`]+?)`")
_LITERAL = re.compile(r"(?<=\S)::$", re.MULTILINE)  # "text::" introducing a code block


def _lookup(pkg: griffe.Module, path: str) -> griffe.Object | None:
    """The object at ``path`` (``alfa.x.y``), following re-exports to where it is defined."""
    if path != pkg.path and not path.startswith(pkg.path + "."):
        return None
    try:
        found = pkg[path[len(pkg.path) + 1 :]] if path != pkg.path else pkg
    except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None
    try:
        return found.final_target if isinstance(found, griffe.Alias) else found
    except (griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None


def _resolve(pkg: griffe.Module, obj: griffe.Object, name: str) -> griffe.Object | None:
    scopes = [name]
    owner: Any = obj
    while owner is not None:  # the object itself, its class, its module, its package...
        scopes.append(f"{owner.path}.{name}")
        owner = owner.parent
    for path in scopes:
        target = _lookup(pkg, path)
        if target is not None:
            return target
    return None


def _rendered(target: griffe.Object) -> bool:
    """Whether the site renders ``target`` (public, and every parent public)."""
    node: Any = target
    while node is not None and node.parent is not None:
        if node.name.startswith("_") and not node.name.startswith("__"):
            return False
        node = node.parent
    return True


def rewrite(pkg: griffe.Module, obj: griffe.Object, text: str) -> str:
    """``text`` with every role resolved from ``obj`` (a cross-reference or code)."""

    def sub(match: re.Match[str]) -> str:
        short, name = match.group(1) == "~", match.group(2).lstrip(".")
        shown = name.rsplit(".", 1)[-1] if short else name
        target = _resolve(pkg, obj, name)
        if target is None and name.startswith(pkg.path + "."):
            where = f"{obj.relative_filepath}:{obj.lineno}" if obj.lineno else obj.path
            griffe.logger.warning(f"{where}: {match.group(0)} names no object")
        if target is None or not _rendered(target):
            return f"`{shown}`"
        return f"[`{shown}`][{target.path}]"

    return _LITERAL.sub(":", _ROLE.sub(sub, text))


class RolesToLinks(griffe.Extension):
    """Rewrite every docstring of the package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        stack: list[griffe.Object] = [pkg]
        while stack:
            obj = stack.pop()
            if obj.docstring is not None:
                obj.docstring.value = rewrite(pkg, obj, obj.docstring.value)
            stack.extend(m for m in obj.members.values() if not isinstance(m, griffe.Alias))
