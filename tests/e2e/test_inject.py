"""dynamo-inject: documents from files and stdin, deletions, bad documents, large documents."""

from __future__ import annotations

import json

from tests.e2e.conftest import Server
from tests.e2e.test_seed_transcript import DS, inject_seed


def version(server: Server) -> str:
    return server.shell("print(len(inventory.sites), len(inventory.datasets))\n").out


def test_bad_documents_change_nothing(server: Server) -> None:
    inject_seed(server)
    before = version(server)
    for document, message in (
            ('{"site": [', "invalid JSON at line 1 column 11"),
            ('{"site": [{"name": "T4_X", "colour": "red"}]}', "site[0].colour: unknown key"),
            ('{"dataset": [{"name": "d", "blocks": [{"name": "b", "files": [{"name": "/f", "size": "12"}]}]}]}',
             "dataset[0].blocks[0].files[0].size: expected an integer, got a string"),
            (json.dumps({"site": [{"name": "T4_X"}], "datasetreplica": [{"dataset": DS, "site": "T9_NOWHERE"}]}),
             "datasetreplica[0].site: unknown site 'T9_NOWHERE'")):
        done = server.run("-", input=document, cmd="dynamo-inject")
        assert done.code == 65, done.err
        assert "invalid document, nothing changed" in done.err and message in done.err, done.err
    assert version(server) == before


def test_delete_document(server: Server) -> None:
    inject_seed(server)
    lfn = f"/store/user/paus/{DS}/6C7F843A-4837-E811-93AC-14187741208F.root"
    doc = {"dataset": [{"name": DS, "blocks": [{"name": "48dbe0c6-36fa-11e8-a5e2-ac1f6b05e848",
                                                  "files": [{"name": lfn}]}]}], "site": [{"name": "T3_US_XYZ"}]}
    path = server.home / "delete.json"
    path.write_text(json.dumps(doc))
    done = server.run("--delete", str(path), cmd="dynamo-inject")
    assert done.code == 0, done.err
    assert done.out.startswith("Number of deleted objects:\n  files: 1\n  sites: 1\n")
    shown = server.shell(f"b = next(iter(inventory.datasets['{DS}'].blocks))\nprint(b.num_files, b.size, "
                         "sorted(inventory.sites))\n")
    assert shown.out == "1 107943 ['T2_US_XYZ']\n"
    missing = server.run("--delete", "-", input='{"site": [{"name": "T3_US_XYZ"}]}', cmd="dynamo-inject")
    assert missing.code == 65 and "site[0].name: unknown site 'T3_US_XYZ'" in missing.err


def test_large_document_shows_progress(server: Server) -> None:
    files = [{"name": f"/store/data/Big/RAW/{i:07d}/{'A' * 60}.root", "size": 1000 + i} for i in range(60000)]
    doc = {"site": [{"name": "T1_BIG"}],
           "dataset": [{"name": "/Big/Run/RAW", "blocks": [{"name": f"b{n}", "files": files[n::6]} for n in range(6)]}],
           "datasetreplica": [{"dataset": "/Big/Run/RAW", "site": "T1_BIG",
                               "blockreplicas": [{"block": f"b{n}"} for n in range(6)]}]}
    path = server.home / "big.json"
    path.write_text(json.dumps(doc))
    assert path.stat().st_size > 5 << 20
    done = server.run(str(path), cmd="dynamo-inject")
    assert done.code == 0, done.err
    assert "dynamo-inject: sent" in done.err and "(100 %)" in done.err
    assert "  files: 60000\n" in done.out
    shown = server.shell("print(sum(b.num_files for b in inventory.datasets['/Big/Run/RAW'].blocks))\n")
    assert shown.out == "60000\n"
