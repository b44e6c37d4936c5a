"""The original Dynamo's inventory methods that applications call, on top of update/delete.

* ``register_update(obj)``: the original recorded an object the application had changed in
  place; here that is ``update(obj)`` on the live object (recorded in a write application).
* ``make_object(repr_text)``: an object from its ``repr``. The original ran ``eval``; this
  parses the text (one call of a dataformat class with literal arguments) and evaluates
  nothing.
* ``find_file(lfn)``: the live File with this LFN, or None. The original asked its database;
  this walks the blocks' packed file tables (O(files): seconds on millions of files).
"""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING, Any

from dynamo.errors import ObjectError

if TYPE_CHECKING:
    from dynamo.dataformat import File
    from dynamo.dataformat._base import DataObject


class OriginalInventoryAPI:
    __slots__ = ()

    datasets: dict[str, Any]

    if TYPE_CHECKING:
        def update(self, obj: DataObject) -> Any: ...

        def delete(self, obj: DataObject) -> Any: ...

    def register_update(self, obj: DataObject) -> Any:
        """Record ``obj`` (usually a live object changed in place) as updated."""
        return self.update(obj)

    def make_object(self, repstr: str) -> DataObject:
        return make_object(repstr)

    def find_file(self, lfn: str) -> File | None:
        for dataset in self.datasets.values():
            for block in dataset.blocks:
                if block.has_files():
                    found = block.find_file(lfn)
                    if found is not None:
                        return found
        return None


def make_object(repstr: str) -> DataObject:
    """``'Site('X','h','disk','','ready',0)'`` -> the object; ObjectError for anything else."""
    from dynamo import dataformat

    classes = {cls.__name__: cls for cls in dataformat.OBJECT_TYPES}
    try:
        tree = ast.parse(repstr.strip().removeprefix("df."), mode="eval").body
    except (SyntaxError, ValueError) as exc:
        raise ObjectError(f"make_object: {repstr!r} is not an object representation ({exc})") from exc
    if not (isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name) and tree.func.id in classes):
        raise ObjectError(f"make_object: {repstr!r} is not a call of one of {', '.join(classes)}")
    try:
        args = [ast.literal_eval(a) for a in tree.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in tree.keywords if k.arg is not None}
    except ValueError as exc:
        raise ObjectError(f"make_object: {repstr!r} has a non-literal argument") from exc
    obj: DataObject = classes[tree.func.id](*args, **kwargs)
    return obj
