"""Load a site YAML file and report every mistake at once as ``file:line: field: message``.

Before anything is parsed the file must be a regular file of at most ``MAX_FILE_BYTES``,
and UTF-8 text without NUL bytes. The YAML's events are judged as they are read
(``heatd.yaml_limits``): a document that would have more than ``MAX_NODES`` nodes with its
aliases expanded (a "billion laughs" bomb), that nests deeper than ``MAX_DEPTH`` or whose
aliases refer to themselves is refused before any alias is expanded.

Validation runs in two passes: the pydantic models check each value where it stands, then
``site_checks`` checks what only the whole site can tell (a role naming a missing point,
two points on the same register, a point inside a forbidden range). Both passes keep the
path of the offending field so it can be traced back to its line in the file. Entries
that fail the first pass (a point, a device, a poll group, a section) are left out and the
second pass runs on the rest, so one run reports both kinds of mistake; whole-site checks
never blame what was left out.

``check_site`` is what ``heatd check-config`` runs: the same, plus what a running daemon
survives but a deployment must not have (a safe state its write bounds would clamp) and
what ``heatd run`` would only find at start (unreadable password or TLS files).
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError

from heatd.config import SiteConfig
from heatd.mqtt.settings import MqttSettings
from heatd.opcua_checks import opcua_problems
from heatd.site_checks import Invalid, Problem, safe_state_problems, site_problems
from heatd.yaml_limits import MAX_DEPTH, CommentlessScanner, LimitedParser, YamlRefused

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

Loc = tuple[str | int, ...]

MAX_FILE_BYTES = 1024 * 1024
"""Largest site file read (1 MiB); a real site is a few tens of kilobytes."""

_NON_FINITE = {math.inf: ".inf", -math.inf: "-.inf"}
_NON_FINITE_TEXT = frozenset({".nan", ".inf", "-.inf"})


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


def _key_line(node: CommentedMap, key: Any) -> int:
    """0-based line of ``key`` in a mapping, also for a key merged in with ``<<: *anchor``."""
    try:
        return int(node.lc.key(key)[0])
    except KeyError:
        for merged in getattr(node, "merge", ()):
            source = merged[1] if isinstance(merged, tuple) else merged
            if isinstance(source, CommentedMap) and key in source:
                return _key_line(source, key)
        return int(node.lc.line)


def _line_of(tree: Any, loc: Loc) -> tuple[int | None, Loc]:
    """Follow ``loc`` into the YAML tree; return the 1-based line of the deepest node found
    and the field path to name (discriminator tags pydantic inserts are skipped)."""
    node, line, found = tree, None, []
    for depth, key in enumerate(loc):
        if isinstance(node, CommentedMap) and key in node:
            line = _key_line(node, key) + 1
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


_FIXED_MESSAGES = {
    "extra_forbidden": "unknown field",
    "missing": "required field is missing",
    "union_tag_not_found": "required field is missing",
}


def _message(error: ErrorDetails) -> str:
    kind, value = error["type"], error.get("input")
    if isinstance(value, str) and value in _NON_FINITE_TEXT and kind != "string_type":
        return f"{value} is not a finite number"
    if kind in _FIXED_MESSAGES:
        return _FIXED_MESSAGES[kind]
    choice = _choice(error)
    if choice is not None:
        given, allowed = choice
        return f"{given!r} is not one of {allowed}"
    return _reworded(error)


def _choice(error: ErrorDetails) -> tuple[object, str] | None:
    """What was given and the values allowed, for an error about a choice (an enum, a
    literal, a device's protocol); None for any other error."""
    kind, ctx = error["type"], error.get("ctx", {})
    if kind == "enum":
        return error.get("input"), ctx["expected"].replace("'", "").replace(" or ", ", ")
    if kind == "literal_error":
        return error.get("input"), ctx["expected"].replace(" or ", ", ")
    if kind == "union_tag_invalid":
        return ctx["tag"], ctx["expected_tags"].replace("'", "")
    return None


def _reworded(error: ErrorDetails) -> str:
    """pydantic's own message, without its prefix and with the value it is about."""
    kind, value = error["type"], error.get("input")
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    if kind in ("string_pattern_mismatch",):
        message = f"{value!r} must match {error['ctx']['pattern']}"
    elif kind not in ("value_error", "assertion_error") and value is not None:
        message = f"{value!r}: {message}"
    return message


# --- reading and composing: nothing hostile gets past here ------------------------------


def _read(path: Path) -> str:
    """The file's text; refuses what is not a regular file, too large, binary or not UTF-8
    before a byte of it is parsed."""
    file = str(path)

    def refuse(message: str, line: int | None = None) -> ConfigError:
        return ConfigError([ConfigProblem(file, line, "", message)])

    too_large = f"a site file may have at most {MAX_FILE_BYTES} bytes (1 MiB)"
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat refuses it below
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as stream:
            info = os.fstat(stream.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise refuse("not a regular file")
            if info.st_size > MAX_FILE_BYTES:
                raise refuse(f"{info.st_size} bytes: {too_large}")
            data = stream.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise refuse(exc.strerror or str(exc)) from None
    if len(data) > MAX_FILE_BYTES:  # it grew while being read
        raise refuse(f"more than {MAX_FILE_BYTES} bytes: {too_large}")
    nul = data.find(b"\0")
    if nul >= 0:
        raise refuse(f"not a text YAML file: NUL byte at byte offset {nul}",
                     data.count(b"\n", 0, nul) + 1)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise refuse(f"not UTF-8 text: byte 0x{data[exc.start]:02x} at byte offset "
                     f"{exc.start} ({exc.reason})", data.count(b"\n", 0, exc.start) + 1) from None


def _yaml_tree(text: str, file: str) -> CommentedMap:
    def refuse(line: int | None, message: str) -> ConfigError:
        return ConfigError([ConfigProblem(file, line, "", message)])

    if len(text) > MAX_FILE_BYTES:
        raise refuse(None, f"more than {MAX_FILE_BYTES} characters, the most a site file "
                     "may have")
    yaml = YAML(typ="rt")
    yaml.Scanner = CommentlessScanner
    yaml.Parser = LimitedParser
    try:
        tree = yaml.load(text)
    except YamlRefused as exc:
        raise refuse(exc.line + 1, f"YAML: {exc.reason}; refused") from None
    except DuplicateKeyError as exc:
        raise ConfigError([_duplicate_key(yaml, text, exc, file)]) from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        reason = exc.problem or exc.context or "cannot parse YAML"
        raise refuse(line, f"YAML: {reason}") from None
    except ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1 if isinstance(exc.position, int) else None
        character = exc.character if isinstance(exc.character, int) else None
        what = f"character U+{character:04X}" if character is not None else "a character"
        raise refuse(line, f"not a text YAML file: {what} at offset {exc.position} is not "
                     "allowed in YAML") from None
    except RecursionError:  # the composer recurses; the depth limit above should prevent it
        raise refuse(None, f"YAML: nested deeper than {MAX_DEPTH} levels; refused") from None
    except YAMLError as exc:
        raise refuse(None, f"YAML: {exc}") from None
    if not isinstance(tree, CommentedMap):
        raise refuse(1, "the file must be a YAML mapping")
    return tree


def _duplicate_key(yaml: YAML, text: str, exc: DuplicateKeyError, file: str) -> ConfigProblem:
    """A key given twice in one mapping, named by its field path and the line of its first
    definition (the YAML library's own message prints both values as Python reprs)."""
    line = exc.problem_mark.line if exc.problem_mark is not None else None
    found = _first_duplicate(yaml.compose(text), (), line)
    if found is None:  # not met again in the node tree: the library's words, without values
        key = re.search(r'duplicate key "(.*?)" with value', str(exc.problem))
        what = f"key {key.group(1)!r}" if key else "a key"
        return ConfigProblem(file, None if line is None else line + 1, "",
                             f"YAML: {what} is defined twice in one mapping")
    path, first = found
    return ConfigProblem(file, None if line is None else line + 1, _field_text(path),
                         f"defined twice (first at line {first + 1})")


def _first_duplicate(node: Node | None, path: Loc, line: int | None) -> tuple[Loc, int] | None:
    """The path of the key that repeats an earlier one of its mapping at 0-based ``line``
    (any repeated key if ``line`` is None), and the line of that earlier one."""
    if isinstance(node, MappingNode):
        first_at: dict[str, int] = {}
        for key, value in node.value:
            if isinstance(key, ScalarNode):
                name = str(key.value)
                at = key.start_mark.line
                if name in first_at and (line is None or at == line):
                    return (*path, name), first_at[name]
                first_at.setdefault(name, at)
                found = _first_duplicate(value, (*path, name), line)
            else:
                found = _first_duplicate(value, path, line)
            if found is not None:
                return found
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            if (found := _first_duplicate(item, (*path, index), line)) is not None:
                return found
    return None


def _plain(node: Any, loc: Loc, file: str, problems: list[ConfigProblem]) -> Any:
    """The YAML tree as JSON data: string keys, and non-finite numbers as their YAML
    spelling (``.nan``, ``.inf``), which no numeric field accepts. Keys that are not names
    are problems."""
    if isinstance(node, dict):
        plain: dict[str, Any] = {}
        for key, value in node.items():
            if isinstance(key, bool) or not isinstance(key, str | int):
                line = _key_line(node, key) + 1 if isinstance(node, CommentedMap) else None
                problems.append(ConfigProblem(file, line, _field_text(loc),
                                              f"key {key!r} is not a name"))
                continue
            plain[str(key)] = _plain(value, (*loc, str(key)), file, problems)
        return plain
    if isinstance(node, list):
        return [_plain(item, (*loc, index), file, problems)
                for index, item in enumerate(node)]
    return _plain_scalar(node)


def _plain_scalar(node: Any) -> Any:
    """A scalar as JSON: ruamel's int and float subclasses as plain numbers, non-finite
    floats as their YAML spelling, anything else (dates, tagged values) as text."""
    if node is None or isinstance(node, bool):
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return ".nan" if math.isnan(node) else _NON_FINITE.get(float(node), float(node))
    return str(node)


# --- validation -------------------------------------------------------------------------

_ENTRY_DEPTH = {"devices": 2, "poll_groups": 2, "roles": 2}


def _entry(found: Loc, kind: str) -> Loc:
    """What to leave out so the rest validates: the unknown field itself, or the point,
    device, poll group, role or section holding the mistake."""
    if kind == "extra_forbidden" or not found:
        return found
    if found[0] == "devices" and len(found) >= 4 and found[2] == "points":
        return found[:4]
    return found[:_ENTRY_DEPTH.get(str(found[0]), 1)]


def _leave_out(data: dict[str, Any], path: Loc) -> None:
    if path == ("site",):
        data["site"] = {"id": "site"}
        return
    if path == ("devices",):
        data["devices"] = {}
        return
    node: Any = data
    for key in path[:-1]:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return
    if isinstance(node, dict):
        node.pop(path[-1], None)


def _validate(plain: dict[str, Any], tree: CommentedMap,
              file: str) -> tuple[list[ConfigProblem], SiteConfig | None, Invalid]:
    """Schema problems, and the site validated from what has none (None if that fails)."""
    problems: list[ConfigProblem] = []
    left_out: set[Loc] = set()
    data = plain
    for attempt in range(4):
        try:
            site = SiteConfig.model_validate_json(json.dumps(data), strict=True)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
        else:
            return problems, site, Invalid(left_out)
        stuck = False
        for error in errors:
            loc = tuple(error["loc"])
            if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
                loc += (error["ctx"]["discriminator"].strip("'"),)
            line, found = _line_of(tree, loc)
            if attempt == 0:  # later rounds only meet what leaving out entries caused
                problems.append(ConfigProblem(file, line, _field_text(found), _message(error)))
            entry = _entry(found, error["type"])
            stuck = stuck or not entry
            if entry:
                _leave_out(data, entry)
                if error["type"] != "extra_forbidden":
                    left_out.add(entry)
        if stuck:
            break
    return problems, None, Invalid(left_out)


ExtraChecks = Callable[[SiteConfig, Invalid], Iterable[Problem]]


def _parse(text: str, file: str, extra: ExtraChecks | None = None) -> SiteConfig:
    tree = _yaml_tree(text, file)
    problems: list[ConfigProblem] = []
    plain = _plain(tree, (), file, problems)
    schema_problems, site, invalid = _validate(plain, tree, file)
    problems += schema_problems
    if site is not None:
        found = [*site_problems(site, invalid), *(extra(site, invalid) if extra else ())]
        problems += [ConfigProblem(file, _line_of(tree, loc)[0], _field_text(loc), message)
                     for loc, message in found]
    if problems:
        raise ConfigError(_unique(problems))
    assert site is not None
    return site


def _unique(problems: Iterable[ConfigProblem]) -> list[ConfigProblem]:
    """Without repeats, in file order (problems without a line first)."""
    seen: dict[str, ConfigProblem] = {}
    for problem in problems:
        seen.setdefault(str(problem), problem)
    return sorted(seen.values(), key=lambda p: -1 if p.line is None else p.line)


def parse_site(text: str, file: str) -> SiteConfig:
    """Validate site YAML text; ``file`` is only used to name it in errors."""
    return _parse(text, file)


def load_site(path: str | Path) -> SiteConfig:
    """Read and validate a site file; raises ConfigError naming file, line and field."""
    path = Path(path)
    return _parse(_read(path), str(path))


# --- check-config: what a deployment must not have --------------------------------------

_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def _unset_variables(path: str) -> list[str]:
    return [name for braced, bare in _VARIABLE.findall(path)
            if (name := braced or bare) not in os.environ]


def _start_file_problems(mqtt: MqttSettings, notes: list[str], file: str) -> Iterator[Problem]:
    """The password and TLS files ``heatd run`` reads at start, read here by the same code
    (``MqttSettings.read_password``, ``TlsSettings.context``). A path with a variable that
    is not set here (``$CREDENTIALS_DIRECTORY`` outside systemd) cannot be checked: noted."""
    checks: list[tuple[Loc, list[str], Callable[[], object]]] = []
    if mqtt.password_file is not None:
        checks.append((("mqtt", "password_file"), [mqtt.password_file], mqtt.read_password))
    tls = mqtt.tls
    if tls is not None and tls.ca is not None:
        only_ca = tls.model_copy(update={"cert": None, "key": None})
        checks.append((("mqtt", "tls", "ca"), [tls.ca], only_ca.context))
    if tls is not None and tls.cert is not None and tls.key is not None:
        only_client = tls.model_copy(update={"ca": None})
        checks.append((("mqtt", "tls", "cert"), [tls.cert, tls.key], only_client.context))
    for loc, paths, read in checks:
        field = _field_text(loc)
        unset = sorted({name for path in paths for name in _unset_variables(path)})
        if unset:
            names = ", ".join(f"${name}" for name in unset)
            hint = (" (systemd sets $CREDENTIALS_DIRECTORY for the service, from "
                    "LoadCredential=)" if "CREDENTIALS_DIRECTORY" in unset else "")
            notes.append(f"{file}: {field}: not checked: {names} is not set here{hint}")
            continue
        try:
            read()
        except (OSError, ValueError) as exc:
            reason = str(exc).removeprefix(f"{field} ")
            if isinstance(exc, OSError):
                reason = f"{' / '.join(paths)}: {exc.strerror or exc}"
            yield loc, f"{reason} (heatd run would refuse to start)"


@dataclass(frozen=True, slots=True)
class CheckedSite:
    site: SiteConfig
    notes: list[str]
    """What could not be checked here, e.g. a credential path under $CREDENTIALS_DIRECTORY."""


def check_site(path: str | Path) -> CheckedSite:
    """``heatd check-config``: ``load_site`` and, in the same report, a safe state the
    write bounds would clamp and password/TLS files ``heatd run`` could not read."""
    path = Path(path)
    notes: list[str] = []

    def deployment(site: SiteConfig, invalid: Invalid) -> Iterator[Problem]:
        yield from safe_state_problems(site, invalid)
        if site.mqtt is not None and not invalid.covers("mqtt"):
            yield from _start_file_problems(site.mqtt, notes, str(path))
        yield from opcua_problems(site, invalid, notes, str(path))

    site = _parse(_read(path), str(path), deployment)
    return CheckedSite(site, notes)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a site file, for editors with a YAML language server."""
    schema = SiteConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "heatd site configuration"
    return schema
