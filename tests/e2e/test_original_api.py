# ruff: noqa: E501, UP031  -- the applications are the original's code: its long lines and %-formatting stay
"""Applications written for the original Dynamo, run against dynamod (issue 9).

The scripts below use the original's names the way its own scripts do (``utilities/set_quota.py``
ported to Python 3 with print() and items() as the only changes, an inventory report, block
replica and file listings, a write application injecting and deleting through the object API).
Expected values are computed with the original's formulas (its set_quota.py arithmetic, its
``occupancy_fraction``, its BlockReplica file bookkeeping), read from its source.
"""

from __future__ import annotations

import sys

from tests.e2e.conftest import Server
from tests.e2e.test_seed_transcript import DS, inject_seed

BLOCK = "48dbe0c6-36fa-11e8-a5e2-ac1f6b05e848"
SEED_SIZE = 165438
T3_SRM = "srm://t3-storage.xyz.edu:8443/srm/v2/server?SFN=/mnt/hadoop/cms"

SETUP = """
from dynamo.core.executable import inventory, authorized
from dynamo.dataformat import Group, Partition, SitePartition

assert authorized
inventory.update(Group('AnalysisOps'))
inventory.update(Group('DataOps'))
inventory.update(Partition('AllDisk'))
inventory.update(Partition('Physics', condition='blockreplica.owner == AnalysisOps', parent='AllDisk'))
inventory.update(Partition('DataOps', condition='blockreplica.owner == DataOps', parent='AllDisk'))
site = inventory.sites['T2_US_XYZ']
# the original's quota tool computes volume * 1.e12: integral floats are bytes
inventory.update(SitePartition(site, inventory.partitions['Physics'], 100 * 1.e12))
inventory.update(SitePartition(site, inventory.partitions['DataOps'], 50 * 1.e12))
t3 = inventory.sites['T3_US_XYZ']
t3.filename_mapping = {'srmv2': [[('/store/(.*)', '%s/store/{0}')]]}
t3.x509proxy = '/tmp/x509up_u500'
inventory.register_update(t3)
replica = inventory.datasets['%s'].find_block('%s').find_replica('T2_US_XYZ')
replica.group = inventory.groups['AnalysisOps']
inventory.register_update(replica)
""" % (T3_SRM, DS, BLOCK)

# utilities/set_quota.py of the original, with print() and dict.items() for Python 3
SET_QUOTA = '''
import sys
import re
import fnmatch

from dynamo.dataformat import SitePartition

def update_quota(site_partition, new_quota, changed):
    site = site_partition.site
    partition = site_partition.partition

    if partition.subpartitions is not None:
        if site_partition.quota == 0:
            sys.stderr.write('Quota for %s at %s is 0. Please set the subpartition quotas first.\\n' % (site.name, partition.name))
            sys.exit(1)
        for subp in partition.subpartitions:
            site_subp = site.partitions[subp]
            sub_quota = int(float(site_subp.quota) / site_partition.quota * new_quota)
            update_quota(site_subp, sub_quota, changed)
    else:
        clone = SitePartition(site, partition, new_quota)
        changed.append(clone)

if __name__ == '__main__':
    from argparse import ArgumentParser
    parser = ArgumentParser()
    parser.add_argument('--site', '-s', dest = 'site', nargs='+')
    parser.add_argument('--partition', '-g', dest = 'partition')
    parser.add_argument('--volume', '-v', dest = 'volume', type = int)
    parser.add_argument('--scale', '-c', dest = 'scale', type = float)
    parser.add_argument('--adjust-other', '-a', action = 'store_true', dest = 'adjust_other')
    args = parser.parse_args()
    sys.argv = []

    from dynamo.core.executable import inventory

    if args.partition is not None and args.partition not in inventory.partitions:
        sys.stderr.write("Invalid partition name %s.\\n" % args.partition)
        sys.exit(2)

    site_names = []
    for pattern in args.site:
        regex = re.compile(fnmatch.translate(pattern))
        for site in inventory.sites.keys():
            if regex.match(site) and site not in site_names:
                site_names.append(site)

    print("Current quota")
    for site_name in site_names:
        site = inventory.sites[site_name]
        partition = inventory.partitions[args.partition]
        print("Site %16s | Partition %10s | Quota %6i TB" % (site.name, partition.name, site.partitions[partition].quota * 1.e-12))

    for sitetmp in site_names:
        changed = []
        site = inventory.sites[sitetmp]
        partition = inventory.partitions[args.partition]
        site_partition = site.partitions[partition]
        if args.scale:
            args.volume = int(site_partition.quota * args.scale * 1.e-12)
        new_quota = args.volume * 1.e+12

        if partition.parent is not None and args.adjust_other:
            others_total_new = site.partitions[partition.parent].quota - new_quota
            others_total_current = 0
            for subp in partition.parent.subpartitions:
                if subp is not partition:
                    others_total_current += site.partitions[subp].quota
            for subp in partition.parent.subpartitions:
                if subp is not partition:
                    site_subp = site.partitions[subp]
                    new_subp_quota = int(float(site_subp.quota) / others_total_current * others_total_new)
                    update_quota(site_subp, new_subp_quota, changed)

        update_quota(site_partition, new_quota, changed)

        print("Quota changes")
        for sp in changed:
            part = inventory.partitions[sp.partition.name]
            print("Site %16s | Partition %10s | Quota %6i -> %6i TB" % (site.name, part.name, site.partitions[part].quota * 1.e-12, sp.quota * 1.e-12))
            inventory.update(sp)
        print("Done.")
'''

REPORT = """
from dynamo.core.executable import inventory, authorized, make_standard_logger
from dynamo.dataformat import Configuration, Dataset, Site

LOG = make_standard_logger('warning')
config = Configuration({'report': {'sites': ['T2_US_XYZ', 'T3_US_XYZ']}})
print('authorized', authorized)
for name in config.report.sites:
    site = inventory.sites[name]
    print(site.name, Site.status_name(site.status), Site.storage_type_name(site.storage_type),
          site.status == Site.STAT_READY, site.storage_type == Site.TYPE_DISK, site.x509proxy)
    for partition_name in sorted(inventory.partitions):
        sp = site.partitions[inventory.partitions[partition_name]]
        print(' ', partition_name, sp.quota, '%.6e' % sp.occupancy_fraction())
    for replica in site.dataset_replicas():
        dataset = replica.dataset
        print(' ', dataset.name, Dataset.status_name(dataset.status), Dataset.data_type_name(dataset.data_type),
              dataset.status == Dataset.STAT_PRODUCTION, replica.size(), replica.size(physical=False))
"""

LISTING = """
from dynamo.core.executable import inventory
from dynamo.dataformat import Block, File

t3 = inventory.sites['T3_US_XYZ']
for dataset in inventory.datasets.values():
    for block in dataset.blocks:
        print(block.full_name(), block.real_name(), Block.from_full_name(block.full_name()) == (dataset.name, block.name))
        for replica in block.replicas:
            print(' ', replica.site.name, replica.group.name, replica.file_ids, replica.is_complete(),
                  len(replica.files()), replica.num_files)
        for lfile in sorted(block.files, key=lambda f: f.lfn):
            print(' ', lfile.lfn, lfile.size, lfile.checksum, t3.to_pfn(lfile.lfn, 'srmv2'), t3.to_pfn(lfile.lfn, 'xrootd'))
print(File.checksum_algorithms)
"""

WRITER = """
from dynamo.core.executable import inventory, authorized
from dynamo.dataformat import Block, BlockReplica, Dataset, DatasetReplica, File, Group, Site

assert authorized
dataset = Dataset('/A/B/C', Dataset.STAT_VALID, Dataset.TYPE_PRODUCTION).embed_into(inventory)
dataset.attr['note'] = 'kept only in this process'
block = Block(Block.to_internal_name('b1'), dataset, 300, 3).embed_into(inventory)
files = [inventory.update(File('/store/a/%d.root' % i, block, 100, ('0000000%d' % i, None, None))) for i in (1, 2, 3)]
site = inventory.sites['T3_US_XYZ']
inventory.update(DatasetReplica(dataset, site))
# the original's positional form: (block, site, group, is_custodial, size, last_update, file_ids)
replica = inventory.update(BlockReplica(block, site, inventory.groups['DataOps'], False, 200, 7,
                                        ['/store/a/1.root', '/store/a/2.root']))
# file_ids: the ids of the files held (an LFN for a file with no id yet), as in the original
print('partial', replica.file_ids == tuple(f.id or f.lfn for f in files[:2]), replica.has_file(files[2]))
replica.add_file(files[2])
print('complete after add', replica.is_complete())
inventory.register_update(replica)
print('deleted', replica.delete_file(files[0]), replica.delete_file(files[0]))
inventory.update(replica)
inventory.delete(files[1])
block.num_files, block.size = 2, 200
inventory.update(block)
seed = inventory.datasets['@DS@'].find_block('@BLOCK@').find_replica('T2_US_XYZ')
print('unlinked', seed.unlink_from(inventory) is not None, BlockReplica(seed.block, 'T3_US_XYZ').unlink_from(inventory))
Group('DataOps').unlink_from(inventory)
inventory.update(Site('T9_NEW'))
print('made', inventory.make_object(repr(block)) == block, inventory.find_file('/store/a/3.root').block.full_name())
""".replace("@DS@", DS).replace("@BLOCK@", BLOCK)

CHECK = """
ds = inventory.datasets['/A/B/C']
r = ds.find_replica('T3_US_XYZ').find_block_replica('b1')
print(r.lfns, r.group_name, r.last_update, sorted(ds.find_block('b1').file_names()), ds.status, ds.data_type)
print(ds.find_block('b1').find_file('/store/a/3.root').checksum)
print(inventory.datasets['{DS}'].replicas, inventory.sites['T9_NEW'].status, 'DataOps' in inventory.groups)
print(sorted((p.name, sp.quota) for p, sp in inventory.sites['T2_US_XYZ'].partitions.items()))
print(inventory.sites['T3_US_XYZ'].filename_mapping, inventory.sites['T3_US_XYZ'].x509proxy)
"""


def _authorize_and_run(server: Server, name: str, body: str, *args: str) -> str:
    script = server.script(name, body)
    done = server.run("--executable", str(script), "--title", name, cmd="dynamo-exec-auth")
    assert done.code == 0, done.err
    command = " ".join([str(script), *args])
    ran = server.run(command, "--write-request", "--title", name)
    assert ran.code == 0, ran.err
    return ran.out


def _setup(server: Server) -> None:
    inject_seed(server)
    _authorize_and_run(server, "setup.py", SETUP)


def _quota_line(site: str, partition: str, quota: float) -> str:
    return "Site %16s | Partition %10s | Quota %6i TB" % (site, partition, quota * 1.e-12)


def _change_line(site: str, partition: str, old: float, new: float) -> str:
    return "Site %16s | Partition %10s | Quota %6i -> %6i TB" % (site, partition, old * 1.e-12, new * 1.e-12)


def test_the_original_quota_tool_scales_a_superpartition(server: Server) -> None:
    _setup(server)
    out = _authorize_and_run(server, "set_quota.py", SET_QUOTA, "--volume", "300", "--site", "T2_*",
                             "--partition", "AllDisk")
    physics, dataops = 100 * 1.e12, 50 * 1.e12
    total = physics + dataops  # the superpartition's quota: the sum over its subpartitions
    new_physics = int(float(physics) / total * (300 * 1.e12))
    new_dataops = int(float(dataops) / total * (300 * 1.e12))
    assert out.splitlines()[:5] == [
        "Current quota", _quota_line("T2_US_XYZ", "AllDisk", total), "Quota changes",
        _change_line("T2_US_XYZ", "Physics", physics, new_physics),
        _change_line("T2_US_XYZ", "DataOps", dataops, new_dataops)]
    shown = server.shell("print(sorted((p.name, sp.quota) for p, sp in inventory.sites['T2_US_XYZ'].partitions.items()))\n"
                         "print(inventory.sites['T2_US_XYZ'].partitions[inventory.partitions['AllDisk']].quota)\n")
    assert shown.out == f"[('DataOps', {new_dataops}), ('Physics', {new_physics})]\n{new_physics + new_dataops}\n"


def test_the_quota_tool_adjusts_the_other_subpartitions(server: Server) -> None:
    _setup(server)
    out = _authorize_and_run(server, "set_quota.py", SET_QUOTA, "--volume", "120", "--site", "T2_US_XYZ",
                             "--partition", "Physics", "--adjust-other")
    others_new = (100 * 1.e12 + 50 * 1.e12) - 120 * 1.e12
    new_dataops = int(float(50 * 1.e12) / (50 * 1.e12) * others_new)
    assert _change_line("T2_US_XYZ", "DataOps", 50 * 1.e12, new_dataops) in out.splitlines()
    shown = server.shell("print(inventory.sites['T2_US_XYZ'].partitions['Physics'].quota, "
                         "inventory.sites['T2_US_XYZ'].partitions['DataOps'].quota)\n")
    assert shown.out == f"{int(120 * 1.e12)} {new_dataops}\n"


def test_an_inventory_report(server: Server) -> None:
    _setup(server)
    done = server.run(str(server.script("report.py", REPORT)))
    assert done.code == 0, done.err
    # occupancy_fraction = bytes of member block replicas / quota; quota 0 -> sys.float_info.max
    lines = [
        "authorized False",
        "T2_US_XYZ ready disk True True None",
        "  AllDisk %d %.6e" % (150 * 10**12, SEED_SIZE / (150 * 10**12)),
        "  DataOps %d %.6e" % (50 * 10**12, 0.0),
        "  Physics %d %.6e" % (100 * 10**12, SEED_SIZE / (100 * 10**12)),
        f"  {DS} production unknown True {SEED_SIZE} {SEED_SIZE}",
        "T3_US_XYZ ready disk True True /tmp/x509up_u500",
    ] + [f"  {name} 0 {sys.float_info.max:.6e}" for name in ("AllDisk", "DataOps", "Physics")]
    assert done.out.splitlines() == lines


def test_block_replica_and_file_listings(server: Server) -> None:
    _setup(server)
    done = server.run(str(server.script("listing.py", LISTING)))
    assert done.code == 0, done.err
    lfns = ["/store/user/paus/pandaf/010/DoubleMuon+Run2017F-31Mar2018-v1+MINIAOD/6C7F843A-4837-E811-93AC-14187741208F.root",
            "/store/user/paus/pandaf/010/DoubleMuon+Run2017F-31Mar2018-v1+MINIAOD/6EABBD4C-2E37-E811-AB8D-1866DAEA7F94.root"]
    assert done.out.splitlines() == [
        f"{DS}#{BLOCK} {BLOCK} True",
        "  T2_US_XYZ AnalysisOps None True 2 2",
        f"  {lfns[0]} 57495 (None, None, None) {T3_SRM}{lfns[0]} None",
        f"  {lfns[1]} 107943 (None, None, None) {T3_SRM}{lfns[1]} None",
        "('adler32', 'cksum', 'md5')",
    ]


def test_injections_and_deletions_through_the_object_api(server: Server) -> None:
    _setup(server)
    out = _authorize_and_run(server, "writer.py", WRITER)
    assert out.splitlines()[:5] == [
        "partial True False",
        "complete after add True",
        "deleted True False",
        "unlinked True None",
        "made True /A/B/C#b1",
    ]
    shown = server.shell(CHECK.replace("{DS}", DS))
    assert shown.code == 0, shown.err
    assert shown.out.splitlines() == [
        "('/store/a/3.root',) None 7 ['/store/a/1.root', '/store/a/3.root'] valid production",
        "('00000003', None, None)",
        "set([]) unknown False",
        f"[('DataOps', {50 * 10**12}), ('Physics', {100 * 10**12})]",
        f"{{'srmv2': [[('/store/(.*)', '{T3_SRM}/store/{{0}}')]]}} /tmp/x509up_u500",
    ]


def test_dynamo_inject_builder_options(server: Server) -> None:
    inject_seed(server)
    steps = [
        ["--site", "T9_XX_NEW,se.new.org,disk,gsiftp://se.new.org/cms,ready"],
        ["--group", "Higgs,dataset"],
        ["--dataset", "/X/Y/Z,valid,production", "--block", "b1", "--file", "/store/x/1.root,10", "/store/x/2.root,20"],
        ["--dataset-replica", "T9_XX_NEW:/X/Y/Z,Higgs", "--block-replica", "b1,Higgs",
         "--block-replica-file", "/store/x/2.root"],
    ]
    for args in steps:
        done = server.run(*args, cmd="dynamo-inject")
        assert done.code == 0, done.err
        assert done.out.startswith("Number of injected objects:")
    shown = server.shell("print(inventory.sites['T9_XX_NEW'], inventory.groups['Higgs'])\n"
                         "print(inventory.datasets['/X/Y/Z'], inventory.datasets['/X/Y/Z'].blocks)\n"
                         "print(inventory.sites['T9_XX_NEW'].find_dataset_replica('/X/Y/Z').block_replicas)\n")
    assert shown.code == 0, shown.err
    lines = shown.out.splitlines()
    assert lines[0] == "Site('T9_XX_NEW','se.new.org','disk','gsiftp://se.new.org/cms','ready',3) Group('Higgs','Dataset',1)"
    assert lines[1].startswith("Dataset('/X/Y/Z','valid','production',None,") and "Block('b1','/X/Y/Z',30,2," in lines[1]
    assert lines[2].startswith("set([BlockReplica('/X/Y/Z#b1','T9_XX_NEW','Higgs',False,") and \
        lines[2].endswith(",('/store/x/2.root',))])")
    gone = server.run("--delete", "--dataset-replica", "T9_XX_NEW:/X/Y/Z", cmd="dynamo-inject")
    assert gone.code == 0, gone.err
    assert server.shell("print(inventory.datasets['/X/Y/Z'].replicas)\n").out == "set([])\n"
    both = server.run(str(server.home / "x.json"), "--site", "S", cmd="dynamo-inject")
    assert both.code != 0 and "not both" in both.err
    bad = server.run("--file", "/f,1", cmd="dynamo-inject")
    assert bad.code != 0 and "--block and --file need --dataset" in bad.err
