"""The generic controller layer: reconcile runner, child-event routing, reference checks, workload hardening."""
