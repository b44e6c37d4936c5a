"""The original ``dynamo-inject``'s builder options: inject/delete documents from command-line specs.

The functions keep the original's names and spec syntax (its ``lib/client/inject.py``):

* ``--dataset name[,status[,data_type]]`` with ``--block NAME...`` and ``--file name,size...``;
* ``--site name[,host[,storage_type[,backend[,status]]]]``;
* ``--group name[,olevel]``;
* ``--dataset-replica site:dataset[,group]`` with ``--block-replica block[,group]...`` and
  ``--block-replica-file LFN...``.

Differences: a file spec's third field (a site) is refused, since files added to a block do not
change its complete replicas here; the group list goes under ``group`` (the original sent
``gruop``, which its server ignored); olevel is case-insensitive (``block`` -> ``Block``);
``--site`` has no short form (``-s`` is ``--server`` here).
"""

from __future__ import annotations

from typing import Any


class SpecError(ValueError):
    """A command-line spec cannot be read."""


def make_dataset_data(datasets: list[str], blocks: list[str] | None = None,
                      files: list[str] | None = None) -> list[dict[str, Any]]:
    if blocks is not None and len(datasets) != 1:
        raise SpecError("--block is only available when one dataset is given")
    if files is not None and (blocks is None or len(blocks) != 1):
        raise SpecError("--file is only available when one block is given")
    data: list[dict[str, Any]] = []
    for entry in datasets:
        specs = entry.split(",")
        item: dict[str, Any] = {"name": specs[0], "status": _at(specs, 1, "unknown"),
                                "data_type": _at(specs, 2, "unknown")}
        data.append(item)
        if blocks is not None:
            item["blocks"] = [{"name": name} for name in blocks]
            if files is not None:
                item["blocks"][0]["files"] = [_file(f) for f in files]
    return data


def _file(entry: str) -> dict[str, Any]:
    specs = entry.split(",")
    if len(specs) < 2:
        raise SpecError(f"size missing for file {specs[0]}")
    if len(specs) > 2:
        raise SpecError(f"file {specs[0]}: the site field is not needed (complete replicas stay complete)")
    try:
        size = int(specs[1])
    except ValueError:
        raise SpecError(f"file {specs[0]}: size {specs[1]!r} is not an integer") from None
    return {"name": specs[0], "size": size}


def make_site_data(sites: list[str]) -> list[dict[str, Any]]:
    data = []
    for entry in sites:
        specs = entry.split(",")
        data.append({"name": specs[0], "host": _at(specs, 1, ""), "storage_type": _at(specs, 2, "unknown"),
                     "backend": _at(specs, 3, ""), "status": _at(specs, 4, "unknown")})
    return data


def make_group_data(groups: list[str]) -> list[dict[str, Any]]:
    data = []
    for entry in groups:
        specs = entry.split(",")
        data.append({"name": specs[0], "olevel": _at(specs, 1, "block").capitalize()})
    return data


def make_dataset_replica_data(dataset_replicas: list[str], block_replicas: list[str] | None = None,
                              block_replica_files: list[str] | None = None) -> list[dict[str, Any]]:
    if block_replicas is not None and len(dataset_replicas) != 1:
        raise SpecError("--block-replica is only available when one dataset replica is given")
    if block_replica_files is not None and (block_replicas is None or len(block_replicas) != 1):
        raise SpecError("--block-replica-file is only available when one block replica is given")
    data: list[dict[str, Any]] = []
    for entry in dataset_replicas:
        specs = entry.split(",")
        site, _, dataset = specs[0].partition(":")
        if not dataset:
            raise SpecError(f"invalid dataset replica spec {specs[0]} (expected site:dataset[,group])")
        item: dict[str, Any] = {"site": site, "dataset": dataset}
        if len(specs) > 1:
            item["growing"] = True
            item["group"] = specs[1]
        data.append(item)
        if block_replicas is None:
            continue
        replicas = item["blockreplicas"] = []
        for block_entry in block_replicas:
            bspecs = block_entry.split(",")
            replica: dict[str, Any] = {"block": bspecs[0]}
            if len(bspecs) > 1:
                replica["group"] = bspecs[1]
            if block_replica_files is not None:
                replica["files"] = list(block_replica_files)
            replicas.append(replica)
    return data


def make_document(args: Any) -> dict[str, Any]:
    """The document the builder options describe (empty when none was given)."""
    data: dict[str, Any] = {}
    if args.sites:
        data["site"] = make_site_data(args.sites)
    if args.groups:
        data["group"] = make_group_data(args.groups)
    if args.datasets:
        data["dataset"] = make_dataset_data(args.datasets, args.blocks, args.files)
    elif args.blocks or args.files:
        raise SpecError("--block and --file need --dataset")
    if args.dataset_replicas:
        data["datasetreplica"] = make_dataset_replica_data(args.dataset_replicas, args.block_replicas,
                                                           args.block_replica_files)
    elif args.block_replicas or args.block_replica_files:
        raise SpecError("--block-replica and --block-replica-file need --dataset-replica")
    return data


def _at(specs: list[str], index: int, default: str) -> str:
    return specs[index] if len(specs) > index and specs[index] else default
