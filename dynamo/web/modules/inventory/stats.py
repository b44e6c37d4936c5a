"""The original's inventory statistics: ``stats/size``, ``stats/replication``, ``stats/usage``.

Constraints (``data_type=...``, ``site=...``, ...) are regular expressions matched at the
start of the value, as in the original, or ``None`` for an unset value; several may be
given (ORed). Because a client's regular expression runs in the server, its length is
limited and nested repetition (``(a+)+``, the catastrophic-backtracking shape) is refused.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from dynamo.dataformat import Dataset, Site
from dynamo.web.errors import IllFormedRequest
from dynamo.web.modules._base import WebModule
from dynamo.web.modules._common import one, yesno

TB = 1.e-12
MAX_PATTERN = 256
_NESTED = re.compile(r"\([^()]*[+*}][^()]*\)\s*[+*{]")

# (category, (title, target, value))
CATEGORIES: dict[str, tuple[str, str, Callable[[Any], Any]]] = {
    "data_type": ("Dataset type", "dataset", lambda d: Dataset.data_type_name(d.data_type)),
    "dataset_status": ("Dataset status", "dataset", lambda d: Dataset.status_name(d.status)),
    "dataset_software_version": ("Dataset software version", "dataset", lambda d: d.software_version),
    "dataset": ("Dataset name", "dataset", lambda d: d.name),
    "site": ("Site name", "site", lambda s: s.name),
    "site_status": ("Site status", "site", lambda s: Site.status_name(s.status)),
    "group": ("Group name", "group", lambda g: g.name),
}

Pattern = re.Pattern[str] | None


def _compile(category: str, text: str) -> Pattern:
    if text == "None":
        return None
    if len(text) > MAX_PATTERN or _NESTED.search(text):
        raise IllFormedRequest(category, text, "too long, or nested repetition")
    try:
        return re.compile(text)
    except re.error as exc:
        raise IllFormedRequest(category, text, f"not a regular expression ({exc})") from None


def constraints(request: dict[str, Any]) -> dict[str, list[Pattern]]:
    found: dict[str, list[Pattern]] = {}
    for category in CATEGORIES:
        value = request.get(category)
        if not value:
            continue
        texts = value if isinstance(value, list) else [value]
        found[category] = [_compile(category, t) for t in texts]
    return found


def passes(item: Any, given: dict[str, list[Pattern]], target: str) -> bool:
    for category, patterns in given.items():
        _, kind, value_of = CATEGORIES[category]
        if kind != target:
            continue
        value = value_of(item)
        if not any((p is None and value is None) or (p is not None and value is not None and p.match(str(value)))
                   for p in patterns):
            return False
    return True


def list_by(request: dict[str, Any]) -> str:
    value = (one(request, "list_by") or "data_type").strip()
    if value not in CATEGORIES:
        raise IllFormedRequest("list_by", value, allowed=list(CATEGORIES))
    return value


Product = dict[Any, list[tuple[Any, Any]]]


def filter_and_categorize(request: dict[str, Any], inventory: Any, counts_only: bool = False) -> Product:
    """{category: [(dataset replica, [block replicas])]} or, with counts_only,
    {category: [(dataset, number of replicas)]}."""
    given = constraints(request)
    by = list_by(request)
    _, target, key_of = CATEGORIES[by]
    sites = {s for s in inventory.sites.values() if passes(s, given, "site")}
    groups = {g for g in inventory.groups.values() if passes(g, given, "group")}
    product: Product = {}
    for dataset in inventory.datasets.values():
        if not passes(dataset, given, "dataset"):
            continue
        replicas = []
        for replica in dataset.replicas:
            if replica.site not in sites:
                continue
            brs = [br for br in replica.block_replicas if br.group in groups]
            if brs:
                replicas.append((replica, brs))
        if target == "dataset":
            bucket = product.setdefault(key_of(dataset), [])
            if counts_only:
                bucket.append((dataset, len(replicas)))
            else:
                bucket.extend(replicas)
        elif target == "site":
            for replica, brs in replicas:
                product.setdefault(key_of(replica.site), []).append((dataset, 1) if counts_only else (replica, brs))
        else:
            _by_group(product, dataset, replicas, key_of, counts_only)
    return product


def _by_group(product: Product, dataset: Any, replicas: list[tuple[Any, list[Any]]],
              key_of: Callable[[Any], Any], counts_only: bool) -> None:
    counts: dict[Any, int] = {}
    for replica, brs in replicas:
        by_group: dict[Any, list[Any]] = {}
        for br in brs:
            by_group.setdefault(br.group, []).append(br)
        for group, members in by_group.items():
            if counts_only:
                counts[group] = counts.get(group, 0) + 1
            else:
                product.setdefault(key_of(group), []).append((replica, members))
    # the original appended every group's count under the last group's key
    for group, count in counts.items():
        product.setdefault(key_of(group), []).append((dataset, count))


def _size_of(physical: bool) -> Callable[[list[Any]], int]:
    if physical:
        return lambda brs: sum(br.size for br in brs)
    return lambda brs: sum(br.block.size for br in brs)


class TotalSizeListing(WebModule):
    def run(self, caller: Any, request: dict[str, Any], inventory: Any) -> Any:
        size_of = _size_of(yesno(request, "physical"))
        content = [{"key": key, "size": sum(size_of(brs) for _, brs in replicas) * TB}
                   for key, replicas in filter_and_categorize(request, inventory).items()]
        content.sort(key=lambda x: x["size"], reverse=True)
        return {"statistic": "size", "content": content}


class ReplicationFactorListing(WebModule):
    def run(self, caller: Any, request: dict[str, Any], inventory: Any) -> Any:
        content = []
        for key, datasets in filter_and_categorize(request, inventory, counts_only=True).items():
            n = len(datasets)
            mean = sum(c for _, c in datasets) / n
            # rounding can make the variance a hair below zero, where the original's sqrt failed
            rms = math.sqrt(max(0., sum(c * c for _, c in datasets) / n - mean * mean))
            content.append({"key": key, "mean": mean, "rms": rms})
        content.sort(key=lambda x: x["mean"], reverse=True)
        return {"statistic": "replication", "content": content}


def usage_by_site(request: dict[str, Any], inventory: Any) -> tuple[list[dict[str, Any]], list[Any]]:
    size_of = _size_of(yesno(request, "physical", True))
    product = filter_and_categorize(request, inventory)
    by_site: dict[str, dict[Any, float]] = {}
    for key, replicas in product.items():
        for replica, brs in replicas:
            site = by_site.setdefault(replica.site.name, {})
            site[key] = site.get(key, 0.) + size_of(brs)
    content = []
    for name in sorted(by_site):
        usage = [{"key": k, "size": v * TB} for k, v in by_site[name].items()]
        usage.sort(key=lambda x: x["size"], reverse=True)
        content.append({"site": name, "usage": usage})
    return content, sorted(product, key=lambda k: (k is None, str(k)))


class SiteUsageListing(WebModule):
    def run(self, caller: Any, request: dict[str, Any], inventory: Any) -> Any:
        content, keys = usage_by_site(request, inventory)
        return {"statistic": "usage", "content": content, "keys": keys}


export_data = {
    "stats/size": TotalSizeListing,
    "stats/replication": ReplicationFactorListing,
    "stats/usage": SiteUsageListing,
}
