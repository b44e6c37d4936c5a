"""What an application imports: ``from dynamo.core.executable import inventory, read_only``.

Inside ``dynamo '<script>'`` the runner sets ``inventory`` to the application's
forked image and ``read_only`` to its mode before the script starts. A script
run directly with python (outside the server) gets an empty inventory and
``read_only = True``, so it can be tried without a server.
"""

from __future__ import annotations

from dynamo.core.inventory import Inventory

inventory: Inventory = Inventory()
read_only: bool = True
app_id: int = 0
"""The application's id on the server (0 outside the server)."""
