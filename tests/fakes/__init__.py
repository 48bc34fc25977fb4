"""In-memory stand-ins for the API server, for cluster-free unit tests of reconcile logic."""
