"""mpcloud operator: kopf handlers, the local control plane and the `mpcloud` CLI."""

__version__ = "0.1.0"
