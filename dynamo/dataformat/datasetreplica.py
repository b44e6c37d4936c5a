"""DatasetReplica: the presence of (some of) a dataset's blocks at a site."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dynamo.dataformat._base import DataObject
from dynamo.dataformat._common import (
    MAX_GROUP_NAME,
    MAX_SITE_NAME,
    check_bool,
    check_dataset_name,
    check_link,
    check_name,
)
from dynamo.dataformat._views import ObjectSet

if TYPE_CHECKING:
    from dynamo.dataformat.block import Block
    from dynamo.dataformat.blockreplica import BlockReplica
    from dynamo.dataformat.dataset import Dataset
    from dynamo.dataformat.group import Group
    from dynamo.dataformat.site import Site


def _replica_block_name(replica: BlockReplica) -> str:
    return replica.block_name


def group_name(group: Group | str | None) -> str | None:
    return group if group is None or isinstance(group, str) else group.name


class DatasetReplica(DataObject):
    """``DatasetReplica(dataset, site, growing, group)``; key is (dataset name, site name).

    ``growing``: new blocks of the dataset are expected to appear here too.
    ``group``: the owner (a Group inside an inventory, a name or None outside;
    None is the null group). ``block_replicas`` is a read-only view keyed by
    block name. A dataset replica disappears with its last block replica.
    """

    __slots__ = ("_dataset", "_site", "growing", "group", "_block_replicas")

    TYPE = "datasetreplica"
    ATTRS = ("growing",)

    def __init__(self, dataset: Dataset | str, site: Site | str, growing: bool = False,
                 group: Group | str | None = None):
        if isinstance(dataset, str):
            check_dataset_name(dataset, "datasetreplica dataset")
        else:
            check_link(dataset, "datasetreplica dataset", "dataset")
        if isinstance(site, str):
            check_name(site, "datasetreplica site", MAX_SITE_NAME)
        else:
            check_link(site, "datasetreplica site", "site")
        if isinstance(group, str):
            check_name(group, "datasetreplica group", MAX_GROUP_NAME)
        else:
            check_link(group, "datasetreplica group", "group", nullable=True)
        self._dataset = dataset
        self._site = site
        self.growing = check_bool(growing, "datasetreplica growing")
        self.group = group
        self._block_replicas: dict[str, BlockReplica] | None = None

    @classmethod
    def _make(cls, dataset: Dataset, site: Site, growing: bool, group: Group) -> DatasetReplica:
        obj = cls.__new__(cls)
        obj._dataset = dataset
        obj._site = site
        obj.growing = growing
        obj.group = group
        obj._block_replicas = None
        return obj

    @property
    def dataset(self) -> Dataset | str:
        return self._dataset

    @property
    def site(self) -> Site | str:
        return self._site

    @property
    def dataset_name(self) -> str:
        d = self._dataset
        return d if isinstance(d, str) else d.name

    @property
    def site_name(self) -> str:
        s = self._site
        return s if isinstance(s, str) else s.name

    @property
    def group_name(self) -> str | None:
        return group_name(self.group)

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.dataset_name, self.site_name)

    def _values(self) -> tuple[Any, ...]:
        return (self.growing, self.group_name)

    def __repr__(self) -> str:
        return f"DatasetReplica({self.dataset_name!r},{self.site_name!r},{self.growing},{self.group_name!r})"

    @property
    def block_replicas(self) -> ObjectSet[BlockReplica]:
        return ObjectSet(self._block_replicas, _replica_block_name)

    def find_block_replica(self, block: Block | str) -> BlockReplica | None:
        if not self._block_replicas:
            return None
        return self._block_replicas.get(block if isinstance(block, str) else block.name)

    def is_complete(self) -> bool:
        """Every block replica here holds all files of its block."""
        return all(r.is_complete() for r in self.block_replicas)

    def is_full(self) -> bool:
        """Every block of the dataset has a complete replica here."""
        dataset = self._dataset
        if isinstance(dataset, str):
            raise TypeError("is_full() needs a replica inside an inventory")
        return len(self.block_replicas) == len(dataset.blocks) and self.is_complete()

    def size(self, physical: bool = True) -> int:
        """Bytes physically present (a method, as in the original); ``physical=False``: the
        full sizes of the blocks that have a replica here."""
        if physical:
            return sum(r.size for r in self.block_replicas)
        return sum(r._live_block().size for r in self.block_replicas)

    def is_partial(self) -> bool:
        """Some blocks of the dataset have no replica here, and those that have are complete."""
        dataset = self._dataset
        if isinstance(dataset, str):
            raise TypeError("is_partial() needs a replica inside an inventory")
        return len(self.block_replicas) != len(dataset.blocks) and self.is_complete()

    def last_block_created(self) -> int:
        """The newest last_update of the block replicas here (0 without any), as in the original."""
        return max((r.last_update for r in self.block_replicas), default=0)

    def is_last_copy(self) -> bool:
        """No other site holds a replica of the dataset."""
        dataset = self._dataset
        if isinstance(dataset, str):
            raise TypeError("is_last_copy() needs a replica inside an inventory")
        return len(dataset.replicas) == 1
