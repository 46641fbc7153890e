"""Prometheus semantics shared by the edge and the functions."""
