"""``WebModule``: what every class in ``export_web`` / ``export_data`` inherits from."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dynamo.dataformat.configuration import Configuration


class WebModule:
    """Construct with the ``Configuration`` of the web modules configuration file; implement
    ``run(caller, request, inventory)``. The attributes are the original's:

    * ``write_enabled``: the module changes the inventory (POST only; needs HTTPS);
    * ``must_authenticate``: only over HTTPS, for a registered user;
    * ``content_type`` / ``additional_headers``: of the response;
    * ``message``: the envelope's ``message``;
    * ``input_data``: a JSON body, decoded (a list or an object).

    ``required_role`` = (role, target) makes the server refuse (403) callers without it.
    ``uses_dynamod`` (and ``write_enabled``) give ``run`` a ``self.dynamod`` whose ``call(request)``
    sends a native-protocol request to dynamod as the caller (``dynamo.web.link``): how a module
    changes the inventory (through dynamod's writer queue) or reads the registry. A module that
    answers for another version than its worker's image (a write: the one it committed) sets
    ``inventory_version``.
    """

    required_role: tuple[str, str] | None = None
    uses_dynamod = False

    def __init__(self, config: Configuration):
        self.config = config
        self.write_enabled = False
        self.must_authenticate = False
        self.require_authorizer = False
        self.require_appmanager = False
        self.content_type = "application/json"
        self.additional_headers: list[tuple[str, str]] = []
        self.message = ""
        self.input_data: Any = None
        self.dynamod: Any = None
        self.inventory_version: int | None = None

    def run(self, caller: Any, request: dict[str, Any], inventory: Any) -> Any:
        raise NotImplementedError("run")


class Listing:
    """A large result, written to the client as it is produced rather than built whole:
    ``data`` is ``{key: [items...], **extra}`` (or the bare list when ``key`` is None).
    The items are computed lazily, so a module must check its parameters before returning
    one (an error after the first byte can no longer change the status)."""

    def __init__(self, items: Iterable[Any], key: str | None = None, extra: dict[str, Any] | None = None):
        self.items = items
        self.key = key
        self.extra = extra or {}
