"""The seed's "Adding Content" transcript, through dynamod and the real commands."""

from __future__ import annotations

from tests.e2e.conftest import EXAMPLES, Server

DS = "pandaf/010/DoubleMuon+Run2017F-31Mar2018-v1+MINIAOD"
SITES = ("{'T2_US_XYZ': Site('T2_US_XYZ','t2-storage.xyz.edu','disk','gsiftp://t2-storage.xyz.edu:2811/cms',"
         "'ready',1), 'T3_US_XYZ': Site('T3_US_XYZ','t3-storage.xyz.edu','disk',"
         "'srm://t3-storage.xyz.edu:8443/srm/v2/server?SFN=/mnt/hadoop/cms','ready',2)}")
DATASETS = f"{{'{DS}': Dataset('{DS}','production','unknown','pandaf/010',1528406008,True,1)}}"
BLOCKS = f"set([Block('48dbe0c6-36fa-11e8-a5e2-ac1f6b05e848','{DS}',165438,2,True,1528406008,1,False)])"


def inject_seed(server: Server) -> None:
    first = server.run(str(EXAMPLES / "mydynamo-storage-sites.json"), cmd="dynamo-inject")
    assert first.code == 0, first.err
    assert first.out.splitlines()[:2] == ["Number of injected objects:", "  sites: 2"]
    second = server.run(str(EXAMPLES / "mydynamo-initial-data.json"), cmd="dynamo-inject")
    assert second.code == 0, second.err
    assert "  datasets: 1\n  blocks: 1\n  files: 2\n  datasetreplicas: 1\n  blockreplicas: 1\n" in second.out


def test_adding_content(server: Server) -> None:
    inject_seed(server)
    shown = server.shell(f"inventory.sites\ninventory.datasets\ninventory.datasets['{DS}'].blocks\n")
    assert shown.code == 0, shown.err
    assert shown.out.splitlines() == [SITES, DATASETS, BLOCKS]


def test_the_inventory_survives_a_restart(server: Server) -> None:
    inject_seed(server)
    assert server.stop() == 0
    server.start()
    shown = server.shell(f"inventory.sites\ninventory.datasets['{DS}'].blocks\n")
    assert shown.out.splitlines() == [SITES, BLOCKS]
    assert "inventory loaded" in server.log() and "version 2" in server.log()


def test_shell_with_piped_input_and_errors(server: Server) -> None:
    shown = server.shell("x = 1 +\nprint(len(inventory.sites), read_only)\nexit(4)\nprint('never')\n")
    assert shown.code == 4
    assert shown.out == "0 True\n"
    assert "SyntaxError" in shown.err
