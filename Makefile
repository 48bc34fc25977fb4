# mpcloud developer entry points. `make demo` and `make test` are the README's two commands.
PYTHON ?= python3
PIP_INSTALL = $(PYTHON) -m pip install -q -e '.[test]'
MPCLOUD = $(PYTHON) -m mpcloud_operator
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install binaries seaweedfs prometheus postgres node-packages images cluster-up cluster-down demo demo-down test test-unit test-integration crds crds-check bench security-scan

install:
	$(PIP_INSTALL)

binaries: install  ## build (once) and cache kube-apiserver, controller-manager, scheduler, kubectl, etcd, kwok
	$(PYTHON) -m mpcloud_operator.devenv.cluster.binaries

seaweedfs: install  ## build (once) and cache SeaweedFS's `weed` (S3 file storage for CloudFunctions)
	$(PYTHON) -m mpcloud_operator.devenv.cluster.binaries weed

prometheus:  ## Debian's prometheus + promtool: the demo and the predictive-scaling tests run them
	@command -v prometheus >/dev/null || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq prometheus; }

postgres:  ## Debian's PostgreSQL server (initdb, postgres): the demo and the document-API tests run a private one
	@[ -x "$$(ls -d /usr/lib/postgresql/*/bin/postgres 2>/dev/null | tail -1)" ] || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq postgresql; }

# The real node (containerd, runc, CNI bridge, kube-proxy's nftables) and the image builder (mmdebstrap).
NODE_PACKAGES = containerd runc containernetworking-plugins nftables iptables iproute2 openssl mmdebstrap git
node-packages:  ## Debian packages the local cluster's real node and `mpcloud image build` need
	@dpkg -s $(NODE_PACKAGES) >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(NODE_PACKAGES); }

images: install node-packages  ## the project's images (pause, debian-python, operator), no registry; see `mpcloud image build`
	$(MPCLOUD) image build

cluster-up: install node-packages
	$(MPCLOUD) cluster up

cluster-down:
	$(MPCLOUD) cluster down

demo: binaries seaweedfs prometheus postgres node-packages  ## local cluster + CRDs + operator + examples, then show the result
	$(MPCLOUD) demo

demo-down:
	$(MPCLOUD) demo --stop

test: binaries seaweedfs prometheus postgres node-packages  ## every test: unit and integration (against the real local control plane)
	$(PYTHON) -m pytest -q

test-unit: install  ## the fast subset: no cluster
	$(PYTHON) -m pytest -q -m "not integration"

test-integration: binaries seaweedfs prometheus postgres node-packages
	$(PYTHON) -m pytest -q -m integration

crds: install  ## regenerate crds/ from the pydantic models
	$(PYTHON) -m mpcloud_operator.crdgen

crds-check: install
	$(PYTHON) -m mpcloud_operator.crdgen --check

bench: install
	$(PYTHON) bench/scaling.py
	$(PYTHON) bench/keepalive.py

CHECKOV_VENV = .venv-checkov
CHECKOV_VERSION = 3.3.30
SCAN_DIR = build/security-scan

security-scan: install  ## checkov's Kubernetes checks on manifests/ and on what the builders render for examples/
	@[ -x $(CHECKOV_VENV)/bin/checkov ] || { $(PYTHON) -m venv $(CHECKOV_VENV) && \
		$(CHECKOV_VENV)/bin/pip install -q checkov==$(CHECKOV_VERSION); }
	rm -rf $(SCAN_DIR) && mkdir -p $(SCAN_DIR)
	cp manifests/*.yaml $(SCAN_DIR)/
	for d in manifests/*/; do for f in $$d*.yaml; do cp $$f $(SCAN_DIR)/$$(basename $$d)-$$(basename $$f); done; done
	$(MPCLOUD) render -n demo examples/app-simple.yaml examples/app-promotion.yaml > $(SCAN_DIR)/rendered-examples.yaml
	$(MPCLOUD) render -n todo examples/todo/base/functions.yaml > $(SCAN_DIR)/rendered-todo.yaml
	$(CHECKOV_VENV)/bin/checkov --config-file .checkov.yaml -d $(SCAN_DIR)
