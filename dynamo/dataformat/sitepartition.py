"""SitePartition: the quota of one partition at one site."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dynamo.dataformat._base import DataObject
from dynamo.dataformat._common import MAX_PARTITION_NAME, MAX_SITE_NAME, check_int, check_link, check_name

if TYPE_CHECKING:
    from dynamo.dataformat.partition import Partition
    from dynamo.dataformat.site import Site

UNLIMITED = -1


class SitePartition(DataObject):
    """``SitePartition(site, partition, quota)``; key is (site name, partition name).

    ``quota`` is in bytes; ``-1`` (``UNLIMITED``) means no limit, 0 means no space.
    ``site`` and ``partition`` are live objects inside an inventory, names outside.
    """

    __slots__ = ("_site", "_partition", "quota")

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
        self.quota = check_int(quota, "sitepartition quota", minimum=UNLIMITED)

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

    def __repr__(self) -> str:
        return f"SitePartition({self.site_name!r},{self.partition_name!r},{self.quota})"
