"""Shared Kubernetes mechanics used by every custom resource kind (conditions, later SSA, events, metrics)."""
