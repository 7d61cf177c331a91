"""What every config key means: ``alfa config keys``, ``alfa config show`` and ``docs/config.md``.

One source: the dataclasses of :mod:`alfa.config.schema`. Their types and defaults come from
the dataclasses themselves, and each field's meaning is the trailing ``# comment`` on its line,
read from the module's source with :mod:`ast` (which line holds which field) and
:mod:`tokenize` (the comments), once per process. Comments were chosen over
``field(metadata={"help": ...})`` because the schema stays as readable as before (one line per
key, the meaning beside the default) and a comment is what an editor of the schema writes
anyway. ``docs/config.md`` is generated from the same data::

    python -m alfa.config.docs              # rewrite docs/config.md
    python -m alfa.config.docs --check      # exit 1 when docs/config.md is out of date

and a test checks that the committed file is what the generator writes, so it cannot drift.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import io
import sys
import tokenize
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from alfa.config import Config, config_to_dict
from alfa.config import schema as config_module
from alfa.errors import ConfigError

__all__ = [
    "DOCS_PATH",
    "KeyDoc",
    "config_yaml",
    "field_comments",
    "key_docs",
    "render_markdown",
    "render_text",
    "sections",
    "write_or_check",
]

DOCS_PATH = Path("docs") / "config.md"


@dataclass(frozen=True)
class KeyDoc:
    """One dotted config key: its type (as written in YAML), default and meaning."""

    key: str
    type: str
    default: str
    meaning: str


@functools.lru_cache(maxsize=1)
def field_comments() -> dict[tuple[str, str], str]:
    """``{(class name, field name): trailing comment}`` for the dataclasses of alfa.config.

    A field's comment is the one at the end of the field's last line (empty when it has none).
    """
    try:
        source = inspect.getsource(config_module)
    except (OSError, TypeError):  # pragma: no cover - installed without its .py files
        return {}
    trailing: dict[int, str] = {}
    code_rows: set[int] = set()
    skip = (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            if token.start[0] in code_rows:  # code before it on the line: a trailing comment
                trailing[token.start[0]] = token.string.lstrip("#").strip()
        elif token.type not in skip:
            code_rows.update(range(token.start[0], token.end[0] + 1))
    out: dict[tuple[str, str], str] = {}
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef):
            continue
        for stmt in node.body:
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                row = stmt.end_lineno or stmt.lineno
                out[(node.name, stmt.target.id)] = trailing.get(row, "")
    return out


def _type_name(hint: Any) -> str:
    """A field type as a user writes it in YAML: ``int``, ``list of int``, ``a | b``."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        return " | ".join(_value_text(choice) for choice in typing.get_args(hint))
    if origin is tuple:
        return f"list of {_type_name(typing.get_args(hint)[0])}"
    return getattr(hint, "__name__", str(hint))


def _value_text(value: Any) -> str:
    """A default as it would be written in YAML (``true``, ``[40, 40]``, ``""``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value_text(v) for v in value) + "]"
    if value == "":
        return '""'
    return str(value)


def _walk(cls: type, defaults: dict[str, Any], prefix: str) -> list[KeyDoc]:
    comments = field_comments()
    hints = typing.get_type_hints(cls)
    out: list[KeyDoc] = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            out.extend(_walk(hint, defaults[f.name], f"{prefix}{f.name}."))  # type: ignore[arg-type]
        else:
            meaning = comments.get((cls.__name__, f.name), "")
            out.append(
                KeyDoc(prefix + f.name, _type_name(hint), _value_text(defaults[f.name]), meaning)
            )
    return out


@functools.lru_cache(maxsize=1)
def _key_docs() -> tuple[KeyDoc, ...]:
    return tuple(_walk(Config, config_to_dict(Config()), ""))


def key_docs() -> list[KeyDoc]:
    """Every dotted leaf key of :class:`~alfa.config.Config`, in the schema's order."""
    return list(_key_docs())


def sections() -> list[tuple[str, str]]:
    """``(section, description)`` in order: ``""`` for the top-level keys, then each section,
    described by the first line of its dataclass's docstring."""
    hints = typing.get_type_hints(Config)
    out = [("", "Keys of the run itself.")]
    for f in dataclasses.fields(Config):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            doc = (inspect.getdoc(hint) or "").splitlines()
            out.append((f.name, doc[0] if doc else ""))
    return out


def _section_of(key: str) -> str:
    return key.split(".", 1)[0] if "." in key else ""


def select(prefix: str | None) -> list[KeyDoc]:
    """The keys of a section (``rule``), one key (``rule.lr``), or all (``None``).

    Raises:
        ConfigError: nothing matches, with the sections that exist.
    """
    docs = key_docs()
    if not prefix:
        return docs
    prefix = prefix.strip().rstrip(".")
    chosen = [d for d in docs if d.key == prefix or d.key.startswith(prefix + ".")]
    if not chosen:
        names = ", ".join(s for s, _ in sections() if s)
        raise ConfigError(f"no config key or section '{prefix}' (the sections are {names})")
    return chosen


def render_text(prefix: str | None = None) -> str:
    """An aligned plain-text table of the keys (``alfa config keys``)."""
    docs = select(prefix)
    header = KeyDoc("key", "type", "default", "meaning")
    widths = [max(len(getattr(d, name)) for d in [header, *docs]) for name in ("key", "type")]
    default_width = min(16, max(len(d.default) for d in [header, *docs]))
    lines = []
    for d in [header, *docs]:
        default = d.default.ljust(default_width)
        row = f"{d.key.ljust(widths[0])}  {d.type.ljust(widths[1])}  {default}  {d.meaning}"
        lines.append(row.rstrip())
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    """Text safe in a Markdown table cell: ``|`` escaped, ``<name>`` not taken for HTML."""
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def render_markdown() -> str:
    """The text of ``docs/config.md``."""
    out = [
        "# Configuration keys",
        "",
        "<!-- Generated by `python -m alfa.config.docs` from the dataclasses of "
        "src/alfa/config/schema.py; edit the field comments there, not this file. -->",
        "",
        "A run is configured by a YAML file over these defaults, with any key overridden on the",
        "command line as `section.key=value` (`alfa train CONFIG rule.lr=0.1 seed=3`). Every key",
        "and value is checked before any work starts: an unknown key, a wrong type or an",
        "impossible value stops with one line naming the key (exit code 2).",
        "",
        "- `alfa config keys [SECTION]` prints this list;",
        "- `alfa config show [CONFIG] [key=value ...]` prints the resolved config as YAML;",
        "- `alfa train CONFIG --dry-run [key=value ...]` also checks the data paths and",
        "  class lists, prints the number of meta-parameters and the estimated peak memory,",
        "  and creates nothing.",
        "",
        "Lists are written `[a, b]` in YAML and on the command line.",
    ]
    docs = key_docs()
    for section, description in sections():
        title = f"`{section}`" if section else "Top level"
        out += ["", f"## {title}", "", description.replace("``", "`"), ""]
        out += ["| key | type | default | meaning |", "|---|---|---|---|"]
        for d in docs:
            if _section_of(d.key) == section:
                out.append(
                    f"| `{d.key}` | {_cell(d.type)} | `{_cell(d.default)}` | {_cell(d.meaning)} |"
                )
    return "\n".join(out) + "\n"


def config_yaml(config: Config) -> str:
    """A resolved config as YAML, as ``alfa train`` writes it to the run's ``config.yaml``."""
    return yaml.safe_dump(config_to_dict(config), sort_keys=False)


def write_or_check(path: Path, text: str, *, check: bool, command: str, problems: bool) -> int:
    """Write a page generated from the code (``docs/config.md``, ``docs/paper-map.md``) to
    ``path`` (printing the path), or with ``check`` compare it with the file; the exit code is 1
    when the file is out of date or the generator found ``problems``."""
    path = Path(path)
    if check:
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current != text:
            print(f"{path} is out of date; run: {command}", file=sys.stderr)
            return 1
        return 1 if problems else 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(path)
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    """``python -m alfa.config.docs [--check] [PATH]``: write (or check) docs/config.md."""
    parser = argparse.ArgumentParser(
        prog="python -m alfa.config.docs", description="generate docs/config.md"
    )
    parser.add_argument("path", nargs="?", default=str(DOCS_PATH), help="default: docs/config.md")
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is out of date")
    args = parser.parse_args(argv)
    text = render_markdown()
    path = Path(args.path)
    missing = [d.key for d in key_docs() if not d.meaning]
    if missing:
        print(f"config keys without a meaning: {', '.join(missing)}", file=sys.stderr)
    return write_or_check(
        path, text, check=args.check, command="python -m alfa.config.docs", problems=bool(missing)
    )


if __name__ == "__main__":
    sys.exit(main())
