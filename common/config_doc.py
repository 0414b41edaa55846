"""`facetrack config-doc`: docs/configuration.md, generated, so the reference cannot drift.

Each fact has one home and the page is made from both: a key's type, range, choices and
default come from the config types (common/config.py, msgspec Structs); what it does comes
from its comment in configs/default.yaml, the file people copy and edit (a comment after
the key, continued on the `#` lines below it; a comment block above a key opens its section
or, further down, introduces the keys that follow). A key without a comment, or a comment
for a key the types do not know, is an error: the page is never generated with a gap.
`--check` compares the page with docs/configuration.md (tests/test_docs.py runs it).
"""
from __future__ import annotations

import argparse
import re
import sys
import typing
from dataclasses import dataclass, field

import msgspec

from common.config import DEFAULT_CONFIG, ROOT, SECTIONS

DOC_PATH = ROOT / "docs" / "configuration.md"
COMMAND = "facetrack config-doc > docs/configuration.md"
_SECTION = re.compile(r"^(\w+):\s*(?:#.*)?$")
_KEY = re.compile(r"^  (\w+):(.*)$")
_COMMENT = re.compile(r"^\s*#\s?(.*)$")


class ConfigDocError(Exception):
    """configs/default.yaml and the config types disagree, or a key has no description."""


@dataclass
class Section:
    intro: list[str] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)      # key -> description
    notes: dict[str, list[str]] = field(default_factory=dict)  # key -> comment block just above it


def read_comments(text: str) -> dict[str, Section]:
    """Per section: its intro, its notes and its keys' descriptions (the file's opening comment is
    for people reading the YAML, and is left out)."""
    sections: dict[str, Section] = {}
    section: Section | None = None
    pending: list[str] = []
    last_key: str | None = None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            last_key = None
            continue
        if m := _SECTION.match(line):
            section, pending, last_key = sections.setdefault(m.group(1), Section()), [], None
            continue
        comment = _COMMENT.match(line)
        if section is None:
            continue
        if comment:
            indent = len(line) - len(line.lstrip())
            if last_key and indent > 2:  # continues the description of the key above
                section.keys[last_key] += " " + comment.group(1).strip()
            else:
                pending.append(comment.group(1).strip())
                last_key = None
            continue
        m = _KEY.match(line)
        if not m:
            raise ConfigDocError(f"{DEFAULT_CONFIG.name} line {number}: not a 'key: value  # what it does' line")
        key, rest = m.groups()
        description = rest.split(" #", 1)[1].strip() if " #" in rest else ""
        if pending:
            if section.keys:
                section.notes[key] = pending
            else:
                section.intro += pending
            pending = []
        section.keys[key] = description
        last_key = key
    return sections


def _literal(values: typing.Iterable) -> str:
    return " | ".join(f"`{v}`" for v in values)


def type_text(info: msgspec.inspect.Type, hint: object) -> str:
    """A field's type and range, as a reader wants them: `int ≥ 1`, `float 0–1`, one of `a` | `b`."""
    note = ""
    if isinstance(info, msgspec.inspect.Metadata):
        note = (info.extra_json_schema or {}).get("description", "")
        info = info.type
    if isinstance(info, msgspec.inspect.LiteralType):
        base = typing.get_origin(hint) is typing.Annotated and typing.get_args(hint)[0] or hint
        return _literal(typing.get_args(base) or info.values)
    if isinstance(info, msgspec.inspect.UnionType):  # e.g. float 0–1 or null
        return " or ".join("null" if isinstance(t, msgspec.inspect.NoneType) else type_text(t, None) for t in info.types)
    if isinstance(info, msgspec.inspect.TupleType):
        return "[" + ", ".join(type_text(item, None) for item in info.item_types) + "]"
    if isinstance(info, (msgspec.inspect.ListType, msgspec.inspect.SetType)):
        return f"list of {type_text(info.item_type, None)}"
    name = {msgspec.inspect.IntType: "int", msgspec.inspect.FloatType: "float", msgspec.inspect.StrType: "str",
            msgspec.inspect.BoolType: "bool"}.get(type(info), type(info).__name__)
    low = getattr(info, "ge", None), getattr(info, "gt", None)
    if name == "int" and low[1] is not None:  # an int > 0 is an int >= 1
        low = low[1] + 1, None
    high = getattr(info, "le", None), getattr(info, "lt", None)
    if low[0] is not None and high[0] is not None:
        text = f"{name} {low[0]:g}–{high[0]:g}"
    else:
        bounds = [f"≥ {low[0]:g}" if low[0] is not None else "", f"> {low[1]:g}" if low[1] is not None else "",
                  f"≤ {high[0]:g}" if high[0] is not None else "", f"< {high[1]:g}" if high[1] is not None else ""]
        text = " ".join([name, *filter(None, bounds)])
    pattern = getattr(info, "pattern", None)
    if pattern:
        text += f" matching `{pattern}`"
    return text + (f" ({note})" if note else "")


def default_text(value: object) -> str:
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value == "":
        return '`""`'
    if isinstance(value, (tuple, list)):
        return f"`[{', '.join(map(str, value))}]`"
    return f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def generate(yaml_text: str | None = None) -> str:
    """The whole of docs/configuration.md."""
    comments = read_comments(DEFAULT_CONFIG.read_text() if yaml_text is None else yaml_text)
    unknown = sorted(set(comments) - set(SECTIONS))
    if unknown:
        raise ConfigDocError(f"{DEFAULT_CONFIG.name}: section(s) {', '.join(unknown)} not in common/config.py")
    lines = ["# Configuration reference", "",
             f"<!-- Generated by `{COMMAND}` from common/config.py (types, ranges, defaults) and the comments of",
             "configs/default.yaml (descriptions). Edit those, then run the command; tests/test_docs.py fails when",
             "this page is out of date. -->", "",
             "Every tunable of one stack. A stack reads `configs/default.yaml`, or the file named by "
             "`$FACETRACK_CONFIG` (or a command's `--config`), then `section.key=value` overrides from "
             "`$FACETRACK_SET` (comma separated) and a command's `--set`. `{run_dir}` and `{stack_id}` are "
             "expanded in string values. Each value is checked against its type below when a service starts: "
             "an unknown key, a wrong type or a value out of range stops it with one line naming the key "
             "(see [troubleshooting](troubleshooting.md#configuration)).", "",
             "Sections: " + ", ".join(f"[`{name}`](#{name})" for name in SECTIONS) + ".", ""]
    for name, cls in SECTIONS.items():
        doc = comments.get(name, Section())
        hints = typing.get_type_hints(cls, include_extras=True)
        struct = msgspec.inspect.type_info(cls)
        assert isinstance(struct, msgspec.inspect.StructType)
        infos = {f.name: f for f in struct.fields}
        extra = sorted(set(doc.keys) - set(infos))
        if extra:
            raise ConfigDocError(f"{DEFAULT_CONFIG.name}: {name}.{extra[0]} is not a key of common/config.py")
        lines += [f"## {name}", ""]
        if doc.intro:
            lines += [" ".join(doc.intro), ""]
        table_open = False
        for key, info in infos.items():
            description = doc.keys.get(key)
            if not description:
                raise ConfigDocError(f"{DEFAULT_CONFIG.name}: {name}.{key} has no description "
                                     "(a '# what it does' comment after its value)")
            if key in doc.notes:
                lines += ([""] if table_open else []) + [" ".join(doc.notes[key]), ""]
                table_open = False
            if not table_open:
                lines += ["| key | type | default | what it does |", "|---|---|---|---|"]
                table_open = True
            lines.append(f"| `{name}.{key}` | {_cell(type_text(info.type, hints[key]))} | {_cell(default_text(info.default))} "
                         f"| {_cell(description)} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="facetrack config-doc", description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help=f"exit 1 if {DOC_PATH.relative_to(ROOT)} differs from what would be generated")
    args = p.parse_args(argv)
    try:
        page = generate()
    except ConfigDocError as exc:
        print(f"facetrack config-doc: {exc}", file=sys.stderr)
        return 1
    if not args.check:
        sys.stdout.write(page)
        return 0
    current = DOC_PATH.read_text() if DOC_PATH.exists() else ""
    if current != page:
        print(f"facetrack config-doc: {DOC_PATH.relative_to(ROOT)} is out of date; run `{COMMAND}`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
