"""Replica and file listings: the original's ``blockreplicas`` and ``data``; ours ``files`` and
``datasetreplicas``. Listings stream and take ``offset`` / ``limit``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from dynamo.dataformat.file import CHECKSUM_ALGORITHMS
from dynamo.web.errors import IllFormedRequest, NotFound
from dynamo.web.modules._base import Listing, WebModule
from dynamo.web.modules._common import crt, integer, matcher, one, page, paging, required, select, yesno


def split_block(value: str) -> tuple[str, str]:
    dataset, sep, block = value.partition("#")
    if not sep or not dataset or not block:
        raise IllFormedRequest("block", value, "expected dataset#block")
    return dataset, block


def _datasets(inventory: Any, pattern: str) -> list[Any]:
    if "*" in pattern or "?" in pattern:
        return [inventory.datasets[n] for n in select(inventory.datasets, pattern)]
    found = inventory.datasets.get(pattern)
    return [] if found is None else [found]


@dataclass
class ReplicaFilter:
    """The filters ``blockreplicas`` and ``datasetreplicas`` share: ``node`` and ``group``
    (names or patterns; ``group=None`` is the null group), ``complete`` (y/n),
    ``update_since`` and ``create_since`` (Unix times; replicas carry one time, so both
    compare with it, as in the original, whose create_since raised NameError)."""

    node: Callable[[str], bool] | None
    group: Callable[[str], bool] | None
    complete: bool | None
    since: int | None

    @classmethod
    def parse(cls, request: dict[str, Any]) -> ReplicaFilter:
        node = one(request, "node")
        group = one(request, "group")
        complete = yesno(request, "complete") if one(request, "complete") is not None else None
        update_since = integer(request, "update_since")
        create_since = integer(request, "create_since")
        since = max((t for t in (update_since, create_since) if t is not None), default=None)
        return cls(None if node is None else matcher(node), None if group is None else matcher(group),
                   complete, since)

    def site_ok(self, name: str) -> bool:
        return self.node is None or self.node(name)

    def replica_ok(self, replica: Any, complete: bool, last_update: int) -> bool:
        if self.group is not None and not self.group(replica.group.name or "None"):
            return False
        if self.complete is not None and complete != self.complete:
            return False
        return self.since is None or last_update >= self.since


class ListBlockReplicas(WebModule):
    """``block`` (dataset#block, the block part may be a pattern) or ``dataset`` (a pattern),
    or ``node`` alone (every block replica at the matching sites); filters as ReplicaFilter.
    ``{"block": [{name, files, bytes, is_open, id, replica: [...]}]}``."""

    def run(self, caller: Any, request: dict[str, Any], inventory: Any) -> Any:
        block_value = one(request, "block")
        dataset_value = one(request, "dataset")
        filters = ReplicaFilter.parse(request)
        offset, limit = paging(request)
        if block_value is not None:
            dataset_name, block_name = split_block(block_value)
            datasets = _datasets(inventory, dataset_name)
        elif dataset_value is not None:
            block_name = ""
            datasets = _datasets(inventory, dataset_value)
        elif filters.node is not None:
            return Listing(page(_at_sites(inventory, filters), offset, limit), "block")
        else:
            return {"block": []}
        blocks = _blocks(datasets, block_name)
        return Listing(page(_block_lines(blocks, filters), offset, limit), "block")


def _blocks(datasets: list[Any], block_name: str) -> Iterator[Any]:
    match = matcher(block_name) if block_name else None
    for dataset in datasets:
        for block in sorted(dataset.blocks, key=lambda b: b.real_name()):
            if match is None or match(block.real_name()):
                yield block


def _replica_line(br: Any) -> dict[str, Any]:
    site = br.site
    return {"bytes": br.size, "node": site.name, "files": br.num_files, "node_id": site.id, "se": site.host,
            "complete": crt(br.is_complete()), "time_create": br.last_update, "time_update": br.last_update,
            "group": br.group.name, "custodial": crt(br.is_custodial), "subscribed": crt(not br.group.is_null)}


def _block_line(block: Any, lines: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": block.full_name(), "files": block.num_files, "bytes": block.size,
            "is_open": crt(block.is_open), "id": block.id, "replica": lines}


def _block_lines(blocks: Iterable[Any], filters: ReplicaFilter) -> Iterator[dict[str, Any]]:
    for block in blocks:
        lines = [_replica_line(br) for br in sorted(block.replicas, key=lambda r: r.site_name)
                 if filters.site_ok(br.site_name) and filters.replica_ok(br, br.is_complete(), br.last_update)]
        if lines:
            yield _block_line(block, lines)


def _at_sites(inventory: Any, filters: ReplicaFilter) -> Iterator[dict[str, Any]]:
    """One line per block replica, site by site: memory stays bounded by one replica's lines."""
    for name in sorted(inventory.sites):
        if not filters.site_ok(name):
            continue
        for replica in inventory.sites[name].dataset_replicas():
            for br in replica.block_replicas:
                if filters.replica_ok(br, br.is_complete(), br.last_update):
                    yield _block_line(br.block, [_replica_line(br)])


def checksum(f: Any) -> str:
    values = f.checksum
    return ",".join(f"{a}:{v}" for a, v in zip(CHECKSUM_ALGORITHMS, values, strict=False) if v is not None)


class ListData(WebModule):
    """``block`` (dataset#block): the PhEDEx-style ``{"dbs": [{"dataset": [{... "block": [...]}]}]}``
    with one file line per replica holding it."""

    def run(self, caller: Any, request: dict[str, Any], inventory: Any) -> Any:
        value = one(request, "block")
        if value is None:
            return {"dbs": []}
        dataset_name, block_name = split_block(value)
        block = inventory.find_block(dataset_name, block_name)
        if block is None:
            # the original raised KeyError (500) for a missing dataset and answered with the wrong
            # block (the last one it looked at) for a missing block
            return {"dbs": []}
        files = []
        for br in sorted(block.replicas, key=lambda r: r.site_name):
            held = block.files if br.is_complete() else sorted(br.files(), key=lambda f: f.lfn)
            for f in held:
                files.append({"checksum": checksum(f), "node": br.site_name, "lfn": f.lfn,
                              "time_create": br.last_update, "size": f.size})
        block_line = [{"time_update": block.last_update, "bytes": block.size, "files": block.num_files,
                       "name": block.full_name(), "is_open": crt(block.is_open), "time_create": block.last_update,
                       "file": files}]
        dataset = {"dataset": [{"time_update": None, "is_transient": "n", "is_open": "y", "name": dataset_name,
                                "block": block_line}]}
        return {"dbs": [dataset]}


class ListFiles(WebModule):
    """Ours: ``dataset`` or ``block`` (dataset#block), optionally ``node`` (a site: only the files
    its replica holds). ``{"file": [{name, size, checksum, block}]}``."""

    def run(self, caller: Any, request: dict[str, Any], inventory: Any) -> Any:
        block_value = one(request, "block")
        offset, limit = paging(request)
        if block_value is not None:
            dataset_name, block_name = split_block(block_value)
            block = inventory.find_block(dataset_name, block_name)
            if block is None:
                raise NotFound(f"no block {block_value}")
            blocks = [block]
        else:
            name = required(request, "dataset")
            dataset = inventory.datasets.get(name)
            if dataset is None:
                raise NotFound(f"no dataset {name}")
            blocks = sorted(dataset.blocks, key=lambda b: b.real_name())
        node = one(request, "node")
        if node is not None and node not in inventory.sites:
            raise NotFound(f"no site {node}")
        return Listing(page(_files(blocks, node), offset, limit), "file")


def _files(blocks: list[Any], node: str | None) -> Iterator[dict[str, Any]]:
    for block in blocks:
        held: set[str] | None = None
        if node is not None:
            br = block.find_replica(node)
            if br is None:
                continue
            held = None if br.lfns is None else set(br.lfns)
        for f in block.files:
            if held is None or f.lfn in held:
                yield {"name": f.lfn, "size": f.size, "checksum": checksum(f), "block": block.full_name()}


class ListDatasetReplicas(WebModule):
    """Ours: ``dataset`` (a pattern) or ``node`` (a pattern), filters as ReplicaFilter.
    ``{"datasetreplica": [{dataset, node, group, complete, size, blocks, last_update}]}``."""

    def run(self, caller: Any, request: dict[str, Any], inventory: Any) -> Any:
        dataset_value = one(request, "dataset")
        filters = ReplicaFilter.parse(request)
        offset, limit = paging(request)
        if dataset_value is not None:
            replicas: Iterable[Any] = (r for d in _datasets(inventory, dataset_value)
                                       for r in sorted(d.replicas, key=lambda r: r.site_name))
        elif filters.node is not None:
            replicas = (r for n in sorted(inventory.sites) if filters.site_ok(n)
                        for r in inventory.sites[n].dataset_replicas())
        else:
            raise IllFormedRequest("dataset", "", "give dataset or node")
        return Listing(page(_dataset_replica_lines(replicas, filters), offset, limit), "datasetreplica")


def _dataset_replica_lines(replicas: Iterable[Any], filters: ReplicaFilter) -> Iterator[dict[str, Any]]:
    for r in replicas:
        if not filters.site_ok(r.site_name):
            continue
        last = max((br.last_update for br in r.block_replicas), default=0)
        complete = r.is_complete()
        if filters.replica_ok(r, complete, last):
            yield {"dataset": r.dataset_name, "node": r.site_name, "group": r.group.name,
                   "complete": crt(complete), "size": r.size(), "blocks": len(r.block_replicas),
                   "last_update": last}


export_data = {
    "blockreplicas": ListBlockReplicas,
    "data": ListData,
    "files": ListFiles,
    "datasetreplicas": ListDatasetReplicas,
}
