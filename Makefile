# MicroPay developer commands. `make run` starts the local stack; `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
REQUIREMENTS := requirements-dev.txt common/pyproject.toml \
	auth_microservice/requirements.txt payment_microservice/requirements.txt \
	transactions_microservice/requirements.txt notifications_microservice/requirements.txt

NPM ?= npm
WEB_DEPS := web/node_modules/.package-lock.json

.PHONY: run demo migrate schema-sql test test-containers lint deploy-check format typecheck pytest clean help \
	web-check sdk

help:
	@echo "make run   - start PostgreSQL, moto, localstripe, the four services and the gateway"
	@echo "make migrate - upgrade the database DATABASE_URL names (admin URL) to the latest revision"
	@echo "make schema-sql - regenerate PostgreSQL.sql from the migrations"
	@echo "make test  - ruff (lint + format check), deployment validators, mypy and the whole pytest suite"
	@echo "make test-containers - build every image, run the compose stack and the e2e journey in it (needs Docker)"
	@echo "make demo  - with \`make run\` running: a narrated walkthrough of the whole journey"
	@echo "make sdk   - regenerate the OpenAPI documents and the TypeScript SDK (sdk/typescript)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when a requirements file changed since the last install.
$(STAMP): $(BIN)/python $(REQUIREMENTS)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

# The launcher builds the wallet app (web/) when its sources changed, or says how to get Node.
run: $(STAMP)
	$(BIN)/python -m stack run

# The wallet app's packages, from its lock file; again only when the lock file changed.
$(WEB_DEPS): web/package-lock.json
	@command -v $(NPM) >/dev/null 2>&1 || { echo "the wallet app (web/) needs Node.js 20.19+ with npm:" \
		"https://nodejs.org, \`apt-get install nodejs npm\` or \`brew install node\`" >&2; exit 1; }
	cd web && $(NPM) ci --no-audit --no-fund

# The wallet app: the SDK up to date with the services' OpenAPI (and its lock file with its
# package.json), TypeScript, the unit tests,
# and the build the gateway serves (built here, so the stacks the tests start find it current).
web-check: $(STAMP) $(WEB_DEPS)
	$(BIN)/python -m stack.openapi --check
	cd sdk/typescript && $(NPM) ci --no-audit --no-fund --ignore-scripts
	cd web && $(NPM) run --silent check-sdk && $(NPM) run --silent typecheck && $(NPM) test
	$(BIN)/python -m stack.web

# The OpenAPI documents from the services' code, then the TypeScript SDK from them.
sdk: $(STAMP) $(WEB_DEPS)
	$(BIN)/python -m stack.openapi
	cd web && $(NPM) run --silent generate

# The database DATABASE_URL names (an admin URL) to the latest revision; a no-op when it is.
migrate: $(STAMP)
	$(BIN)/python -m migrations upgrade

# PostgreSQL.sql is generated from the migrations (tests/migrations checks it is up to date).
schema-sql: $(STAMP)
	$(BIN)/python -m migrations sql > PostgreSQL.sql.tmp
	mv PostgreSQL.sql.tmp PostgreSQL.sql

# Same port variables as `make run` (MICROPAY_GATEWAY_PORT, ...); or `python -m stack.demo --help`.
demo: $(STAMP)
	$(BIN)/python -m stack.demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# Every deployment artefact checked by its own ecosystem's validator, offline (no Docker engine).
deploy-check: $(STAMP)
	$(BIN)/hadolint --failure-threshold style */Dockerfile deploy/*/Dockerfile \
		deploy/base-images/*/Dockerfile
	$(BIN)/shellcheck -x deploy/service-entrypoint.sh run_docker_local.sh deploy/*.sh \
		deploy/base-images/*.sh deploy/base-images/*/*.sh tests/containers/run.sh \
		deploy/elastic-beanstalk/.platform/hooks/*/*.sh
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
	$(BIN)/docker-compose --env-file .env.example --file docker-compose.yml config --quiet
	$(BIN)/kubernetes-validate --strict --quiet kubernetes_*.yaml
	$(BIN)/check-jsonschema --schemafile deploy/schemas/dockerrun-v1.schema.json */Dockerrun.aws.json
	$(BIN)/cfn-lint infra/cloudformation.yaml

typecheck: $(STAMP)
	$(BIN)/mypy common/micropay_common stack migrations auth_microservice payment_microservice \
		transactions_microservice notifications_microservice deploy conftest.py tests micropay_testing

pytest: $(STAMP)
	$(BIN)/pytest

# pytest includes the browser journey (tests/e2e/test_web_app.py), which needs chromium.
test: lint deploy-check typecheck web-check pytest

# Every image built, the docker compose stack started and the e2e journey run through its
# gateway (README, "Docker"); needs a Docker engine, which it starts (or installs, on Debian as
# root) and stops again. Not part of `make test`, which runs where no engine does.
test-containers: $(STAMP)
	bash tests/containers/run.sh

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf web/node_modules web/dist web/test-results
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache .import_linter_cache .grimp_cache
