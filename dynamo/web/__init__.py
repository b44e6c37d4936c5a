"""The web server: ``/web/<module>/<name>`` (HTML) and ``/data/<module>/<name>`` (JSON) on cheroot.

``app`` is the WSGI application, ``loader`` maps modules to URLs, ``request`` turns hostile
HTTP into a parameter dict, ``server`` runs cheroot without CherryPy's engine (dynamod owns
signals and shutdown). See docs/web.md.
"""
