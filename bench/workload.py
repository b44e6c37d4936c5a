"""Seeded workload generator: W10 of performance.md, or any fraction of it.

``generate(scale, seed)`` builds an image directly through the store's row
builder (the same code that loads from a database), with realistic name
lengths: dataset names ~60-100 characters, LFNs ~100-160. ``change_records``
makes a valid mixed change set against an image. Same seed, same output.

W10: 100k datasets, 1M blocks, 10M files, 5M block replicas, 500k dataset
replicas, 100 sites.
"""

from __future__ import annotations

import random
import struct
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any, Iterator

from dynamo.core.codec import DELETE, UPDATE, Record, encode
from dynamo.core.inventory import Inventory
from dynamo.dataformat import Block, BlockReplica, Dataset, DatasetStatus, File, filetable
from dynamo.dataformat.filetable import FileEntry
from dynamo.store import rows as R


@dataclass(frozen=True)
class Scale:
    sites: int = 100
    groups: int = 20
    datasets: int = 100_000
    blocks_per_dataset: int = 10
    files_per_block: int = 10
    replicas_per_dataset: int = 5
    incomplete_fraction: float = 0.01

    @property
    def summary(self) -> str:
        b = self.datasets * self.blocks_per_dataset
        return (f"{self.datasets} datasets, {b} blocks, {b * self.files_per_block} files, "
                f"{self.datasets * self.replicas_per_dataset} dataset replicas, "
                f"{b * self.replicas_per_dataset} block replicas, {self.sites} sites")


W10 = Scale()


def scaled(fraction: float) -> Scale:
    """W10 with ``fraction`` of its datasets (and so of blocks, files, replicas)."""
    return replace(W10, datasets=max(1, int(W10.datasets * fraction)),
                   sites=max(W10.replicas_per_dataset, min(W10.sites, int(W10.sites * fraction * 10) or 1)))


_PRIMARIES = ["DoubleMuon", "SingleElectron", "JetHT", "MET", "Tau", "Charmonium", "EGamma", "ZeroBias",
              "TTJets_SingleLeptFromT_TuneCP5", "DYJetsToLL_M-50_HT-100to200", "WJetsToLNu_Pt-250To400",
              "GluGluHToZZTo4L_M125", "QCD_Pt_1000to1400_TuneCP5", "ST_tW_top_5f_inclusiveDecays"]
_ERAS = ["Run2016B", "Run2016H", "Run2017C", "Run2017F", "Run2018A", "Run2018D", "RunIIFall17MiniAOD",
         "RunIISummer19UL18MiniAOD", "RunIIAutumn18NanoAODv7"]
_TIERS = ["MINIAOD", "AOD", "NANOAOD", "MINIAODSIM", "NANOAODSIM", "RAW", "GEN-SIM"]


def _dataset_name(rng: random.Random, i: int) -> str:
    primary = rng.choice(_PRIMARIES) + ("_13TeV-madgraphMLM-pythia8" if rng.random() < 0.5 else "")
    return (f"/{primary}/{rng.choice(_ERAS)}-{rng.choice(['31Mar2018', '17Sep2018', 'PU2017', '102X'])}"
            f"_realistic_v{rng.randrange(1, 30)}-v{i}/{rng.choice(_TIERS)}")


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def generate(scale: Scale, seed: int = 1) -> Inventory:
    """A deterministic image of the given scale, with ids, as if loaded from a store."""
    rng = random.Random(seed)
    builder = R.ImageBuilder()
    now = 1_700_000_000
    builder.groups((gid, f"group{gid:02d}", "Block") for gid in range(1, scale.groups + 1))
    builder.sites((sid, f"T{1 + sid % 3}_XX_Site{sid:03d}", f"se{sid:03d}.grid.example.org",
                   "mss" if sid % 10 == 0 else "disk", f"davs://se{sid:03d}.grid.example.org:2880/store", "ready")
                  for sid in range(1, scale.sites + 1))
    builder.partitions([(1, "Physics"), (2, "DataOps")])
    builder.site_partitions((sid, pid, 10**15) for sid in range(1, scale.sites + 1) for pid in (1, 2))

    names = [_dataset_name(rng, i) for i in range(1, scale.datasets + 1)]
    builder.datasets((i, names[i - 1], "valid", "production", "CMSSW_10_6_4", now - rng.randrange(10**8),
                      0) for i in range(1, scale.datasets + 1))

    blocks_rows: list[tuple[Any, ...]] = []
    block_id = file_id = 0
    per_dataset_blocks: list[list[int]] = []
    for did in range(1, scale.datasets + 1):
        dataset_dir = f"/store/{rng.choice(['mc', 'data'])}/{names[did - 1].strip('/').replace('/', '_')[:60]}"
        ids = []
        for _ in range(scale.blocks_per_dataset):
            block_id += 1
            entries = {}
            total = 0
            for _ in range(scale.files_per_block):
                file_id += 1
                size = rng.randrange(10**8, 4 * 10**9)
                total += size
                entries[f"{dataset_dir}/{rng.randrange(10000, 99999)}/{_uuid(rng).upper()}.root"] = \
                    FileEntry(size, f"adler32:{rng.getrandbits(32):08x}", file_id)
            blocks_rows.append((block_id, did, _uuid(rng), total, len(entries), 0, now - rng.randrange(10**8),
                                filetable.pack(entries)))
            ids.append(block_id)
        per_dataset_blocks.append(ids)
    builder.blocks(row[:7] for row in blocks_rows)
    builder.block_files((row[0], row[7]) for row in blocks_rows)
    del blocks_rows

    replica_rows = []
    for did in range(1, scale.datasets + 1):
        block_ids = per_dataset_blocks[did - 1]
        for sid in rng.sample(range(1, scale.sites + 1), scale.replicas_per_dataset):
            replica_rows.append((did, sid, 0, None, _pack_replicas(rng, builder, block_ids, scale, now)))
    builder.dataset_replicas(replica_rows)
    next_ids = {"site": scale.sites + 1, "group": scale.groups + 1, "partition": 3,
                "dataset": scale.datasets + 1, "block": block_id + 1, "file": file_id + 1}
    return builder.finish(0, next_ids)


def _pack_replicas(rng: random.Random, builder: R.ImageBuilder, block_ids: list[int], scale: Scale,
                   now: int) -> bytes:
    n = len(block_ids)
    incomplete = [rng.random() < scale.incomplete_fraction for _ in block_ids]
    tail = []
    for bid, partial in zip(block_ids, incomplete, strict=True):
        if partial:
            ids = filetable.ids(*builder.blocks_by_id[bid]._span())[: max(1, scale.files_per_block // 2)]
            tail.append(struct.pack(f"<I{len(ids)}q", len(ids), *ids))
    return b"".join((
        struct.pack("<BI", R.BR_VERSION, n),
        struct.pack(f"<{n}q", *block_ids),
        struct.pack(f"<{n}q", *(now - rng.randrange(10**7) for _ in block_ids)),
        struct.pack(f"<{n}i", *(rng.randrange(0, scale.groups + 1) for _ in block_ids)),
        bytes((2 if p else 0) | (rng.random() < 0.1) for p in incomplete),
        *tail,
    ))


# ---------------------------------------------------------------------------
# change sets
# ---------------------------------------------------------------------------

MIX = (("new_block_replica", 0.40), ("modify_block_replica", 0.20), ("delete_block_replica", 0.15),
       ("new_files", 0.10), ("modify_block", 0.10), ("modify_dataset", 0.05))


def change_records(inventory: Inventory, count: int, seed: int = 2) -> list[Record]:
    """``count`` valid records against ``inventory`` (unchanged), mixed per ``MIX``."""
    rng = random.Random(seed)
    datasets = list(inventory.datasets.values())
    sites = list(inventory.sites.values())
    groups = [g.name for g in inventory.groups.values()]
    used: set[Any] = set()
    records: list[Record] = []
    now = int(time.time())
    kinds, weights = zip(*MIX, strict=True)
    new_dataset = 0
    while len(records) < count:
        kind = rng.choices(kinds, weights)[0]
        dataset = rng.choice(datasets)
        block = rng.choice(list(dataset.blocks)) if len(dataset.blocks) else None
        if kind == "new_block_replica" and block is not None:
            site = rng.choice(sites)
            key = (dataset.name, block.name, site.name)
            if block.find_replica(site) is None and key not in used:
                used.add(key)
                records.append(encode(UPDATE, BlockReplica(block, site, rng.choice(groups), False, now)))
        elif kind in ("modify_block_replica", "delete_block_replica") and block is not None and block.replicas:
            replica = rng.choice(block.replicas)
            key = replica.key
            if key not in used:
                used.add(key)
                if kind == "delete_block_replica":
                    records.append(encode(DELETE, replica))
                else:
                    records.append(encode(UPDATE, BlockReplica(block, replica.site, rng.choice(groups),
                                                               replica.is_custodial, now, replica.lfns)))
        elif kind == "modify_block" and block is not None and ("block", block.full_name()) not in used:
            used.add(("block", block.full_name()))
            records.append(encode(UPDATE, Block(block.name, dataset.name, block.size, block.num_files,
                                                not block.is_open, now)))
        elif kind == "modify_dataset" and ("dataset", dataset.name) not in used:
            used.add(("dataset", dataset.name))
            records.append(encode(UPDATE, Dataset(dataset.name, rng.choice(list(DatasetStatus)),
                                                  dataset.data_type, dataset.software_version, now,
                                                  dataset.is_open)))
        elif kind == "new_files" and count - len(records) >= 11:  # a whole dataset or nothing
            records.extend(_new_dataset(rng, new_dataset, now, sites))
            new_dataset += 1
    return records


def _new_dataset(rng: random.Random, index: int, now: int, sites: list[Any]) -> Iterator[Record]:
    name = f"/NewPrimary{index}/Run2026A-PromptReco-v{rng.randrange(1, 9)}/AOD"
    yield encode(UPDATE, Dataset(name, "production", "production", "CMSSW_14_0_1", now, True))
    block = _uuid(rng)
    files = [(f"/store/data/Run2026A/NewPrimary{index}/AOD/PromptReco-v1/{_uuid(rng).upper()}.root",
              rng.randrange(10**8, 10**9)) for _ in range(8)]
    yield encode(UPDATE, Block(block, name, sum(s for _, s in files), len(files), True, now))
    for lfn, size in files:
        yield encode(UPDATE, File(lfn, f"{name}#{block}", size))
    yield encode(UPDATE, BlockReplica(f"{name}#{block}", rng.choice(sites).name, None, False, now))
