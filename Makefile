# The one entry point for developers and CI. `make test` is the README's test command.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
export ANSIBLE_CONFIG := $(abspath ansible.cfg)

.PHONY: help venv system-deps lint runbook lock lock-dev checks test test-app test-fuzz test-browser test-release test-rules clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

# Every file the venv gets from an index is hash-checked: the app's set, then the tools' set
# (Ansible, Mitogen, the linters: what holds the vault), then the app itself from ./app.
$(VENV)/.installed: requirements-dev.txt app/requirements.txt app/pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r app/requirements.txt
	$(BIN)/pip install --quiet --require-hashes -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e ./app
	touch $@

venv: $(VENV)/.installed  ## create .venv with the app and every test tool

system-deps:  ## install the Debian packages the tests and the demo need, when one is missing (needs root then)
	scripts/install-system-deps.sh

lint: venv  ## ruff, yamllint, ansible-lint (production profile, no skip list), runbook drift
	$(BIN)/ruff check .
	$(BIN)/yamllint --strict .
	$(BIN)/ansible-lint --nocolor
	$(PY) scripts/generate-runbook.py --check

runbook: venv  ## rewrite docs/runbook.md and each role's README.md from the code (the lint fails when one is out of date)
	$(PY) scripts/generate-runbook.py

# The sha256 of every file PyPI holds for each pin (all platforms), from PyPI itself:
# this machine's own pip settings (extra indexes, find-links, constraints) stay out of it.
LOCK_INDEX ?= https://pypi.org/simple
lock: venv  ## rewrite app/requirements.txt with every file's sha256, keeping the pins (UPGRADE=flask bumps one)
	cd app && env -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL -u PIP_INDEX_URL -u PIP_CONSTRAINT PIP_CONFIG_FILE=/dev/null \
	  ../$(BIN)/pip-compile --quiet --no-header --generate-hashes --allow-unsafe --strip-extras \
	  --index-url $(LOCK_INDEX) --no-emit-index-url --no-emit-find-links \
	  $(if $(UPGRADE),--upgrade-package $(UPGRADE)) --output-file requirements.txt pyproject.toml
	{ printf '%s\n' \
	  "# The exact dependency set every release is built from, with the sha256 of every file PyPI" \
	  "# holds for each pin. The release build downloads the wheelhouse with --require-hashes and the" \
	  "# host installs it with --require-hashes: a file that is not byte for byte the one locked is refused." \
	  "# Generated from pyproject.toml by pip-compile (pip-tools); do not edit by hand." \
	  "#   make lock                 regenerate, keeping every pin (new hashes only)" \
	  "#   make lock UPGRADE=flask   bump one package deliberately (or UPGRADE=flask==3.1.4)" \
	  "# then make test, commit. Releases are refused at build time when pip-audit knows a" \
	  "# vulnerability in this set (roles/app_release, app_release_audit_*)."; \
	  cat app/requirements.txt; } > app/.requirements.txt.new && mv app/.requirements.txt.new app/requirements.txt

lock-dev: venv  ## rewrite requirements-dev.txt from requirements-dev.in with every file's sha256 (UPGRADE=ruff bumps one)
	env -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL -u PIP_INDEX_URL -u PIP_CONSTRAINT PIP_CONFIG_FILE=/dev/null \
	  $(BIN)/pip-compile --quiet --no-header --generate-hashes --allow-unsafe --strip-extras \
	  --index-url $(LOCK_INDEX) --no-emit-index-url --no-emit-find-links \
	  $(if $(UPGRADE),--upgrade-package $(UPGRADE)) --output-file requirements-dev.txt requirements-dev.in
	{ printf '%s\n' \
	  "# The test command's tools on the control node (Ansible, Mitogen, Molecule, the linters), with" \
	  "# the sha256 of every file PyPI holds for each pin: make venv installs them with --require-hashes." \
	  "# Generated from requirements-dev.in by pip-compile (make lock-dev); do not edit by hand."; \
	  cat requirements-dev.txt; } > .requirements-dev.txt.new && mv .requirements-dev.txt.new requirements-dev.txt

test-app: venv  ## API tests, each on a real SQLite file and on PostgreSQL 15 (a throwaway cluster the tests start), with coverage (>= 90 %) and the schemathesis run on both
	@test -x /usr/lib/postgresql/15/bin/initdb || { echo "test-app needs PostgreSQL 15: apt-get install postgresql (make system-deps)" >&2; exit 1; }
	cd app && ../$(PY) -m pytest --cov=task_manager --cov-report=term --cov-fail-under=90

test-browser: venv  ## the frontend in a real headless Chromium against a real API
	cd e2e && ../$(PY) -m pytest

test-release: venv  ## the release's supply chain (offline, no host), and the host's backup, copy, check and notice commands on temporary files, with their coverage (>= 80 %)
	$(PY) -m pytest tests --cov=roles/host_commands/files --cov-report=term-missing --cov-fail-under=80

checks: venv  ## lint, then the alert rules, the API, release and browser tests and the host-less benchmarks' smoke runs, one after the other (no test host)
	@set -e; for t in lint test-rules test-app test-release test-browser bench-smoke-local; do $(MAKE) --no-print-directory $$t; done

RULES_DIR := roles/monitoring/files
test-rules:  ## the alert rules: promtool's check, and its unit tests (every alert firing and not firing)
	promtool check rules $(RULES_DIR)/task-manager.rules.yml
	cd $(RULES_DIR) && promtool test rules task-manager.rules.test.yml

# The checks that need no host are one lane among the scenarios, beside the longest one
# from the start (the scenarios spend much of their time waiting on their hosts); then
# the longest lanes first, so that the last to end is the cluster scenario.
# The benchmarks that need a bench host run their smoke runs outside it (make bench-smoke):
# CI's time budget, spent on the proofs of behaviour first.
TEST_LANES ?= molecule-cluster checks molecule-runbooks molecule-operations molecule-default molecule-preflight
test: system-deps venv test-image  ## everything: the checks (with the host-less benchmarks' smoke runs) and the Molecule scenarios, three lanes at a time
	@$(call run-lanes,$(TEST_LANES))

clean:  ## remove caches and the venv
	rm -rf $(VENV) .pytest_cache app/.pytest_cache e2e/.pytest_cache .ruff_cache

# ---- Molecule: real systemd test hosts (podman + runc, see docs/architecture.md) ----
export CONTAINERS_CONF := $(abspath molecule/containers.conf)
# Longest first: three run at once (MOLECULE_JOBS), each on hosts, ports and a network of
# its own; they spend most of their time waiting on their hosts, not on this machine's cores.
SCENARIOS ?= cluster runbooks operations default preflight
MOLECULE_JOBS ?= 3

.PHONY: test-image test-molecule test-hosts demo demo-destroy

test-image: ## build (once, cached) the Debian 12 systemd test-host image
	@scripts/build-test-image.sh >/dev/null

test-molecule: venv test-image  ## every Molecule scenario, three at a time (each one's output together when it ends)
	@$(MAKE) --no-print-directory -j$(MOLECULE_JOBS) --output-sync=target $(addprefix molecule-,$(SCENARIOS))

# Every lane runs to its end (-k) and keeps its log; the summary printed last names each
# lane's result, its minutes and, for a failed one, the task that failed: CI shows only the
# tail of its output, and three lanes' outputs come before it.
LANES_LOG := .cache/lanes
SCENARIO_LANES = $(addprefix molecule-,$(SCENARIOS))
define run-lanes
rm -rf $(LANES_LOG) && mkdir -p $(LANES_LOG); \
$(MAKE) --no-print-directory -k -j$(MOLECULE_JOBS) --output-sync=target $(addprefix lane-,$(1)); rc=$$?; \
$(PY) scripts/lanes-summary.py $(LANES_LOG); exit $$rc
endef

# The scenarios and the benchmarks' smoke runs, the smoke runs in the lane that frees first.
test-hosts: venv test-image
	@$(call run-lanes,$(SCENARIO_LANES) bench-smoke)

# The lanes beside the cluster scenario have time to spare: they yield the CPU to it (a CPU
# cgroup with a small share that holds their test hosts too, and nice: scripts/run-lane.sh),
# so that the lane that sets the run's duration waits less.
CRITICAL_LANE ?= molecule-cluster
export LANE_NICE ?= 10
export LANE_CPU_SHARES ?= 256
lane-%:
	@start=$$(date +%s); set -o pipefail; \
	scripts/run-lane.sh $(if $(filter $*,$(CRITICAL_LANE)),,--background) \
	  $(MAKE) --no-print-directory $* 2>&1 | tee $(LANES_LOG)/$*.log; rc=$$?; \
	printf '{"rc": %d, "seconds": %d}\n' $$rc $$(( $$(date +%s) - start )) > $(LANES_LOG)/$*.json; exit $$rc

molecule-%: venv test-image  ## one scenario: make molecule-default
	$(BIN)/molecule test -s $*

demo: system-deps venv test-image  ## the whole system on this machine: http://127.0.0.1:8080 (demo_user / demo_password); TOPOLOGY=cluster for lb + 2 app + db
	scripts/demo.sh up

demo-destroy:  ## remove the demo host(s)
	scripts/demo.sh down

# ---- Benchmarks: figures from a deployed bench host (bench/, docs/benchmarks.md) ----
BENCH_PY := $(abspath $(PY))
BENCH_SMOKE_ENV := BENCH_HOST=task-manager-bench-smoke BENCH_PORT=18095 BENCH_RESULTS=$(abspath .cache/bench/smoke)
# The same API and backup benchmarks with the database on PostgreSQL, on a second host.
BENCH_PG_ENV := BENCH_HOST=task-manager-bench-pg BENCH_DB_HOST=task-manager-bench-pgdb BENCH_PORT=18092
BENCH_PG_SMOKE_ENV := BENCH_HOST=task-manager-bench-smoke-pg BENCH_DB_HOST=task-manager-bench-smoke-pgdb \
  BENCH_PORT=18086 BENCH_RESULTS=$(abspath .cache/bench/smoke)
# A cluster: HAProxy, two app hosts and PostgreSQL, the lb alone on a published port.
# The app host on SQLite and a backup host that keeps its off-host copies (restic over SFTP).
BENCH_OFFSITE_ENV := BENCH_HOST=task-manager-bench-o BENCH_BACKUP_HOST=task-manager-bench-o-backup BENCH_PORT=18088
BENCH_CLUSTER_ENV := BENCH_HOST=task-manager-bench-c-app1 BENCH_APP2_HOST=task-manager-bench-c-app2 \
  BENCH_LB_HOST=task-manager-bench-c-lb BENCH_DB_HOST=task-manager-bench-c-db BENCH_PORT=18097

.PHONY: bench bench-deploy bench-api bench-update bench-drills bench-backup bench-postgresql bench-cluster bench-offsite bench-report \
  bench-smoke bench-smoke-local bench-smoke-postgresql bench-destroy bench-metrics bench-profile

bench-deploy: venv test-image  ## time a first deploy, a no-op run and an update (new bench host)
	$(BENCH_PY) bench/deploy_time.py
bench-api: venv test-image  ## latency, throughput and memory under load, beside a minimal app
	$(BENCH_PY) bench/api_load.py
bench-update: venv test-image  ## failed requests and the longest gap during update.yml
	$(BENCH_PY) bench/update_downtime.py
bench-drills: venv test-image  ## kill, corrupt, fill the disk, hostile input: what happens
	$(BENCH_PY) bench/fault_drills.py
bench-backup: venv test-image  ## database size at 100,000 tasks; a 100 MB backup under write load
	$(BENCH_PY) bench/db_backup.py
bench-postgresql: venv test-image  ## the API and backup benchmarks again, the database on PostgreSQL (two hosts)
	@set -e; trap '$(BENCH_PG_ENV) $(BENCH_PY) bench/benchlib.py destroy' EXIT; \
	for s in api_load db_backup; do $(BENCH_PG_ENV) $(BENCH_PY) bench/$$s.py; done
bench-cluster: venv test-image  ## two app hosts vs one through HAProxy, and a rolling update under load (four hosts)
	@set -e; trap '$(BENCH_CLUSTER_ENV) $(BENCH_PY) bench/benchlib.py destroy' EXIT; \
	$(BENCH_CLUSTER_ENV) $(BENCH_PY) bench/cluster_load.py
bench-offsite: venv test-image  ## a 100 MB database copied off the host (first, incremental), the host rebuilt from the copy, the RPO
	@set -e; trap '$(BENCH_OFFSITE_ENV) $(BENCH_PY) bench/benchlib.py destroy' EXIT; \
	$(BENCH_OFFSITE_ENV) $(BENCH_PY) bench/offsite_copy.py
bench-metrics: venv  ## the API's throughput with the Prometheus metrics on and off, in turns (a local gunicorn, no host)
	$(BENCH_PY) bench/metrics_cost.py
bench-profile: venv  ## where a list request's time goes, at this checkout and at the baseline revision, beside a minimal Flask app (no host)
	$(BENCH_PY) bench/list_profile.py
bench-report: venv  ## rewrite docs/benchmarks.md from bench/results/
	$(BENCH_PY) bench/report.py

bench: bench-deploy bench-api bench-update bench-drills bench-backup bench-postgresql bench-cluster bench-offsite bench-metrics bench-profile bench-report  ## every benchmark (about 25 min), then the report

bench-smoke-local: venv  ## a few seconds of each benchmark that needs no host (part of `make test`, in the checks)
	@set -e; mkdir -p .cache/bench/smoke-local; \
	for s in metrics_cost list_profile; do BENCH_RESULTS=$(abspath .cache/bench/smoke-local) $(BENCH_PY) bench/$$s.py --smoke; done

bench-smoke: venv test-image  ## a few seconds of each benchmark on its own host: run it when a bench script changes (about 20 minutes; not in `make test`)
	rm -rf .cache/bench/smoke
	@set -e; trap '$(BENCH_SMOKE_ENV) $(BENCH_PY) bench/benchlib.py destroy' EXIT; \
	for s in deploy_time api_load update_downtime fault_drills db_backup metrics_cost list_profile; do \
	  $(BENCH_SMOKE_ENV) $(BENCH_PY) bench/$$s.py --smoke; \
	done; \
	$(BENCH_SMOKE_ENV) $(BENCH_PY) bench/report.py --out .cache/bench/smoke/benchmarks.md

# The same scripts on a PostgreSQL pair, a few seconds each: left out of make test for CI's
# time budget (the scenarios prove the PostgreSQL paths; make bench-postgresql measures them).
bench-smoke-postgresql: venv test-image  ## the API and backup benchmarks' smoke runs on a PostgreSQL pair
	@set -e; trap '$(BENCH_PG_SMOKE_ENV) $(BENCH_PY) bench/benchlib.py destroy' EXIT; \
	for s in api_load db_backup; do $(BENCH_PG_SMOKE_ENV) $(BENCH_PY) bench/$$s.py --smoke; done

bench-destroy:  ## remove the bench hosts
	$(BENCH_PY) bench/benchlib.py destroy
	$(BENCH_PG_ENV) $(BENCH_PY) bench/benchlib.py destroy
	$(BENCH_CLUSTER_ENV) $(BENCH_PY) bench/benchlib.py destroy
	$(BENCH_OFFSITE_ENV) $(BENCH_PY) bench/benchlib.py destroy
