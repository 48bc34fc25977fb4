"""The shared API toolkit every kind's model is built from: schema helpers and CEL rules, string and quantity types,
reusable spec parts, conditions and CRD generation. Pure pydantic: no kopf, no Kubernetes client."""
