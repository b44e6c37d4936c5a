"""The original's web writes: ``inject``/``injectsync`` and ``delete``/``deletesync`` (POST, HTTPS, role
``admin`` on ``inventory``).

The body is the document ``dynamo-inject`` takes (``docs/inject-format.md``; with ``delete``, a
delete document). The worker does not apply it: it sends it to dynamod as the caller, over the
web workers' link (``dynamo.web.link``), as an ordinary native ``inject`` request, so it goes
through the same rights check (against the registry, not the worker's copy of it), the same
document parser and the same writer queue as ``dynamo-inject``, and the answer comes once the
change set is committed (or refused: then nothing changed). Its web generation is replaced
before the answer is sent, so a read that follows sees the new version.

The answer is the original's: ``data`` the counts of objects per type (``{"datasets": 1, "files":
3, ...}``), ``message`` "Data is injected." / "Data is deleted.", and the envelope's
``inventory_version`` the version the change set was committed as.

Unlike the original, ``inject`` and ``delete`` are not asynchronous: the original queued them in
a registry table for its updater to apply later (and answered before anything was checked);
here every write is applied in dynamod's writer queue in order, so both forms answer after the
commit, with its version, and a refused document is a 400 at once.
"""

from __future__ import annotations

import json
from typing import Any

from dynamo.web.errors import IllFormedRequest
from dynamo.web.modules._base import WebModule


class _Write(WebModule):
    delete = False

    def __init__(self, config: Any):
        super().__init__(config)
        self.must_authenticate = True
        self.write_enabled = True

    def run(self, caller: Any, request: dict[str, Any], inventory: Any) -> Any:
        document = self.input_data
        if not isinstance(document, dict):
            # the original's check; a form or an empty body has no document
            raise IllFormedRequest("input", type(document).__name__, "the body must be a JSON object (the document)")
        text = json.dumps(document)
        data = self.dynamod.call({"op": "inject", "delete": self.delete, "size": len(text)}, text)
        self.inventory_version = int(data["version"])
        self.message = "Data is deleted." if self.delete else "Data is injected."
        return dict(data.get("counts", {}))


class InjectData(_Write):
    pass


class DeleteData(_Write):
    delete = True


export_data = {
    "inject": InjectData,
    "injectsync": InjectData,
    "delete": DeleteData,
    "deletesync": DeleteData,
}
