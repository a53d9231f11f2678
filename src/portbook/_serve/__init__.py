"""``portbook serve`` and ``portbook metrics``: portbook for Prometheus and for a browser.

A client of the public API, like the command line: every module here imports
``portbook``'s public names only (tests/test_public_api.py checks it), and the
core library never imports this package or ``prometheus_client``.

- :mod:`portbook._serve.source`: what the machine looks like right now, read
  through the public API (the seam tests replace), and :class:`Fresh`, which
  lets concurrent requests share one reading.
- :mod:`portbook._serve.metrics`: the Prometheus collector, built with the
  official client library; the exposition text and the node_exporter textfile.
- :mod:`portbook._serve.server`: the HTTP server: ``/metrics``, the dashboard
  at ``/`` and its read-only JSON API.
- ``static/``: the dashboard's page, script and style, served from the
  package (nothing is loaded from the internet); ``alerts.yml``: the alert
  rules for Prometheus.
"""
