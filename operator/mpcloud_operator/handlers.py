"""Every kopf registration of the operator, imported once by main.py (one entry module, per kind below)."""
