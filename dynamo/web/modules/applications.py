"""``/data/applications/...``: the application registry, asked of dynamod as the caller.

* ``list`` — applications, oldest first: by default the active ones (queued, running, applying);
  with ``all=y`` every one, newest page first (``offset``: how many newer ones to skip, ``limit``:
  how many, default 100, at most 10,000). A row is the native ``dynamo --list`` row: all of it
  for the caller's own applications and for administrators (role ``admin`` on ``application``),
  only the status line (id, title, user, status, times, exit code, message, version) for others.
* ``output?id=N`` — the application's record and the end of its standard output and error
  (``stdout``, ``stderr``), for its owner and administrators only: anybody else gets 403.

Both need a registered caller (HTTPS): the native protocol knows no anonymous user, and the web
asks dynamod exactly as ``dynamo --list`` / ``dynamo --poll`` do, so the rules are theirs,
checked by dynamod against the registry (``dynamo.web.link``).
"""

from __future__ import annotations

from typing import Any

from dynamo.appserver.handlers import PUBLIC_FIELDS
from dynamo.web.errors import AuthorizationError, MissingParameter
from dynamo.web.modules._base import WebModule
from dynamo.web.modules._common import integer, yesno

MAX_LIST = 10_000


class _Registry(WebModule):
    uses_dynamod = True

    def __init__(self, config: Any):
        super().__init__(config)
        self.must_authenticate = True


class ListApplications(_Registry):
    def run(self, caller: Any, request: dict[str, Any], inventory: Any) -> Any:
        show_all = yesno(request, "all")
        offset = integer(request, "offset", 0) or 0
        limit = integer(request, "limit", 100, 1, MAX_LIST) or 100
        if show_all:
            rows = self.dynamod.call({"op": "list", "all": True, "limit": limit, "offset": offset})
        else:  # the active ones are few: all of them come, and are paged here
            rows = self.dynamod.call({"op": "list"})[offset:offset + limit]
        return {"application": rows, "offset": offset, "limit": limit}


class ApplicationOutput(_Registry):
    def run(self, caller: Any, request: dict[str, Any], inventory: Any) -> Any:
        app_id = integer(request, "id", None, 1)
        if app_id is None:
            raise MissingParameter("id")
        found = self.dynamod.call({"op": "poll", "id": app_id})
        if not set(found) - PUBLIC_FIELDS:  # dynamod gave the status line only: not the caller's to read
            raise AuthorizationError(f"application {app_id} belongs to {found.get('user')!r}: its output is for "
                                     "its owner and administrators (role admin on application)")
        found.pop("work_area", None)  # a path inside the server: of no use to a web client
        found.setdefault("stdout", "")
        found.setdefault("stderr", "")
        return found


export_data = {"list": ListApplications, "output": ApplicationOutput}
