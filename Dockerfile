# The operator image referenced by manifests/operator.yaml (ghcr.io/mpcloud/mpcloud-operator).
# Nothing in this repository's CI can build it (no Docker engine there); `docker build -t <image> .` elsewhere.
FROM python:3.11-slim
WORKDIR /src
COPY pyproject.toml README.md ./
# .dockerignore keeps the dev environment (operator/mpcloud_operator/devenv), tests/ and bench/ out of the context.
COPY operator ./operator
COPY predictors ./predictors
RUN pip install --no-cache-dir . && rm -rf /src
# Non-root, matching the Deployment's securityContext (runAsUser 65532, read-only root filesystem).
USER 65532:65532
ENTRYPOINT ["mpcloud"]
CMD ["operator", "run"]
