"""The process title that ps and top show (dynamod's phases, each application's kind, id and title)."""

from __future__ import annotations


def set_title(title: str) -> None:
    try:
        import setproctitle
    except ImportError:  # optional at run time: titles are a convenience
        return
    setproctitle.setproctitle(title)
