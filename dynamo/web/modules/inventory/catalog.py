"""The original's catalog listings: ``datasets``, ``groups``, ``sites``, ``nodes``, ``lfn2pfn``.

Names, parameters (``*`` wildcards) and response fields are the original's
(lib/web/modules/inventory/); the fixes are listed in docs/web.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from dynamo.dataformat import Dataset, Site
from dynamo.web.modules._base import Listing, WebModule
from dynamo.web.modules._common import many, matcher, one, page, paging, required, select

TB = 1.e-12


class ListDatasets(WebModule):
    """``dataset`` (a name or a pattern); without it every dataset (the original listed none)."""

    def run(self, caller: Any, request: dict[str, Any], inventory: Any) -> Any:
        pattern = one(request, "dataset")
        offset, limit = paging(request)
        if pattern is None:
            names: Any = iter(inventory.datasets)
        elif "*" in pattern or "?" in pattern:
            names = select(inventory.datasets, pattern)
        else:
            names = [pattern] if pattern in inventory.datasets else []
        return Listing(_datasets(inventory, page(names, offset, limit)))


def _datasets(inventory: Any, names: Iterator[str]) -> Iterator[dict[str, Any]]:
    for name in names:
        d = inventory.datasets[name]
        yield {"name": d.name, "size": d.size, "num_files": d.num_files,
               "status": Dataset.status_name(d.status), "type": Dataset.data_type_name(d.data_type)}


class ListGroups(WebModule):
    """``group`` (a name or a pattern). The null group is listed as ``(no group)``."""

    def run(self, caller: Any, request: dict[str, Any], inventory: Any) -> Any:
        pattern = one(request, "group")
        named = [n for n in inventory.groups if n is not None]
        if pattern is None:
            return [{"name": "(no group)"}] + [{"name": n} for n in sorted(named)]
        if pattern == "(no group)":
            return [{"name": pattern}]
        # the original sorted None among the names and matched patterns against it: a TypeError
        return [{"name": n} for n in select(named, pattern)]


class ListSites(WebModule):
    """``site`` and ``partition``: names or patterns, a list or comma-separated. Quotas and
    usage in TB, per partition and in total (basic partitions with a positive quota)."""

    def run(self, caller: Any, request: dict[str, Any], inventory: Any) -> Any:
        sites = _chosen(inventory.sites, many(request, "site"))
        partitions = set(_chosen(inventory.partitions, many(request, "partition")))
        return [_site(inventory, inventory.sites[name], partitions) for name in sites]


def _chosen(table: dict[str, Any], patterns: list[str] | None) -> list[str]:
    if patterns is None:
        return sorted(table)
    chosen: set[str] = set()
    for pattern in patterns:
        chosen.update(select(table, pattern))
    return sorted(chosen)


def _site(inventory: Any, site: Site, partitions: set[str]) -> dict[str, Any]:
    data: dict[str, Any] = {"name": site.name, "host": site.host,
                            "storage_type": Site.storage_type_name(site.storage_type),
                            "status": Site.status_name(site.status), "partitions": []}
    total_quota = total_used = total_projected = 0.
    for name in sorted(inventory.partitions):
        partition = inventory.partitions[name]
        sp = site.partitions[partition]
        quota = sp.quota
        part_type = "basic" if partition.subpartitions is None else "composite"
        # an unlimited quota (-1) has no fraction: report the bytes themselves
        used = _used(sp, True) if quota != 0 else 0.
        projected = _used(sp, False) if quota != 0 else 0.
        if part_type == "basic" and quota > 0:
            total_quota += quota
            total_used += used
            total_projected += projected
        if name in partitions:
            data["partitions"].append({"name": name, "type": part_type, "quota": quota * TB,
                                       "usage": used * TB, "projected_usage": projected * TB})
    data["total_quota"] = total_quota * TB
    data["total_usage"] = total_used * TB
    data["total_projected_usage"] = total_projected * TB
    return data


def _used(sp: Any, physical: bool) -> float:
    total = 0
    for replica, members in sp.replicas().items():
        block_replicas = replica.block_replicas if members is None else members
        total += sum(br.size if physical else br.block.size for br in block_replicas)
    return float(total)


class NodesList(WebModule):
    """``node`` (a name or a pattern): ``{"node": [{kind, se, technology, name, id}]}``."""

    def run(self, caller: Any, request: dict[str, Any], inventory: Any) -> Any:
        pattern = one(request, "node")
        # the original's loop without "node" looked up an unbound variable (NameError: HTTP 500)
        names = sorted(inventory.sites) if pattern is None else select(inventory.sites, pattern)
        nodes = []
        for name in names:
            site = inventory.sites[name]
            nodes.append({"kind": Site.storage_type_name(site.storage_type), "se": site.host, "technology": "",
                          "name": site.name, "id": site.id})
        return {"node": nodes}


class Lfn2PfnModule(WebModule):
    """``protocol``, ``node`` (a name or a pattern) and ``lfn`` -> ``{"mapping": [...]}``."""

    def run(self, caller: Any, request: dict[str, Any], inventory: Any) -> Any:
        if any(one(request, key) is None for key in ("protocol", "node", "lfn")):
            return {"mapping": []}
        protocol = required(request, "protocol")
        lfn = required(request, "lfn")
        node = required(request, "node")
        match = matcher(node)
        mapping = []
        for name in sorted(inventory.sites):
            if not match(name):
                continue
            site = inventory.sites[name]
            pfn = site.to_pfn(lfn, protocol)
            if pfn is None:
                pfn = site.to_pfn(lfn, "gfal2")
            # the original reported the pattern as the node; each site's own name is what a client can use
            mapping.append({"protocol": protocol, "custodial": None, "destination": None, "space_token": None,
                            "node": name, "lfn": lfn, "pfn": pfn})
        return {"mapping": mapping}


export_data = {
    "datasets": ListDatasets,
    "groups": ListGroups,
    "sites": ListSites,
    "nodes": NodesList,
    "lfn2pfn": Lfn2PfnModule,
}
