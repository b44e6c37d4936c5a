"""Read-only set views over the name-keyed containers inside objects.

Objects keep their children in plain dicts (None while empty, to save memory
on objects that exist by the million). The public attributes (``dataset.blocks``,
``dataset.replicas``, ...) are these views: iterable, sized, and answering
``in`` for an object or a name, with O(1) lookup by name. Changes go through
the inventory, never through a view.

The repr is ``set([...])``, the form the original system printed (see the
seed's "Adding Content" transcript); it is valid Python 3 and evaluates to a
plain set of the same objects.
"""

from __future__ import annotations

from collections.abc import Iterator, Set
from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")


class ObjectSet(Set[T], Generic[T]):
    __slots__ = ("_items", "_key")

    def __init__(self, items: dict[Any, T] | None, key: Callable[[Any], Any]):
        self._items = items
        self._key = key

    def __iter__(self) -> Iterator[T]:
        return iter(self._items.values()) if self._items else iter(())

    def __len__(self) -> int:
        return len(self._items) if self._items else 0

    def __contains__(self, item: object) -> bool:
        if not self._items:
            return False
        if isinstance(item, str) or item is None:
            return item in self._items
        try:
            name = self._key(item)
        except AttributeError:
            return False
        found = self._items.get(name)
        return found is not None and found == item

    def get(self, name: Any) -> T | None:
        """The member with this name (block name, site name, ...), or None."""
        return self._items.get(name) if self._items else None

    def __getitem__(self, name: Any) -> T:
        if not self._items:
            raise KeyError(name)
        return self._items[name]

    def __repr__(self) -> str:
        return "set([" + ", ".join(repr(v) for v in self) + "])"

    __hash__ = None  # type: ignore[assignment]
