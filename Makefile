# hypr: `make run` brings up the demo, `make test` runs every check. Both set up the machine first.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := python3 python3-venv python3-pip nftables libnftables1 iproute2 util-linux procps psmisc \
	dnsmasq-base dnsperf iperf3 bind9-dnsutils busybox-static netcat-openbsd curl tcpdump iputils-ping \
	qemu-system-x86 skopeo umoci docker-registry mmdebstrap erofs-utils apache2-utils \
	crun golang-github-containers-common etcd-server etcd-client
PYTEST_ARGS ?=

# Workloads for bench/scale.py: populating 1000 sandboxes takes minutes (`make bench SCALE_SIZE=100` to try it).
SCALE_SIZE ?= 1000

.PHONY: setup apt venv compose-schema kernel bytecode run stop-demo test lint unit integration bench bench-images bench-vm bench-overlay clean

setup: apt venv compose-schema kernel bytecode

# hypr's own modules compiled once (skipped when up to date): an editable install has no cached bytecode, and with
# PYTHONDONTWRITEBYTECODE in the environment (some CI and sandbox set-ups) every hyprd, supervisor and `hypr` start
# would compile them again (~150 ms of CPU per hyprd start here).
bytecode: venv
	$(BIN)/python -m compileall -q src >/dev/null

# Installs only what is missing, so a second run is quick and offline.
apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# The compose-spec schema is third-party data: fetched at set-up, never committed.
compose-schema: venv
	./scripts/fetch-compose-schema.sh $(BIN)/python

# The guest kernel for --runtime vm: Debian's cloud kernel, unpacked (not installed) under the data dir.
kernel: apt
	./scripts/fetch-kernel.sh

run: setup
	./scripts/demo.sh

stop-demo:
	./scripts/demo.sh down

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest -q tests/unit $(PYTEST_ARGS)

integration: setup
	$(BIN)/pytest -q tests/integration $(PYTEST_ARGS)

test: setup lint
	$(BIN)/pytest -q -p no:cacheprovider tests $(PYTEST_ARGS)

bench: setup
	$(BIN)/python bench/ipam.py
	$(BIN)/python bench/attach.py
	$(BIN)/python bench/rules.py
	$(BIN)/python bench/dns.py
	$(BIN)/python bench/images.py
	$(BIN)/python bench/cli.py
	$(BIN)/python bench/vmboot.py 3
	$(BIN)/python bench/scale.py --size $(SCALE_SIZE)

bench-images: setup
	$(BIN)/python bench/images.py

# Three hosts in namespaces with a real etcd: VXLAN throughput, endpoint propagation, FDB programming (docs/overlay.md).
bench-overlay: setup
	$(BIN)/python bench/overlay.py

bench-vm: setup
	$(BIN)/python bench/vmboot.py 3

clean:
	rm -rf $(VENV) build src/*.egg-info
