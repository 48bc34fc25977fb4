"""Every kopf registration of the operator, imported once by main.py (one entry module, per kind below)."""

from mpcloud_operator.miniprogramapp import handlers as miniprogramapp_handlers  # noqa: F401
