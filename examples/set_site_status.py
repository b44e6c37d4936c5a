"""Set a site's status.

    dynamo 'examples/set_site_status.py T2_US_XYZ waitroom'            # read-only: shows what it would do
    dynamo-exec-auth --executable examples/set_site_status.py --title set-site-status
    dynamo 'examples/set_site_status.py T2_US_XYZ waitroom' --write-request --title set-site-status
"""

import sys

from dynamo.core.executable import inventory, read_only
from dynamo.dataformat import Site, SiteStatus

if len(sys.argv) != 3:
    sys.exit(f"usage: {sys.argv[0]} SITE STATUS ({', '.join(s.value for s in SiteStatus)})")
name, status = sys.argv[1:]
site = inventory.sites.get(name)
if site is None:
    sys.exit(f"no site {name!r}")
print(f"{name}: {site.status} -> {status}")
# update() copies the values of the object it is given onto the inventory's site
inventory.update(Site(name, site.host, site.storage_type, site.backend, status))
if read_only:
    print("read-only run: the change is discarded")
