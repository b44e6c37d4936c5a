"""SitePartition: the quota of one partition at one site."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from dynamo.dataformat._base import DataObject
from dynamo.dataformat._common import MAX_PARTITION_NAME, MAX_SITE_NAME, check_int, check_link, check_name
from dynamo.errors import IntegrityError, ObjectError

if TYPE_CHECKING:
    from dynamo.dataformat.partition import Partition
    from dynamo.dataformat.site import Site

UNLIMITED = -1


class SitePartition(DataObject):
    """``SitePartition(site, partition, quota)``; key is (site name, partition name).

    ``quota`` is in bytes; ``-1`` (``UNLIMITED``) means no limit, 0 means no space.
    ``site`` and ``partition`` are live objects inside an inventory, names outside.
    """

    __slots__ = ("_site", "_partition", "_quota")

    TYPE = "sitepartition"
    ATTRS = ("quota",)

    def __init__(self, site: Site | str, partition: Partition | str, quota: int = 0):
        if isinstance(site, str):
            check_name(site, "sitepartition site", MAX_SITE_NAME)
        else:
            check_link(site, "sitepartition site", "site")
        if isinstance(partition, str):
            check_name(partition, "sitepartition partition", MAX_PARTITION_NAME)
        else:
            check_link(partition, "sitepartition partition", "partition")
        self._site = site
        self._partition = partition
        self._quota = check_quota(quota)

    @property
    def quota(self) -> int:
        """Bytes; for a superpartition, the sum of its subpartitions' quotas at the site (as in
        the original; -1 if any of them is unlimited)."""
        partition = self._partition
        subs = None if isinstance(partition, str) else partition.subpartitions
        if subs is None or isinstance(self._site, str):
            return self._quota
        quotas = [self._site.partitions[p].quota for p in subs]
        return UNLIMITED if UNLIMITED in quotas else sum(quotas)

    @quota.setter
    def quota(self, value: Any) -> None:
        self._quota = check_quota(value)

    @property
    def own_quota(self) -> int:
        """The quota stored for this site partition (what ``quota`` is, but for a superpartition)."""
        return self._quota

    def set_quota(self, quota: Any) -> None:
        """The original's checked setter: not on a superpartition, not unlimited on a subpartition."""
        partition = self._partition
        if not isinstance(partition, str):
            if partition.subpartitions is not None:
                raise IntegrityError("Cannot set quota on a superpartition.")
            if partition.parent is not None and check_quota(quota) < 0:
                raise IntegrityError("Infinite quota set for a subpartition")
        self.quota = quota

    def replicas(self) -> dict[Any, Any]:
        """The original's ``replicas`` map, computed: DatasetReplica -> None (all of its block
        replicas belong to the partition) or the set of those that do."""
        site, partition = self._site, self._partition
        if isinstance(site, str) or isinstance(partition, str):
            raise TypeError("replicas() needs a site partition inside an inventory")
        result: dict[Any, Any] = {}
        for replica in site.dataset_replicas():
            members = {br for br in replica.block_replicas if partition.contains(br)}
            if members:
                result[replica] = None if len(members) == len(replica.block_replicas) else members
        return result

    def occupancy_fraction(self, physical: bool = True) -> float:
        """Bytes of the member block replicas over the quota (``physical=False``: counting whole
        blocks); as in the original, a quota of 0 gives ``sys.float_info.max`` and an
        unlimited one 0."""
        quota = self.quota
        if quota == 0:
            return sys.float_info.max
        if quota < 0:
            return 0.0
        total = 0
        for replica, members in self.replicas().items():
            block_replicas = replica.block_replicas if members is None else members
            total += sum(br.size if physical else br.block.size for br in block_replicas)
        return total / quota

    @property
    def site(self) -> Site | str:
        return self._site

    @property
    def partition(self) -> Partition | str:
        return self._partition

    @property
    def site_name(self) -> str:
        return self._site if isinstance(self._site, str) else self._site.name

    @property
    def partition_name(self) -> str:
        p = self._partition
        return p if isinstance(p, str) else p.name

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.site_name, self.partition_name)

    def _values(self) -> tuple[Any, ...]:
        return (self._quota,)

    def snapshot(self) -> tuple[Any, ...]:
        return (self._quota,)

    def restore(self, values: tuple[Any, ...]) -> None:
        (self._quota,) = values

    def copy_from(self, other: DataObject) -> None:
        assert isinstance(other, SitePartition)
        self._quota = other._quota

    def __repr__(self) -> str:
        return f"SitePartition({self.site_name!r},{self.partition_name!r},{self._quota})"


def check_quota(value: Any) -> int:
    """Bytes, -1 for unlimited. An integral float (``volume * 1e12`` in the original's quota
    tool) is taken as its integer; a fractional one is refused."""
    if isinstance(value, float):
        if not value.is_integer():
            raise ObjectError(f"sitepartition quota: {value!r} is not a whole number of bytes")
        value = int(value)
    return check_int(value, "sitepartition quota", minimum=UNLIMITED)
