"""The API reference, ``docs/api.md``, generated from the docstrings of the public objects.

One source: the signatures (:mod:`inspect`) and docstrings of the objects listed in
:data:`SECTIONS`. Cross-references written as Sphinx roles (``:class:`~alfa.rules.ALFA```,
``:func:``, ``:meth:``, ``:mod:``, ``:data:``) are resolved by importing their target: one
that the page documents becomes a link to it, any other one a code span, and one that does not
import is a broken reference, which fails the check (strict mode)::

    python -m alfa.api_docs              # rewrite docs/api.md
    python -m alfa.api_docs --check      # exit 1 when docs/api.md is out of date or a
                                         # reference is broken

A test runs the check, so the committed page cannot drift from the code.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alfa.generated_page import write_or_check

__all__ = ["DOCS_PATH", "SECTIONS", "Renderer", "main", "render_markdown", "resolve"]

DOCS_PATH = Path("docs") / "api.md"

SECTIONS: list[tuple[str, list[str]]] = [
    (
        "Building a learner",
        [
            "alfa.meta_learner.MetaLearner",
            "alfa.meta_learner.MetaOutput",
            "alfa.rules.make_rule",
            "alfa.rules.RULES",
            "alfa.build.build_learner",
        ],
    ),
    (
        "Update rules",
        [
            "alfa.rules.base.UpdateRule",
            "alfa.rules.maml.MAML",
            "alfa.rules.learned_fixed.LearnedFixed",
            "alfa.rules.alfa.ALFA",
            "alfa.rules.l2f.L2F",
            "alfa.rules.base.Hyperparameters",
            "alfa.rules.build_rule",
        ],
    ),
    (
        "Base learners",
        [
            "alfa.base_learner.prepare_base_learner",
            "alfa.functional.FunctionalModel",
            "alfa.models.batchnorm.MetaBatchNorm2d",
            "alfa.models.mlp.MLP",
        ],
    ),
    (
        "Meta-batches and losses",
        [
            "alfa.typing.TaskBatch",
            "alfa.batch_checks.check_batch",
            "alfa.batch_checks.check_tensors",
            "alfa.batch_checks.check_labels",
            "alfa.losses.mse",
            "alfa.losses.cross_entropy",
            "alfa.inner_loop.inner_loop",
        ],
    ),
    (
        "Your data",
        [
            "alfa.data.few_shot.FewShotEpisodes",
            "alfa.data.torch_dataset.from_torch_dataset",
            "alfa.data.folder.load_folder",
            "alfa.data.formats.load_dataset",
            "alfa.data.episodes.fixed_episodes",
            "alfa.tasks.sinusoid.SinusoidTasks",
        ],
    ),
    (
        "Training and evaluation",
        [
            "alfa.train.train",
            "alfa.evaluate.evaluate",
            "alfa.runs.load_run",
        ],
    ),
    (
        "Errors",
        [
            "alfa.errors.AlfaError",
            "alfa.errors.ArgumentError",
            "alfa.errors.BatchError",
            "alfa.errors.ModelError",
            "alfa.errors.ConfigError",
            "alfa.errors.DataError",
            "alfa.errors.DivergenceError",
        ],
    ),
]
"""The page's sections and, in order, the objects each documents (by their defining module)."""

_ROLE = re.compile(r":(class|func|meth|mod|data|attr|exc):`(~?)([\w.]+)(?:\(\))?`")
_SECTION_HEADERS = ("Args:", "Returns:", "Raises:", "Attributes:", "Yields:")


def resolve(target: str, context: str = "") -> Any:
    """The object a dotted reference names, or raise ``LookupError``.

    A name without a dot is looked up on ``context`` (the documented class or module) first.
    """
    candidates = [target]
    if context:
        candidates.insert(0, f"{context}.{target}")
    for name in candidates:
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                obj: Any = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            try:
                for attr in parts[cut:]:
                    obj = getattr(obj, attr)
            except AttributeError:
                break
            return obj
    raise LookupError(target)


def _key(obj: Any) -> int:
    return id(obj.__func__) if hasattr(obj, "__func__") else id(obj)


@dataclass
class Renderer:
    """Turns docstrings into Markdown, linking references to the objects of the page."""

    anchors: dict[int, str] = field(default_factory=dict)
    broken: list[str] = field(default_factory=list)

    def reference(self, match: re.Match[str], context: str, where: str) -> str:
        _, short, target = match.groups()
        shown = target.rsplit(".", 1)[-1] if short else target
        try:
            obj = resolve(target, context)
        except LookupError:
            self.broken.append(f"{where}: {match.group(0)}")
            return f"`{shown}`"
        anchor = self.anchors.get(_key(obj))
        return f"[`{shown}`](#{anchor})" if anchor else f"`{shown}`"

    def name(self, name: str, error: bool) -> str:
        """An argument name, or an exception linked to its entry when the page has one."""
        if error:
            try:
                anchor = self.anchors.get(_key(resolve(name, "alfa.errors")))
            except LookupError:
                anchor = None
            if anchor:
                return f"[`{name}`](#{anchor})"
        return f"`{name}`"

    def text(self, line: str, context: str, where: str) -> str:
        line = _ROLE.sub(lambda m: self.reference(m, context, where), line)
        return re.sub(r"``(.+?)``", r"`\1`", line)

    def docstring(self, doc: str, context: str, where: str) -> list[str]:
        out: list[str] = []
        lines = inspect.cleandoc(doc).splitlines()
        i, literal = 0, False
        while i < len(lines):
            line = lines[i]
            stripped = line.strip()
            if literal:  # an indented block after "::"
                if stripped and not line.startswith("    "):
                    while out and not out[-1].strip():
                        out.pop()
                    out += ["```", ""]
                    literal = False
                    continue
                out.append(line[4:])
                i += 1
                continue
            if stripped in _SECTION_HEADERS:
                out += ["", f"**{stripped[:-1]}**", ""]
                i += 1
                while i < len(lines) and (not lines[i].strip() or lines[i].startswith("    ")):
                    entry = lines[i].strip()
                    if entry:
                        name, sep, rest = entry.partition(": ")
                        if lines[i].startswith("        ") and out:
                            out[-1] += " " + self.text(entry, context, where)
                        elif sep and " " not in name.replace(", ", ","):
                            shown = self.name(name, stripped == "Raises:")
                            out.append(f"- {shown}: {self.text(rest, context, where)}")
                        else:
                            out.append(f"- {self.text(entry, context, where)}")
                    i += 1
                out.append("")
                continue
            if stripped.endswith("::"):
                out.append(self.text(line.rstrip()[:-1], context, where))
                out += ["", "```text" if "$" in stripped else "```python"]
                literal = True
                i += 1
                while i < len(lines) and not lines[i].strip():
                    i += 1
                continue
            out.append(self.text(line, context, where))
            i += 1
        if literal:
            out.append("```")
        return out


def _parameter(p: inspect.Parameter) -> str:
    prefix = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "")
    text = prefix + p.name
    if p.annotation is not p.empty:
        hint = (
            p.annotation
            if isinstance(p.annotation, str)
            else inspect.formatannotation(p.annotation)
        )
        text += f": {hint}"
    if p.default is not p.empty:
        default = getattr(p.default, "__name__", None) if callable(p.default) else None
        text += f" = {default or repr(p.default)}"
    return text


def _signature(obj: Any, name: str) -> str:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return name
    params: list[str] = []
    star = False
    for p in sig.parameters.values():
        if p.name == "self":
            continue
        if p.kind is p.KEYWORD_ONLY and not star:
            params.append("*")
        star = star or p.kind in (p.KEYWORD_ONLY, p.VAR_POSITIONAL)
        params.append(_parameter(p))
    result = ""
    if sig.return_annotation not in (sig.empty, "None", None):
        hint = sig.return_annotation
        result = f" -> {hint if isinstance(hint, str) else inspect.formatannotation(hint)}"
    text = f"{name}({', '.join(params)}){result}"
    if len(text) > 88:
        text = f"{name}(\n" + "".join(f"    {p},\n" for p in params) + ")" + result
    return text


def _methods(cls: type) -> list[tuple[str, Callable[..., Any]]]:
    out = []
    for name, value in vars(cls).items():
        if name.startswith("_") or not (inspect.isfunction(value) or isinstance(value, property)):
            continue
        func = value.fget if isinstance(value, property) else value
        if func is not None and func.__doc__:
            out.append((name, value))
    return out


def _documented(name: str) -> tuple[str, Any]:
    module, _, attr = name.rpartition(".")
    return name, getattr(importlib.import_module(module), attr)


def render_markdown(sections: list[tuple[str, list[str]]] | None = None) -> tuple[str, list[str]]:
    """The text of ``docs/api.md`` and the broken references found on the way."""
    sections = SECTIONS if sections is None else sections
    objects = [[_documented(n) for n in names] for _, names in sections]
    renderer = Renderer()
    for group in objects:
        for name, obj in group:
            renderer.anchors[_key(obj)] = name
            if inspect.isclass(obj):
                for method, value in _methods(obj):
                    func = value.fget if isinstance(value, property) else value
                    renderer.anchors.setdefault(_key(func), f"{name}.{method}")
    out = [
        "# API reference",
        "",
        "<!-- Generated by `python -m alfa.api_docs` from the docstrings; edit them, not this "
        "file. -->",
        "",
        "The public Python API, section by section. `import alfa` is cheap (torch is loaded on",
        "first use); the names most code needs are importable from `alfa` itself:",
        "`alfa.MetaLearner`, `alfa.TaskBatch`, `alfa.FewShotEpisodes`, `alfa.SinusoidTasks`,",
        "`alfa.ALFA`, `alfa.MAML`, `alfa.LearnedFixed`, `alfa.L2F`. See",
        "[your model, your episodes](your-model.md) for a walk-through and",
        "[coming from learn2learn](learn2learn.md) for the mapping from `l2l.algorithms.MAML`;",
        "[concepts](concepts.md) explains the rules, the inner and outer loop and the batch-norm",
        "modes, and [the paper map](paper-map.md) which config reproduces which table.",
        "",
        "## Contents",
        "",
    ]
    for (title, _), group in zip(sections, objects, strict=True):
        links = ", ".join(f"[`{n.rsplit('.', 1)[-1]}`](#{n})" for n, _ in group)
        out.append(f"- **{title}**: {links}")
    for (title, _), group in zip(sections, objects, strict=True):
        out += ["", f"## {title}"]
        for name, obj in group:
            short = name.rsplit(".", 1)[-1]
            kind = "class" if inspect.isclass(obj) else ("function" if callable(obj) else "data")
            out += ["", f'<a id="{name}"></a>', "", f"### `{name}` ({kind})", ""]
            context = name if inspect.isclass(obj) else name.rpartition(".")[0]
            if callable(obj):
                target = obj if not inspect.isclass(obj) else obj.__init__
                shown = _signature(target, short) if kind == "function" else None
                if inspect.isclass(obj) and not issubclass(obj, (Exception, tuple)):
                    shown = _signature(obj, short)
                if shown:
                    out += ["```python", shown, "```", ""]
            doc = inspect.getdoc(obj) if kind != "data" else _data_doc(name)
            out += renderer.docstring(doc or "", context, name)
            if inspect.isclass(obj):
                for method, value in _methods(obj):
                    func = value.fget if isinstance(value, property) else value
                    label = method if isinstance(value, property) else _signature(func, method)
                    out += ["", f'<a id="{name}.{method}"></a>', "", f"#### `{short}.{method}`", ""]
                    if not isinstance(value, property):
                        out += ["```python", label, "```", ""]
                    out += renderer.docstring(func.__doc__ or "", context, f"{name}.{method}")
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(out)).rstrip() + "\n"
    return text, renderer.broken


def _data_doc(name: str) -> str:
    """The docstring written under a module-level constant (read from the module's source)."""
    module, _, attr = name.rpartition(".")
    source = inspect.getsource(importlib.import_module(module))
    found = re.search(rf"^{attr}\b[^\n]*(?:\n[^\n\"]+)*?\n\"\"\"(.+?)\"\"\"", source, re.M | re.S)
    return found.group(1) if found else ""


def main(argv: list[str] | None = None) -> int:
    """``python -m alfa.api_docs [--check] [PATH]``: write (or check) docs/api.md."""
    parser = argparse.ArgumentParser(prog="python -m alfa.api_docs", description=__doc__)
    parser.add_argument("path", nargs="?", default=str(DOCS_PATH), help="default: docs/api.md")
    parser.add_argument("--check", action="store_true", help="exit 1 if out of date or broken")
    args = parser.parse_args(argv)
    text, broken = render_markdown()
    for item in broken:
        print(f"broken reference: {item}", file=sys.stderr)
    return write_or_check(
        Path(args.path),
        text,
        check=args.check,
        command="python -m alfa.api_docs",
        problems=bool(broken),
    )


if __name__ == "__main__":
    sys.exit(main())
