"""Load a site YAML file and report every mistake at once as ``file:line: field: message``.

Validation runs in two passes: the pydantic models check each value where it stands, then
``site_checks`` checks what only the whole site can tell (a role naming a missing point,
two points on the same register, a point inside a forbidden range). Both passes keep the
path of the offending field so it can be traced back to its line in the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from heatd.config import SiteConfig
from heatd.site_checks import site_problems

Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        if self.field:
            return f"{where}: {self.field}: {self.message}"
        return f"{where}: {self.message}"


class ConfigError(Exception):
    """The site file is not valid; ``problems`` lists every mistake found."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def _line_of(tree: Any, loc: Loc) -> tuple[int | None, Loc]:
    """Follow ``loc`` into the YAML tree; return the 1-based line of the deepest node found
    and the field path to name (discriminator tags pydantic inserts are skipped)."""
    node, line, found = tree, None, []
    for depth, key in enumerate(loc):
        if isinstance(node, CommentedMap) and key in node:
            key_line = node.lc.key(key)[0]
            line = key_line + 1
            node = node[key]
            found.append(key)
        elif isinstance(node, CommentedSeq) and isinstance(key, int) and 0 <= key < len(node):
            line = node.lc.item(key)[0] + 1
            node = node[key]
            found.append(key)
        elif isinstance(node, CommentedMap) and depth == len(loc) - 1:
            found.append(key)  # a missing field: name it, at its parent's line
        elif isinstance(node, CommentedMap):
            continue  # a tag pydantic adds for unions, e.g. the device's protocol
        else:
            break
    if line is None and isinstance(tree, CommentedMap):
        line = tree.lc.line + 1
    return line, tuple(found)


def _field_text(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _message(error: dict[str, Any]) -> str:
    kind, value = error["type"], error.get("input")
    if kind == "enum":
        allowed = error["ctx"]["expected"].replace("'", "").replace(" or ", ", ")
        return f"{value!r} is not one of {allowed}"
    if kind == "literal_error":
        allowed = error["ctx"]["expected"].replace(" or ", ", ")
        return f"{value!r} is not one of {allowed}"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    if kind == "union_tag_invalid":
        allowed = error["ctx"]["expected_tags"].replace("'", "")
        return f"{error['ctx']['tag']!r} is not one of {allowed}"
    if kind == "union_tag_not_found":
        return "required field is missing"
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    if kind in ("string_pattern_mismatch",):
        message = f"{value!r} must match {error['ctx']['pattern']}"
    elif kind not in ("value_error", "assertion_error") and value is not None:
        message = f"{value!r}: {message}"
    return message


def parse_site(text: str, file: str) -> SiteConfig:
    """Validate site YAML text; ``file`` is only used to name it in errors."""
    yaml = YAML(typ="rt")
    try:
        tree = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        reason = exc.problem or exc.context or "cannot parse YAML"
        raise ConfigError([ConfigProblem(file, line, "", f"YAML: {reason}")]) from None
    if not isinstance(tree, CommentedMap):
        raise ConfigError([ConfigProblem(file, 1, "", "the file must be a YAML mapping")])
    plain = json.loads(json.dumps(tree, default=str))
    try:
        site = SiteConfig.model_validate_json(json.dumps(plain), strict=True)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            loc = tuple(error["loc"])
            if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
                loc += (error["ctx"]["discriminator"].strip("'"),)
            line, found = _line_of(tree, loc)
            problems.append(ConfigProblem(file, line, _field_text(found), _message(error)))
        raise ConfigError(_unique(problems)) from None
    problems = [
        ConfigProblem(file, _line_of(tree, loc)[0], _field_text(loc), message)
        for loc, message in site_problems(site)
    ]
    if problems:
        raise ConfigError(problems)
    return site


def _unique(problems: Iterable[ConfigProblem]) -> list[ConfigProblem]:
    seen: dict[str, ConfigProblem] = {}
    for problem in problems:
        seen.setdefault(str(problem), problem)
    return list(seen.values())


def load_site(path: str | Path) -> SiteConfig:
    """Read and validate a site file; raises ConfigError naming file, line and field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([ConfigProblem(str(path), None, "", exc.strerror or str(exc))]) from None
    return parse_site(text, str(path))


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a site file, for editors with a YAML language server."""
    schema = SiteConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "heatd site configuration"
    return schema
