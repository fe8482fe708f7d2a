"""Refuse a hostile YAML document while it is read, in the same pass that builds it.

The parser hands every event to the composer through ``get_event``; ``LimitedParser``
counts the nodes the document would have with every alias expanded (an alias adds the
size of the node its anchor names, so a "billion laughs" bomb is refused after a few
hundred bytes), and refuses deep nesting and an alias inside the node it names, before the
composer goes on. The composer never expands an alias itself, so nothing large is built
before the refusal. One pass instead of a scan and then a load: reading the YAML is most
of ``heatd check-config``'s time, and for the same reason ``CommentlessScanner`` drops the
comments the round-trip scanner would attach to the tree, which nothing reads.
"""

from __future__ import annotations

from typing import Any

from ruamel.yaml.events import AliasEvent, CollectionEndEvent, CollectionStartEvent, ScalarEvent
from ruamel.yaml.parser import RoundTripParser
from ruamel.yaml.scanner import RoundTripScanner, Scanner

MAX_NODES = 100_000
"""Most YAML nodes (keys, values, list items) a site may have once every alias is expanded."""
MAX_DEPTH = 40
"""Deepest nesting of mappings and lists; a site nests about six levels."""


class YamlRefused(Exception):
    """The document breaks a limit; ``line`` is 0-based."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line = line
        self.reason = reason


class CommentlessScanner(RoundTripScanner):
    """The round-trip scanner, dropping each comment where it finds it instead of gathering
    the comments around every token to attach them to the tree (a sixth of the parse). It
    keeps the round-trip scanner's whitespace rules, which the plain scanner does not share:
    a tab after a blank line is whitespace to it, so a file written that way still loads."""

    check_token = Scanner.check_token
    peek_token = Scanner.peek_token
    get_token = Scanner.get_token

    def fetch_comment(self, comment: Any) -> None:
        return None


class LimitedParser(RoundTripParser):
    """The round-trip parser, judging each event as the composer takes it."""

    def __init__(self, loader: Any) -> None:
        super().__init__(loader)
        self._count = 0
        self._anchors: dict[str, object] = {}  # name -> expanded size, or an open node
        self._open: list[tuple[str | None, object, int]] = []

    def get_event(self) -> Any:
        event = super().get_event()
        self._judge(event)
        return event

    def _judge(self, event: Any) -> None:
        if isinstance(event, AliasEvent):
            size = self._anchors.get(event.anchor)
            if size is not None and not isinstance(size, int):
                raise YamlRefused(event.start_mark.line,
                                  "an alias refers to a node that contains it")
            self._count += size or 0
        elif isinstance(event, ScalarEvent):
            self._count += 1
            if event.anchor is not None:
                self._anchors[event.anchor] = 1
        elif isinstance(event, CollectionStartEvent):
            token = object()
            self._open.append((event.anchor, token, self._count))
            self._count += 1
            if event.anchor is not None:
                self._anchors[event.anchor] = token
            if len(self._open) > MAX_DEPTH:
                raise YamlRefused(event.start_mark.line, f"nested deeper than {MAX_DEPTH} levels")
        elif isinstance(event, CollectionEndEvent):
            anchor, token, start = self._open.pop()
            if anchor is not None and self._anchors.get(anchor) is token:
                self._anchors[anchor] = self._count - start
        if self._count > MAX_NODES:
            raise YamlRefused(event.start_mark.line, f"more than {MAX_NODES} nodes (keys, values "
                              "and items, every alias expanded)")
