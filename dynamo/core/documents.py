"""Inject and delete documents (the seed's JSON formats) -> change sets.

Inject document: an object with any of these keys, each a list::

    {"group":     [{"name", "olevel"?}],
     "site":      [{"name", "host"?, "storage_type"?, "backend"?, "status"?}],
     "partition": [{"name", "quota"?: {site name: bytes, ...}}],
     "dataset":   [{"name", "status"?, "data_type"?, "software_version"?, "last_update"?, "is_open"?,
                    "blocks"?: [{"name", "is_open"?, "last_update"?, "num_files"?, "size"?,
                                 "files"?: [{"name", "size", "adler32"?, "cksum"?, "md5"?}]}]}],
     "datasetreplica": [{"dataset", "site", "growing"?, "group"?,
                         "blockreplicas"?: [{"block", "group"?, "is_custodial"?, "last_update"?,
                                             "files"?: [lfn, ...]}]}]}

An object that already exists keeps every attribute the document does not
mention; a new one gets the defaults (``last_update`` defaults to now). A
block's ``num_files``/``size`` default to the count and total of its files
(those already in the inventory plus those in the document) and, if given,
must agree with them. A block replica's group defaults to its dataset
replica's; ``files`` makes it incomplete.

Delete document: the same keys with names only; a dataset entry with
``blocks`` deletes those blocks (and with ``files``, those files, adjusting
the block's counts) instead of the dataset; a datasetreplica entry with
``blockreplicas`` deletes those block replicas instead.

Every error names its place (``dataset[0].blocks[1].files[3].size: expected
an integer``) and nothing is produced: the caller applies all or nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from dynamo.core.codec import DELETE, UPDATE, Record, encode
from dynamo.core.docnodes import INT64_MAX, Node, Seen, checked_string, items, kind, load_json, make, top
from dynamo.core.inventory import Inventory
from dynamo.dataformat import (
    Block,
    BlockReplica,
    Dataset,
    DatasetReplica,
    File,
    Group,
    Partition,
    Site,
    SitePartition,
)
from dynamo.dataformat._base import DataObject
from dynamo.dataformat._common import MAX_GROUP_NAME, check_block_name, check_dataset_name, check_name
from dynamo.dataformat.file import CHECKSUM_ALGORITHMS, format_checksums
from dynamo.errors import DocumentError

INJECT_KEYS = ("group", "site", "partition", "dataset", "datasetreplica")
COUNT_NAMES = {"site": "sites", "group": "groups", "partition": "partitions", "sitepartition": "quotas",
               "dataset": "datasets", "block": "blocks", "file": "files", "datasetreplica": "datasetreplicas",
               "blockreplica": "blockreplicas"}


@dataclass
class ParsedDocument:
    """The change set a document stands for, and per-type counts of its records."""

    records: list[Record] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, op: str, obj: DataObject, counted: bool = True) -> None:
        self.records.append(encode(op, obj))
        if counted:
            name = COUNT_NAMES[obj.TYPE]
            self.counts[name] = self.counts.get(name, 0) + 1




def _replica_label(dataset: str, site: str) -> str:
    return f"{dataset!r} at site {site!r}"


# ---------------------------------------------------------------------------
# inject
# ---------------------------------------------------------------------------

SITE_KEYS = ("name", "host", "storage_type", "backend", "status")
GROUP_KEYS = ("name", "olevel")
PARTITION_KEYS = ("name", "quota")
DATASET_KEYS = ("name", "status", "data_type", "software_version", "last_update", "is_open", "blocks")
BLOCK_KEYS = ("name", "is_open", "last_update", "num_files", "size", "files")
FILE_KEYS = ("name", "size", *CHECKSUM_ALGORITHMS)
DATASETREPLICA_KEYS = ("dataset", "site", "growing", "group", "blockreplicas")
BLOCKREPLICA_KEYS = ("block", "group", "is_custodial", "last_update", "files")


class _Injector:
    def __init__(self, inventory: Inventory, now: int):
        self.inv = inventory
        self.now = now
        self.out = ParsedDocument()
        self.sites: dict[str, Site] = {}
        self.groups: set[str] = set()
        self.partitions = Seen("partition")
        self.replicas = Seen("dataset replica")
        self.datasets: dict[str, tuple[Dataset, dict[str, dict[str, int]]]] = {}

    def run(self, document: Any) -> ParsedDocument:
        root = top(document, INJECT_KEYS)
        for node in items(root, "group", GROUP_KEYS):
            self.group(node)
        for node in items(root, "site", SITE_KEYS):
            self.site(node)
        for node in items(root, "partition", PARTITION_KEYS):
            self.partition(node)
        for node in items(root, "dataset", DATASET_KEYS):
            self.dataset(node)
        for node in items(root, "datasetreplica", DATASETREPLICA_KEYS):
            self.dataset_replica(node)
        return self.out

    def group(self, node: Node) -> None:
        name = make(node.at("name"), check_name, node.name(), "group name", MAX_GROUP_NAME)
        if name in self.groups:
            raise DocumentError(node.at("name"), f"duplicate group {name!r}")
        self.groups.add(name)
        old = self.inv.groups.get(name)
        olevel = node.string("olevel", old.olevel if old else "Block")
        # the name is valid: an error here is the olevel's
        self.out.add(UPDATE, make(node.at("olevel"), Group, name, olevel))

    def site(self, node: Node) -> None:
        name = node.name()
        if name in self.sites:
            raise DocumentError(node.at("name"), f"duplicate site {name!r}")
        old = self.inv.sites.get(name)
        args = [name]
        for key, default in (("host", ""), ("storage_type", "disk"), ("backend", ""), ("status", "ready")):
            args.append(node.string(key, getattr(old, key) if old else default))
        site = make(node.path, Site, *args)
        if old is not None:  # settings the document cannot express stay as they are
            site.filename_mapping, site.x509proxy = old.filename_mapping, old.x509proxy
        self.sites[name] = site
        self.out.add(UPDATE, site)

    def _site_exists(self, name: str) -> bool:
        return name in self.sites or name in self.inv.sites

    def _group_exists(self, name: str | None) -> bool:
        return name is None or name in self.groups or name in self.inv.groups

    def partition(self, node: Node) -> None:
        name = node.name()
        self.partitions.check(name, node.at("name"))
        old = self.inv.partitions.get(name)  # its condition and parent stay as they are
        self.out.add(UPDATE, make(node.at("name"), Partition, name, condition=old.condition if old else None,
                                  parent=old.parent_name if old else None))
        quota = node.value.get("quota", {})
        if not isinstance(quota, dict):
            raise DocumentError(node.at("quota"), f"expected an object of site: bytes, got {kind(quota)}")
        for site, value in quota.items():
            path = f"{node.at('quota')}.{site}"
            if not self._site_exists(site):
                raise DocumentError(path, f"unknown site {site!r}")
            # a number (the object model decides whether an integral float will do) within a store's column
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not -1 <= value <= INT64_MAX:
                raise DocumentError(path, f"expected a number of bytes from -1 (unlimited) to {INT64_MAX}")
            self.out.add(UPDATE, make(path, SitePartition, site, name, value))

    def dataset(self, node: Node) -> None:
        # checked here rather than by the Dataset below, to name the place precisely
        name = make(node.at("name"), check_dataset_name, node.name(), "dataset name")
        if name in self.datasets:
            raise DocumentError(node.at("name"), f"duplicate dataset {name!r}")
        old = self.inv.datasets.get(name)
        version = self._software_version(node, old.software_version if old else None)
        dataset = make(node.path, Dataset, name,
                        node.string("status", old.status if old else "unknown"),
                        node.string("data_type", old.data_type if old else "unknown"),
                        version,
                        node.integer("last_update", old.last_update if old else self.now),
                        node.boolean("is_open", old.is_open if old else True))
        blocks: dict[str, dict[str, int]] = {}
        self.datasets[name] = (dataset, blocks)
        self.out.add(UPDATE, dataset)
        # an LFN may appear once per dataset entry: LFNs are unique per block in the image, and
        # one in two blocks of a dataset is a mistake in the document
        lfns = Seen("file")
        for block_node in node.items("blocks", BLOCK_KEYS):
            self.block(block_node, name, old, blocks, lfns)

    @staticmethod
    def _software_version(node: Node, default: str | None) -> str | None:
        if not node.has("software_version"):
            return default
        value = node.value["software_version"]
        if isinstance(value, list):
            if len(value) != 1:
                raise DocumentError(node.at("software_version"), "expected a string or a list of one string")
            value = value[0]
        if value is not None and not isinstance(value, str):
            raise DocumentError(node.at("software_version"), f"expected a string, got {kind(value)}")
        return value

    def block(self, node: Node, dataset: str, old_dataset: Dataset | None, blocks: dict[str, dict[str, int]],
              lfns: Seen) -> None:
        # checked before the files, whose references 'dataset#block' it is part of
        name = make(node.at("name"), check_block_name, node.name(), "block name")
        if name in blocks:
            raise DocumentError(node.at("name"), f"duplicate block {name!r} in dataset {dataset!r}")
        old = old_dataset.find_block(name) if old_dataset else None
        existing = {f.lfn: f.size for f in old.files} if old else {}
        files: list[File] = []
        full = f"{dataset}#{name}"
        for file_node in node.items("files", FILE_KEYS):
            lfn = file_node.name()
            lfns.check(lfn, file_node.at("name"))
            size = file_node.integer("size", 0, required=True)
            checksums = {a: file_node.string(a, None) for a in CHECKSUM_ALGORITHMS if file_node.has(a)}
            checksum = make(file_node.path, format_checksums, checksums)
            files.append(make(file_node.path, File, lfn, full, size, checksum))
        merged = dict(existing)
        merged.update((f.lfn, f.size) for f in files)
        count, total = len(merged), sum(merged.values())
        num_files = node.integer("num_files", count if merged or not old else old.num_files)
        size = node.integer("size", total if merged or not old else old.size)
        if merged and num_files != count:
            raise DocumentError(node.at("num_files"), f"{num_files} disagrees with the block's {count} files"
                                + (f" ({len(existing)} already in the inventory)" if existing else ""))
        if merged and size != total:
            raise DocumentError(node.at("size"), f"{size} disagrees with the total size of the block's files, {total}")
        block = make(node.path, Block, name, dataset, size, num_files,
                      node.boolean("is_open", old.is_open if old else False),
                      node.integer("last_update", old.last_update if old else self.now))
        blocks[name] = merged
        self.out.add(UPDATE, block)
        for f in files:
            self.out.add(UPDATE, f)

    def _block_files(self, dataset: str, block: str) -> dict[str, int] | None:
        """The block's files (name -> size) after this document, or None if the block is unknown."""
        entry = self.datasets.get(dataset)
        if entry is not None and block in entry[1]:
            return entry[1][block]
        live = self.inv.find_block(dataset, block)
        return None if live is None else {lfn: 0 for lfn in live.file_names()}

    def dataset_replica(self, node: Node) -> None:
        dataset = node.name("dataset")
        site = node.name("site")
        if dataset not in self.datasets and dataset not in self.inv.datasets:
            raise DocumentError(node.at("dataset"), f"unknown dataset {dataset!r}")
        if not self._site_exists(site):
            raise DocumentError(node.at("site"), f"unknown site {site!r}")
        self.replicas.check((dataset, site), node.path, _replica_label(dataset, site))
        live_site = self.inv.sites.get(site)
        old = live_site.find_dataset_replica(dataset) if live_site else None
        group = node.optional_string("group", old.group_name if old else None)
        if not self._group_exists(group):
            raise DocumentError(node.at("group"), f"unknown group {group!r}")
        self.out.add(UPDATE, make(node.path, DatasetReplica, dataset, site,
                                   node.boolean("growing", old.growing if old else False), group))
        seen = Seen("block replica")
        for br in node.items("blockreplicas", BLOCKREPLICA_KEYS):
            self.block_replica(br, dataset, site, group, old, seen)

    def block_replica(self, node: Node, dataset: str, site: str, dr_group: str | None,
                      old_dr: DatasetReplica | None, seen: Seen) -> None:
        block = node.name("block")
        seen.check(block, node.at("block"))
        files = self._block_files(dataset, block)
        if files is None:
            raise DocumentError(node.at("block"), f"unknown block {block!r} in dataset {dataset!r}")
        old = old_dr.find_block_replica(block) if old_dr else None
        group = node.optional_string("group", old.group_name if old else dr_group)
        if not self._group_exists(group):
            raise DocumentError(node.at("group"), f"unknown group {group!r}")
        held: list[str] | None = None if old is None or old.lfns is None else list(old.lfns)
        if node.has("files"):
            held = []
            for path, lfn in node.elements("files"):
                if checked_string(path, lfn) not in files:
                    raise DocumentError(path, f"file {lfn!r} is not in block {dataset}#{block}")
                held.append(lfn)
        self.out.add(UPDATE, make(node.path, BlockReplica, f"{dataset}#{block}", site, group,
                                   node.boolean("is_custodial", old.is_custodial if old else False),
                                   node.integer("last_update", old.last_update if old else self.now),
                                   held))


def parse_inject(document: Any, inventory: Inventory, now: int | None = None) -> ParsedDocument:
    """Turn an inject document (parsed JSON, or its text) into update records."""
    if isinstance(document, (str, bytes)):
        document = load_json(document)
    return _Injector(inventory, int(time.time()) if now is None else now).run(document)


# ---------------------------------------------------------------------------
# delete
# ---------------------------------------------------------------------------

DEL_NAME_KEYS = ("name",)
DEL_DATASET_KEYS = ("name", "blocks")
DEL_BLOCK_KEYS = ("name", "files")
DEL_DATASETREPLICA_KEYS = ("dataset", "site", "blockreplicas")
DEL_BLOCKREPLICA_KEYS = ("block",)


def parse_delete(document: Any, inventory: Inventory) -> ParsedDocument:
    """Turn a delete document into delete records (plus block updates for file deletions)."""
    if isinstance(document, (str, bytes)):
        document = load_json(document)
    inv = inventory
    out = ParsedDocument()
    root = top(document, INJECT_KEYS)
    # replicas first, then datasets, groups, partitions and sites (parents last)
    seen_dr = Seen("dataset replica")
    for node in items(root, "datasetreplica", DEL_DATASETREPLICA_KEYS):
        dataset, site = node.name("dataset"), node.name("site")
        seen_dr.check((dataset, site), node.path, _replica_label(dataset, site))
        live_site = inv.sites.get(site)
        if live_site is None:
            raise DocumentError(node.at("site"), f"unknown site {site!r}")
        replica = live_site.find_dataset_replica(dataset)
        if replica is None:
            raise DocumentError(node.path, f"dataset {dataset!r} has no replica at site {site!r}")
        if not node.has("blockreplicas"):
            out.add(DELETE, make(node.path, DatasetReplica, dataset, site))
            continue
        seen = Seen("block replica")
        for br in node.items("blockreplicas", DEL_BLOCKREPLICA_KEYS):
            block = br.name("block")
            seen.check(block, br.at("block"))
            if replica.find_block_replica(block) is None:
                raise DocumentError(br.at("block"), f"block {dataset}#{block} has no replica at site {site!r}")
            out.add(DELETE, make(br.path, BlockReplica, f"{dataset}#{block}", site))
    seen_ds = Seen("dataset")
    for node in items(root, "dataset", DEL_DATASET_KEYS):
        name = node.name()
        seen_ds.check(name, node.at("name"))
        live_dataset = inv.datasets.get(name)
        if live_dataset is None:
            raise DocumentError(node.at("name"), f"unknown dataset {name!r}")
        if not node.has("blocks"):
            out.add(DELETE, make(node.path, Dataset, name))
            continue
        seen_blocks = Seen("block")
        for block_node in node.items("blocks", DEL_BLOCK_KEYS):
            _delete_block(out, live_dataset, block_node, seen_blocks)
    named: tuple[tuple[str, Any, str, Any], ...] = (
        ("group", Group, "group", inv.groups), ("partition", Partition, "partition", inv.partitions),
        ("site", Site, "site", inv.sites))
    for key, cls, what, live in named:
        seen = Seen(what)
        for node in items(root, key, DEL_NAME_KEYS):
            name = node.name()
            seen.check(name, node.at("name"))
            if name not in live:
                raise DocumentError(node.at("name"), f"unknown {what} {name!r}")
            out.add(DELETE, make(node.path, cls, name))
    return out


def _delete_block(out: ParsedDocument, dataset: Dataset, node: Node, seen: Seen) -> None:
    name = node.name()
    seen.check(name, node.at("name"))
    block = dataset.find_block(name)
    if block is None:
        raise DocumentError(node.at("name"), f"unknown block {name!r} in dataset {dataset.name!r}")
    if not node.has("files"):
        out.add(DELETE, make(node.path, Block, name, dataset.name))
        return
    sizes = {f.lfn: f.size for f in block.files}
    seen_files = Seen("file")
    for file_node in node.items("files", DEL_NAME_KEYS):
        lfn = file_node.name()
        seen_files.check(lfn, file_node.at("name"))
        if lfn not in sizes:
            raise DocumentError(file_node.at("name"), f"file {lfn!r} is not in block {block.full_name()}")
        out.add(DELETE, make(file_node.path, File, lfn, block.full_name()))
        del sizes[lfn]
    # the block's counts follow its files (not counted: the document deletes, it does not inject)
    out.add(UPDATE, make(node.path, Block, name, dataset.name, sum(sizes.values()), len(sizes), block.is_open,
                         block.last_update), counted=False)
