"""Read only the event fields some pattern uses: a trie of the paths, walked over the event.

Each leaf value comes with its array trail, the (array, index) pairs on the way down, so that
conditions on fields of objects inside one array can be required to hold for the same element
(event-ruler's array consistency).
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeAlias

# the (id(array), index) pairs on the way down to a leaf value
Trail: TypeAlias = tuple[tuple[int, int], ...]
# path -> [(leaf value, its trail), ...]
Flat: TypeAlias = dict[str, list[tuple[Any, Trail]]]


class PathTrie:
    __slots__ = ("children", "leaf")

    def __init__(self) -> None:
        self.children: dict[str, PathTrie] = {}
        self.leaf: str | None = None

    def add(self, path: str) -> None:
        node = self
        for seg in path.split("."):
            node = node.children.setdefault(seg, PathTrie())
        node.leaf = path

    def descend(self, dotted_key: str) -> PathTrie | None:
        node: PathTrie | None = self
        for seg in dotted_key.split("."):
            node = node.children.get(seg)  # type: ignore[union-attr]  # None returns below
            if node is None:
                return None
        return node


def build_trie(paths: Iterable[str]) -> PathTrie:
    root = PathTrie()
    for p in paths:
        root.add(p)
    return root


def flatten(event: dict[str, Any], trie: PathTrie) -> Flat:
    """path -> [(value, trail), ...] for every leaf under a path of the trie."""
    out: Flat = {}
    _walk(event, trie, (), out)
    return out


def _walk(obj: dict[str, Any], node: PathTrie, trail: Trail, out: Flat) -> None:
    children = node.children
    for k, v in obj.items():
        child = children.get(k)
        if child is None:
            # event keys may themselves contain dots: {"a.b": 1} is the field a.b
            if "." not in k or (child := node.descend(k)) is None:
                continue
        _visit(v, child, trail, out)


def _visit(v: Any, node: PathTrie, trail: Trail, out: Flat) -> None:
    t = type(v)
    if t is dict:
        if node.children:
            _walk(v, node, trail, out)
    elif t is list:
        arr = id(v)
        leaf = node.leaf
        lst = None
        for i, x in enumerate(v):
            tx = type(x)
            if tx is dict or tx is list:
                _visit(x, node, trail + ((arr, i),), out)
            elif leaf is not None:
                # scalars in a list: appended here, without a call per element
                if lst is None:
                    lst = out.get(leaf)
                    if lst is None:
                        lst = out[leaf] = []
                lst.append((x, trail + ((arr, i),)))
    elif node.leaf is not None:
        lst = out.get(node.leaf)
        if lst is None:
            out[node.leaf] = [(v, trail)]
        else:
            lst.append((v, trail))
