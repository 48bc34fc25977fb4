# mpcloud developer entry points. `make demo` and `make test` are the README's two commands.
PYTHON ?= python3
PIP_INSTALL = $(PYTHON) -m pip install -q -e '.[test]'
MPCLOUD = $(PYTHON) -m mpcloud_operator
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install binaries prometheus cluster-up cluster-down demo demo-down test test-unit test-integration crds crds-check bench security-scan

install:
	$(PIP_INSTALL)

binaries: install  ## build (once) and cache kube-apiserver, controller-manager, scheduler, kubectl, etcd, kwok
	$(PYTHON) -m mpcloud_operator.devenv.cluster.binaries

prometheus:  ## Debian's prometheus + promtool: the demo and the predictive-scaling tests run them
	@command -v prometheus >/dev/null || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq prometheus; }

cluster-up: install
	$(MPCLOUD) cluster up

cluster-down:
	$(MPCLOUD) cluster down

demo: binaries prometheus  ## local cluster + CRDs + operator + examples, then show the result
	$(MPCLOUD) demo

demo-down:
	$(MPCLOUD) demo --stop

test: binaries prometheus  ## every test: unit and integration (against the real local control plane)
	$(PYTHON) -m pytest -q

test-unit: install  ## the fast subset: no cluster
	$(PYTHON) -m pytest -q -m "not integration"

test-integration: binaries prometheus
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
	$(MPCLOUD) render -n demo examples/app-simple.yaml examples/app-promotion.yaml > $(SCAN_DIR)/rendered-examples.yaml
	$(CHECKOV_VENV)/bin/checkov --config-file .checkov.yaml -d $(SCAN_DIR)
