"""``/data/inventory/...`` (the original's data service and ours) and ``/web/inventory/...`` pages."""

from dynamo.web.modules.inventory import catalog, pages, replicas, stats, writes

export_data = {**catalog.export_data, **replicas.export_data, **stats.export_data, **writes.export_data}
export_web = dict(pages.export_web)
