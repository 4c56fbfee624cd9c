# SIP edge toolkit: the two commands are `make lab` and `make test`.
# Every target installs what it needs and is safe to re-run.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      ?= .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# tools/ (run_tests, opensips_source) for the scenarios, which ask opensips_source for the
# release under test; the SIP test kit itself is installed in .venv (pyproject.toml)
export PYTHONPATH := $(CURDIR)/tools
export OPENSIPS_VERSION ?= 3.6

PY := $(VENV)/bin/python

.PHONY: help venv docker images prereq lint unit molecule test lab lab-destroy opensips-source render bench

help: ## Show the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

venv: ## Create .venv with the pinned toolchain (cached)
	@bash tools/ensure-venv.sh

docker: ## Make sure a Docker engine answers (installs/starts docker.io as root)
	@bash tools/ensure-docker.sh

images: docker ## Make sure the systemd Debian 12 base image exists (pull or debootstrap)
	@bash tools/base-image.sh

prereq: venv images

opensips-source: venv ## Show which OpenSIPS source the tests and the lab will use
	@$(PY) tools/opensips_source.py show

lint: venv ## yamllint + ansible-lint (production profile)
	@$(PY) tools/run_tests.py --stage lint

unit: venv ## Python unit tests
	@$(PY) tools/run_tests.py --stage unit

molecule: prereq ## Molecule scenarios (SCENARIO=name for one)
	@$(PY) tools/run_tests.py --stage molecule $(if $(SCENARIO),--scenario $(SCENARIO))

test: prereq ## Everything: lint, unit tests, every Molecule scenario, then a summary
	@$(PY) tools/run_tests.py $(if $(SCENARIO),--scenario $(SCENARIO))

lab: prereq ## Deploy the edge into local containers and print how to use it
	@$(PY) tools/opensips_source.py exec -- ansible-playbook -i inventories/lab playbooks/lab.yml

# Benchmarks (benchmarks/README.md): a table of numbers, not a test. On the lab it
# recreates the containers twice (site.yml and make lab timings), then loads the
# proxy with SIPp. Other inventories: make bench BENCH_ARGS="-i inventories/<env> --only sip"
bench: prereq ## Measure the lab: REGISTER/s, CPS and latency vs a stateless relay, site.yml and make lab times
	@$(PY) tools/opensips_source.py exec -- $(PY) benchmarks/sip_edge_bench.py $(BENCH_ARGS)

lab-destroy: venv ## Remove every container and network the lab created
	@ansible-playbook -i inventories/lab playbooks/lab-destroy.yml

# Render-only mode: ENV is a directory of inventories/. The example vaults
# (staging, production) are opened with the documented DEMO password; a real
# site passes its own: make render ENV=production VAULT_PASSWORD_FILE=~/.vault-pass
ENV ?= lab
VAULT_PASSWORD_FILE ?= $(if $(wildcard inventories/$(ENV)/group_vars/all/vault.yml),inventories/DEMO-vault-password.txt)

# The lab is rendered as `make lab` deploys it with a package source. The
# facts render.yml stores stay in memory, never in a site's fact cache.
render: venv ## Write every host's files under build/rendered/<host>/, no host contacted (ENV=lab|staging|production)
	@test -d inventories/$(ENV) || { echo "ENV=$(ENV): no inventories/$(ENV)/ (there are: $$(ls inventories | grep -v '\.' | xargs))" >&2; exit 2; }
	@rm -rf build/rendered
	@OPENSIPS_SOURCE=$${OPENSIPS_SOURCE:-package} ANSIBLE_CACHE_PLUGIN=memory \
	  ansible-playbook -i inventories/$(ENV) playbooks/render.yml $(if $(VAULT_PASSWORD_FILE),--vault-password-file $(VAULT_PASSWORD_FILE))
	@echo "ENV=$(ENV): $$(ls build/rendered | wc -l) hosts rendered under build/rendered/ ($$(ls build/rendered | xargs));" \
	  "the files of each are listed above; compare two renders with: diff -ru OLD NEW"
