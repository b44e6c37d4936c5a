"""Web modules: each module ``name.py`` or package ``name/__init__.py`` here (or in a directory named
by ``[web] module_dirs``) maps to ``/web/name/...`` and ``/data/name/...`` through its
``export_web`` and ``export_data`` dicts. Names starting with ``_`` are helpers, not modules."""
