"""Read config YAML within bounds, refusing what YAML allows but a config must not hold.

* Duplicate keys: PyYAML keeps the last one silently, so ``mask: {zones: ...}`` followed by a
  second ``mask:`` would drop the privacy zones. Every mapping, at every level, is checked.
* Alias bombs: nine levels of nine aliases each expand to 9^9 nodes; walking that (to find
  lines, to validate) took gigabytes. Alias uses and the expanded node count are bounded.
* Depth: the composer recurses per level, so a document nested thousands deep ended in a
  ``RecursionError`` traceback. Nesting is bounded before it recurses that far.
* Size and encoding are checked by :func:`read_text` before any parsing.

Every problem is a :class:`YAMLProblem` with the 1-based line and the dotted field it concerns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 1024 * 1024  # a real config is a few kB
MAX_DEPTH = 32  # the deepest real config path is 4 levels (detect.schedule.tile_scales.0)
MAX_ALIASES = 100  # alias uses (``*name``) in one document
MAX_NODES = 100_000  # nodes once every alias is expanded
MERGE_TAG = "tag:yaml.org,2002:merge"


class YAMLProblem(Exception):
    """A document that is not read: ``line`` (1-based, 0 for the file), ``field``, ``message``."""

    def __init__(self, line: int, field: str, message: str) -> None:
        super().__init__(f"{line}: {field}: {message}")
        self.line = line
        self.field = field
        self.message = message


def read_text(path: Path) -> str:
    """The file as UTF-8 text, at most :data:`MAX_BYTES`; OSError is left to the caller."""
    with path.open("rb") as f:
        raw = f.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        raise YAMLProblem(0, "(file)", f"larger than {MAX_BYTES // 1024} KiB; not a config")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        byte = raw[exc.start]
        raise YAMLProblem(
            line, "(file)", f"not UTF-8 text: byte 0x{byte:02x} at column {col}"
        ) from None


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader whose composer counts nesting depth and alias uses as it goes."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise YAMLProblem(
                    event.start_mark.line + 1,
                    "(yaml)",
                    f"more than {MAX_ALIASES} aliases (*name); not a config",
                )
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise YAMLProblem(
                    event.start_mark.line + 1,
                    "(yaml)",
                    f"nested deeper than {MAX_DEPTH} levels; not a config",
                )
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth -= 1


def _key_text(node: yaml.Node) -> str:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else f"<{node.id}>"


def _check_nodes(root: yaml.Node) -> None:
    """Duplicate keys (each mapping once) and the expanded size (memoised per shared node)."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()  # entered, not finished: meeting one again is a recursive alias
    # iterative post-order walk: depth is bounded, but a stack keeps it cheap and simple
    stack: list[tuple[yaml.Node, tuple[str, ...], bool]] = [(root, (), False)]
    while stack:
        node, path, done = stack.pop()
        if id(node) in sizes:
            continue
        children: list[tuple[yaml.Node, tuple[str, ...]]] = []
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                children.append((key, path))
                children.append((value, (*path, _key_text(key))))
        elif isinstance(node, yaml.SequenceNode):
            children = [(item, (*path, str(i))) for i, item in enumerate(node.value)]
        if not done:
            if id(node) in open_:
                raise YAMLProblem(
                    node.start_mark.line + 1, ".".join(path) or "(top level)", "recursive alias"
                )
            open_.add(id(node))
            if isinstance(node, yaml.MappingNode):
                _check_duplicates(node, path)
            stack.append((node, path, True))
            stack.extend((c, p, False) for c, p in children if id(c) not in sizes)
            continue
        total = 1 + sum(sizes.get(id(c), 1) for c, _ in children)
        if total > MAX_NODES:
            raise YAMLProblem(
                node.start_mark.line + 1,
                ".".join(path) or "(top level)",
                f"expands to more than {MAX_NODES} values (aliases); not a config",
            )
        sizes[id(node)] = total


def _check_duplicates(node: yaml.MappingNode, path: tuple[str, ...]) -> None:
    first: dict[str, int] = {}
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == MERGE_TAG:
            continue  # complex keys fail in construction; ``<<`` merges are overrides by design
        line = key.start_mark.line + 1
        if key.value in first:
            raise YAMLProblem(
                line,
                ".".join((*path, key.value)),
                f"duplicate key (first at line {first[key.value]}); YAML would keep only this one",
            )
        first[key.value] = line


def load_yaml(text: str) -> tuple[Any, yaml.Node | None]:
    """(data, node) of one YAML document; raises :class:`YAMLProblem` for anything refused."""
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text)  # the reader checks every character here
        node = loader.get_single_node()
        if node is None:
            return None, None
        _check_nodes(node)
        return loader.construct_document(node), node
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (e.g. NUL)
        line = text[: exc.position].count("\n") + 1
        raise YAMLProblem(line, "(yaml)", f"character U+{exc.character:04X} not allowed") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc)
        raise YAMLProblem(line, "(yaml)", str(problem)) from None
    except RecursionError:  # not expected below MAX_DEPTH; never a traceback
        raise YAMLProblem(1, "(yaml)", "nested too deep; not a config") from None
    finally:
        if loader is not None:
            loader.dispose()
