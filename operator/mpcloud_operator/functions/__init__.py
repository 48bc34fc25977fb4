"""CloudFunction's data plane: the programs that run beside the operator, never inside it.

The runtime host (one image per language; it loads the user's code at start-up), its language workers, the
gateway/activator that routes `/<namespace>/<function>` and buffers requests while a function scales from zero,
and the client libraries function code reaches through its context: the document API over PostgreSQL
(`docdb`) and file storage over S3 (`storage`). Nothing here imports kopf or the reconcile layer.
"""
