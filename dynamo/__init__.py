"""Dynamo: an inventory server for large scientific data management."""

__version__ = "0.1.0"
