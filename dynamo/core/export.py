"""Lossless export of an image as update records, parents before children.

Applying the records of ``export_records(a)`` to an empty inventory with
``trust_ids`` set rebuilds ``a`` exactly, ids included; ``fingerprint`` gives
a canonical, order-independent form for comparing two images.
"""

from __future__ import annotations

import json
from typing import Iterator

from dynamo.core.codec import UPDATE, Record, encode
from dynamo.core.inventory import Inventory

_TYPE_ORDER = ("group", "site", "partition", "sitepartition", "dataset", "block", "file", "datasetreplica",
               "blockreplica")


def export_records(inventory: Inventory) -> Iterator[Record]:
    for group in inventory.groups.values():
        if group.name is not None:
            yield encode(UPDATE, group)
    for site in inventory.sites.values():
        yield encode(UPDATE, site)
    for partition in inventory.partitions.values():
        yield encode(UPDATE, partition)
    for site in inventory.sites.values():
        for quota in site.partitions.values():
            yield encode(UPDATE, quota)
    for dataset in inventory.datasets.values():
        yield encode(UPDATE, dataset)
        for block in dataset.blocks:
            yield encode(UPDATE, block)
            for lfn in block.files:
                yield encode(UPDATE, lfn)
    for dataset in inventory.datasets.values():
        for replica in dataset.replicas:
            yield encode(UPDATE, replica)
            for block_replica in replica.block_replicas:
                yield encode(UPDATE, block_replica)


def fingerprint(inventory: Inventory) -> list[str]:
    """Every object's record as canonical JSON, sorted: equal lists <=> equal images."""
    lines = [json.dumps([_TYPE_ORDER.index(r[1]), r], sort_keys=True) for r in export_records(inventory)]
    lines.sort()
    return lines
