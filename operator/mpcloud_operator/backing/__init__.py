"""Provisioning of the backing services functions and apps bind to (operator side, admin credentials).

`postgres`: a database and owner role per tenant (namespace/app), collections as JSONB tables, a login role per
function with grants per collection. `s3`: a bucket per tenant and an access key per function limited to it.
Each call is idempotent: the reconciler calls it on every pass.
"""
