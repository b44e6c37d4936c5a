"""``HTMLMixin``: a common header (navigation), footer, styles and scripts for ``/web`` pages.

Everything a page needs is inline: the pages work on a machine with no network access and
cost one request each. As in the original, a class lists ``HTMLMixin`` after ``WebModule``
and calls ``HTMLMixin.__init__(self, title, body)``; ``form_html(repl)`` fills ``{NAME}``
fields of the body and wraps it.
"""

from __future__ import annotations

import html
from typing import Any

STYLE = """
body { font-family: system-ui, sans-serif; margin: 0; color: #222; background: #fafafa; }
header { background: #234; color: #fff; padding: 0.5em 1em; }
header a { color: #cde; margin-right: 1.2em; text-decoration: none; }
header .title { font-weight: bold; margin-right: 2em; color: #fff; }
main { padding: 1em; }
table { border-collapse: collapse; margin: 0.5em 0; background: #fff; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }
th { background: #e8eef4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
footer { color: #777; font-size: small; padding: 1em; border-top: 1px solid #ddd; }
form.filter input { margin-right: 0.5em; }
.pager a { margin-right: 1em; }
svg text { font-size: 11px; font-family: system-ui, sans-serif; }
"""

SCRIPT = """
function dynamoFormatBytes(n) {
  var units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
  var i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return n.toFixed(i ? 1 : 0) + ' ' + units[i];
}
"""

NAV = (("/web/inventory/sites", "Sites"), ("/web/inventory/datasets", "Datasets"),
       ("/web/inventory/stats", "Statistics"), ("/data/server/status", "Status (JSON)"))


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


class HTMLMixin:
    def __init__(self, title: str, body_html: str = ""):
        # after WebModule.__init__, so that the content type is HTML
        self.content_type = "text/html; charset=utf-8"
        self.title = title
        self.stylesheets: list[str] | None = None
        self.header_stylesheet: str | None = None
        self.scripts: list[str] | None = None
        self.header_script: str | None = None
        self.titleblock: str | None = None
        self.body_html = body_html
        self.footer_note = ""

    def header_html(self) -> str:
        links = "".join(f'<a href="{href}">{esc(text)}</a>' for href, text in NAV)
        extra_css = "".join(f'<link href="{esc(p)}" rel="stylesheet">' for p in self.stylesheets or ())
        extra_js = "".join(f'<script src="{esc(p)}"></script>' for p in self.scripts or ())
        own_css = f"<style>{self.header_stylesheet}</style>" if self.header_stylesheet else ""
        own_js = f"<script>{self.header_script}</script>" if self.header_script else ""
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{esc(self.title)}</title><style>{STYLE}</style>{extra_css}{own_css}"
                f"<script>{SCRIPT}</script>{extra_js}{own_js}</head>\n<body>"
                f"<header><span class=\"title\">Dynamo</span>{links}</header>\n<main>"
                f"<h1>{esc(self.title)}</h1>{self.titleblock or ''}\n")

    def footer_html(self) -> str:
        return f"</main><footer>Dynamo inventory. {esc(self.footer_note)}</footer></body></html>\n"

    def form_html(self, repl: dict[str, str] | None = None) -> str:
        body = self.body_html
        for key, value in (repl or {}).items():
            body = body.replace("{" + key + "}", value)
        return self.header_html() + body + self.footer_html()
