"""Grafana for ferryman: datasource provisioning and dashboards, generated from code.

``python -m infra.grafana.generate`` writes ``provisioning/`` and ``dashboards/``;
:mod:`infra.grafana.lint` holds the rules every generated dashboard must pass.
"""
