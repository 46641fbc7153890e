"""Deployment material: the local stack of real services and, later, Kubernetes bases."""
