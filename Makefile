# The two commands of the README, and what they need. Every target is safe to
# rerun; nothing is installed twice.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO_TAG ?= nbs2i-demo/sample-notebooks:latest

.PHONY: demo test test-engines venv engine base-image browser registry openshift-schema hub-tools lint unit bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(BIN)/.installed

engine:
	bash scripts/ensure-engine

base-image: engine
	bash scripts/ensure-base-image debian:bookworm-slim

# Debian's chromium, for the end-to-end browser test (tests/engine/test_demo_browser.py).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "make browser: install Debian's chromium package (as root: apt-get install -y chromium)" >&2; exit 1; fi; }

# Debian's docker-registry, which the registry tests start on 127.0.0.1
# (tests/engine/test_deploy_registry.py, test_registry_*.py), htpasswd
# (apache2-utils) for its users, and buildah for the daemonless CI test. The
# package's own service is stopped: the tests run their own, on ports of their own.
REGISTRY_TOOLS := docker-registry:docker-registry htpasswd:apache2-utils buildah:buildah
registry:
	@missing=""; for pair in $(REGISTRY_TOOLS); do \
	  command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	    service docker-registry stop >/dev/null 2>&1 || true; \
	  else echo "make registry: install Debian's$$missing (as root: apt-get install -y$$missing)" >&2; exit 1; fi; fi

# The OpenShift API's OpenAPI document, for the schemas of Template,
# BuildConfig, ImageStream and Route (tests/support/openshift.py): the one the
# npm package openshift-rest-client ships, fetched with npm, checked by hash.
OPENSHIFT_SPEC := .cache/openshift-openapi-spec.json.gz
OPENSHIFT_SPEC_PACKAGE := openshift-rest-client-9.1.1.tgz
OPENSHIFT_SPEC_SHA512 := 48cfb6c2351cd6479a20659ac747e24bad71a6a60e22b66232b3f5c3099bae6942b0538e44e6cb42fbc3ddb2d37768973930eccc20e3c3875a76a8d504d23403

$(OPENSHIFT_SPEC):
	mkdir -p .cache/npm-pack
	cd .cache/npm-pack && npm pack --silent openshift-rest-client@9.1.1 >/dev/null
	echo "$(OPENSHIFT_SPEC_SHA512)  .cache/npm-pack/$(OPENSHIFT_SPEC_PACKAGE)" | sha512sum -c --quiet -
	tar -xzOf .cache/npm-pack/$(OPENSHIFT_SPEC_PACKAGE) package/lib/specs/openshift-openapi-spec.json.gz > $@.partial
	mv $@.partial $@

openshift-schema: $(OPENSHIFT_SPEC)

# A real JupyterHub for tests/engine/test_jupyterhub.py and benchmarks/hub.py:
# the current major (the builder's default) and the other one the builder
# supports, each in its own virtual environment with DockerSpawner, and
# configurable-http-proxy from npm. The stamp names the versions, so changing
# a pin reinstalls and rerunning does nothing.
TOOLS := .tools
JUPYTERHUB_6 := 6.1.1
JUPYTERHUB_5 := 5.5.4
DOCKERSPAWNER := 14.0.0
CHP := 5.3.0
HUB_STAMP = $(TOOLS)/hub$(1)/.installed-$(JUPYTERHUB_$(1))-$(DOCKERSPAWNER)
CHP_STAMP := $(TOOLS)/chp/.installed-$(CHP)

define hub_venv
$(call HUB_STAMP,$(1)):
	rm -rf $(TOOLS)/hub$(1)
	$(PYTHON) -m venv $(TOOLS)/hub$(1)
	$(TOOLS)/hub$(1)/bin/pip install -q --disable-pip-version-check \
	  'jupyterhub==$(JUPYTERHUB_$(1))' 'dockerspawner==$(DOCKERSPAWNER)'
	touch $$@
endef
$(eval $(call hub_venv,6))
$(eval $(call hub_venv,5))

$(CHP_STAMP):
	@command -v npm >/dev/null 2>&1 || { echo "make hub-tools: needs node and npm (configurable-http-proxy)" >&2; exit 1; }
	rm -rf $(TOOLS)/chp
	mkdir -p $(TOOLS)/chp
	npm install --prefix $(TOOLS)/chp --no-audit --no-fund --loglevel=error configurable-http-proxy@$(CHP)
	touch $@

hub-tools: $(call HUB_STAMP,6) $(call HUB_STAMP,5) $(CHP_STAMP)

# ruff (complexity at most 12 included) and mypy --strict on src/.
lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy --strict src

# The unit tier: no engine, no npm, no network; under a minute. Tests that need
# a file from the network (the OpenShift schema) skip with a reason without it.
unit: venv
	$(BIN)/pytest -m "not engine" -q

# Everything, as CI runs it; the 20 slowest tests are listed at the end. Then
# the tests marked `matrix` on the other engines (test-engines).
test: venv base-image browser registry openshift-schema hub-tools lint
	$(BIN)/pytest --durations=20
	bash scripts/test-engines

# The tests marked `matrix` on sid's Docker with the containerd image store and on
# podman, at the same time; scripts/engines starts and stops them (scripts/test-engines).
test-engines: venv base-image registry
	bash scripts/test-engines

demo: venv base-image
	bash scripts/demo $(DEMO_TAG)

BENCHMARKS := build clone builder archive_memory run hub nbtest ci engines

bench: venv base-image registry
	for b in $(BENCHMARKS); do $(BIN)/python benchmarks/$$b.py || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .cache $(TOOLS)
