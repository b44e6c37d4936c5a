"""``/web/inventory/...``: plain pages to browse sites, datasets and replicas, and statistics.

Each page is one request with everything inline; long tables are paged (``offset``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from dynamo.dataformat import Dataset, Site
from dynamo.web.errors import NotFound
from dynamo.web.modules._base import WebModule
from dynamo.web.modules._common import integer, one, required, select, yesno
from dynamo.web.modules._html import HTMLMixin, esc
from dynamo.web.modules.inventory.charts import key_order, stacked_bars
from dynamo.web.modules.inventory.stats import CATEGORIES, usage_by_site

PAGE = 100
TB = 1.e-12


def tb(n: float) -> str:
    return f"{n * TB:.3f}"


def table(headers: list[str], rows: list[list[str]], numeric: tuple[int, ...] = ()) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(row)) + "</tr>\n" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table>\n"


def link(path: str, **params: str) -> str:
    return esc(path + "?" + urlencode(params))


def pager(path: str, offset: int, shown: int, total: int, **params: str) -> str:
    parts = [f"<p class=\"pager\">{offset + 1 if shown else 0}&ndash;{offset + shown} of {total}. "]
    if offset > 0:
        parts.append(f'<a href="{link(path, offset=str(max(0, offset - PAGE)), **params)}">previous</a>')
    if offset + shown < total:
        parts.append(f'<a href="{link(path, offset=str(offset + PAGE), **params)}">next</a>')
    return "".join(parts) + "</p>"


class _Page(WebModule, HTMLMixin):
    title = "Dynamo"

    def __init__(self, config: Any):
        WebModule.__init__(self, config)
        HTMLMixin.__init__(self, self.title)

    def render(self, body: str, inventory: Any) -> str:
        self.body_html = body
        self.footer_note = f"Inventory version {inventory.version}."
        return self.form_html()


def site_link(name: str) -> str:
    return f'<a href="{link("/web/inventory/site", name=name)}">{esc(name)}</a>'


def dataset_link(name: str) -> str:
    return f'<a href="{link("/web/inventory/dataset", name=name)}">{esc(name)}</a>'


class SitesPage(_Page):
    title = "Sites"

    def run(self, caller: Any, request: dict[str, Any], inventory: Any) -> Any:
        rows = []
        for name in sorted(inventory.sites):
            site = inventory.sites[name]
            used = sum(br.size for br in site.block_replicas())
            rows.append([site_link(name), esc(site.host), esc(Site.storage_type_name(site.storage_type)),
                         esc(Site.status_name(site.status)), str(site.num_dataset_replicas()), tb(used)])
        body = table(["Site", "Host", "Storage", "Status", "Dataset replicas", "Used (TB)"], rows, (4, 5))
        return self.render(f'<p id="count">{len(rows)} sites.</p>' + body, inventory)


class SitePage(_Page):
    title = "Site"

    def run(self, caller: Any, request: dict[str, Any], inventory: Any) -> Any:
        name = required(request, "name")
        offset = integer(request, "offset", 0) or 0
        site = inventory.sites.get(name)
        if site is None:
            raise NotFound(f"no site {name}")
        self.title = f"Site {name}"
        replicas = sorted(site.dataset_replicas(), key=lambda r: r.dataset_name)
        shown = replicas[offset:offset + PAGE]
        rows = [[dataset_link(r.dataset_name), esc(r.group.name or "(no group)"),
                 "yes" if r.is_complete() else "no", str(len(r.block_replicas)), tb(r.size())] for r in shown]
        info = (f"<p>Host {esc(site.host)}, storage {esc(Site.storage_type_name(site.storage_type))}, "
                f"status {esc(Site.status_name(site.status))}, backend {esc(site.backend)}.</p>")
        quotas = [[esc(p), tb(max(sp.quota, 0))] for p, sp in sorted((sp.partition_name, sp)
                                                                    for sp in site.partitions.values())]
        body = (info + "<h2>Quotas</h2>" + table(["Partition", "Quota (TB)"], quotas, (1,))
                + "<h2>Dataset replicas</h2>" + pager("/web/inventory/site", offset, len(shown), len(replicas),
                                                       name=name)
                + table(["Dataset", "Group", "Complete", "Blocks", "Size (TB)"], rows, (3, 4)))
        return self.render(body, inventory)


class DatasetsPage(_Page):
    title = "Datasets"

    def run(self, caller: Any, request: dict[str, Any], inventory: Any) -> Any:
        pattern = one(request, "dataset") or "*"
        offset = integer(request, "offset", 0) or 0
        names = select(inventory.datasets, pattern)
        shown = names[offset:offset + PAGE]
        rows = []
        for name in shown:
            d = inventory.datasets[name]
            rows.append([dataset_link(name), esc(Dataset.status_name(d.status)),
                         esc(Dataset.data_type_name(d.data_type)), str(d.num_files), tb(d.size), str(len(d.replicas))])
        form = ('<form class="filter" method="get" action="/web/inventory/datasets">Name (with * wildcards): '
                f'<input type="text" name="dataset" value="{esc(pattern)}" size="60"><input type="submit" '
                'value="List"></form>')
        body = (form + pager("/web/inventory/datasets", offset, len(shown), len(names), dataset=pattern)
                + table(["Dataset", "Status", "Type", "Files", "Size (TB)", "Replicas"], rows, (3, 4, 5)))
        return self.render(body, inventory)


class DatasetPage(_Page):
    title = "Dataset"

    def run(self, caller: Any, request: dict[str, Any], inventory: Any) -> Any:
        name = required(request, "name")
        d = inventory.datasets.get(name)
        if d is None:
            raise NotFound(f"no dataset {name}")
        self.title = f"Dataset {name}"
        info = (f"<p>Status {esc(Dataset.status_name(d.status))}, type {esc(Dataset.data_type_name(d.data_type))}, "
                f"software {esc(d.software_version)}, {d.num_files} files, {tb(d.size)} TB, "
                f"{'open' if d.is_open else 'closed'}. "
                f'<a href="/data/inventory/blockreplicas?dataset={quote(name, safe="")}">block replicas (JSON)</a></p>')
        blocks = sorted(d.blocks, key=lambda b: b.real_name())
        block_rows = [[esc(b.real_name()), str(b.num_files), tb(b.size), "yes" if b.is_open else "no",
                       str(len(b.replicas))] for b in blocks[:PAGE * 10]]
        replica_rows = [[site_link(r.site_name), esc(r.group.name or "(no group)"),
                         "yes" if r.is_complete() else "no", f"{len(r.block_replicas)} / {len(blocks)}", tb(r.size())]
                        for r in sorted(d.replicas, key=lambda r: r.site_name)]
        body = (info + "<h2>Replicas</h2>" + table(["Site", "Group", "Complete", "Blocks", "Size (TB)"],
                                                     replica_rows, (4,))
                + f"<h2>Blocks ({len(blocks)})</h2>" + table(["Block", "Files", "Size (TB)", "Open", "Replicas"],
                                                             block_rows, (1, 2, 4)))
        return self.render(body, inventory)


class StatsPage(_Page):
    """Usage per site, stacked by the chosen category (group by default), and the totals per
    category: the original's statistics page, with the plots drawn as SVG on the server."""

    title = "Inventory statistics"

    def run(self, caller: Any, request: dict[str, Any], inventory: Any) -> Any:
        params = dict(request)
        params.setdefault("list_by", "group")
        physical = yesno(params, "physical", True)
        content, keys = usage_by_site(params, inventory)
        label = {k: "(no group)" if k is None else str(k) for k in keys}
        rows = [(c["site"], [(label[u["key"]], u["size"]) for u in c["usage"]]) for c in content]
        totals: dict[str, float] = {}
        for _, parts in rows:
            for key, value in parts:
                totals[key] = totals.get(key, 0.) + value
        by_key = [(k, [(k, v)]) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])]
        title = CATEGORIES[str(params["list_by"])][0]
        options = "".join(f'<option value="{esc(n)}"{" selected" if n == params["list_by"] else ""}>{esc(t)}</option>'
                          for n, (t, _, _) in CATEGORIES.items())
        form = ('<form class="filter" method="get" action="/web/inventory/stats">Split by '
                f'<select name="list_by">{options}</select> Size <select name="physical">'
                f'<option value="y"{" selected" if physical else ""}>physical</option>'
                f'<option value="n"{"" if physical else " selected"}>projected</option></select>'
                '<input type="submit" value="Show"></form>')
        order = key_order(rows)
        body = (form + '<div id="usage-by-site">' + stacked_bars(f"Usage per site by {title.lower()} (TB)", rows, "TB")
                + '</div><div id="usage-by-key">'
                + stacked_bars(f"Usage per {title.lower()} (TB)", by_key, "TB", order, legend=False) + "</div>")
        return self.render(body, inventory)


export_web = {
    "sites": SitesPage,
    "site": SitePage,
    "datasets": DatasetsPage,
    "dataset": DatasetPage,
    "stats": StatsPage,
}
