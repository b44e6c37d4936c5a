"""Set a site's status.

    dynamo 'examples/set_site_status.py T2_US_XYZ waitroom'            # read-only: shows what it would do
    dynamo-exec-auth --executable examples/set_site_status.py --title set-site-status
    dynamo 'examples/set_site_status.py T2_US_XYZ waitroom' --write-request --title set-site-status
"""

import sys

from dynamo.core.executable import inventory, read_only
from dynamo.dataformat import SiteStatus

if len(sys.argv) != 3:
    sys.exit(f"usage: {sys.argv[0]} SITE STATUS ({', '.join(s.value for s in SiteStatus)})")
name, status = sys.argv[1:]
site = inventory.sites.get(name)
if site is None:
    sys.exit(f"no site {name!r}")
print(f"{name}: {site.status} -> {status}")
# a live object changed in place is recorded with update() (the original's register_update);
# a new Site(...) would also carry its empty filename mappings and x509 proxy onto the site
site.status = status
inventory.update(site)
if read_only:
    print("read-only run: the change is discarded")
