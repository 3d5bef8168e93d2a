# The two commands of the README: `make run` and `make test`. Everything else is a helper.
SHELL := bash
CARGO ?= cargo
CONFIG ?= deploy/dev.toml
BUF ?= npx -y @bufbuild/buf

.PHONY: run build test soak bench bench-full lint fmt fmt-check clippy proto-deps buf-lint buf-build buf-breaking api-fuzz openapi token clean

## Builds and starts both services on the embedded default (SQLite under ./data) and the REST
## edge in front of them (127.0.0.1:8080); Ctrl-C stops all three.
run: build
	@mkdir -p data
	@target/debug/conversation-service --config $(CONFIG) & c=$$!; \
	 target/debug/message-service --config $(CONFIG) & m=$$!; \
	 target/debug/rest-edge --config $(CONFIG) & e=$$!; \
	 trap 'kill $$c $$m $$e 2>/dev/null' INT TERM; \
	 wait -n $$c $$m $$e; status=$$?; kill $$c $$m $$e 2>/dev/null; wait; exit $$status

build:
	$(CARGO) build --workspace --bins

## Runs the whole suite: unit, store and end-to-end tests on SQLite and PostgreSQL.
## Set CI=true to fail (not skip) when PostgreSQL is unreachable.
test:
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace --all-targets

## The stream completeness test in 20 larger rounds per backend (10 users, 6 conversations,
## 900 messages and 300 membership changes a round; about 3.5 minutes).
soak:
	MESSAGING_SOAK_ROUNDS=$${MESSAGING_SOAK_ROUNDS:-20} $(CARGO) test -p messaging-e2e --test stream_completeness -- --nocapture

## Load generator over real gRPC with same-run baselines; PostgreSQL and NATS when reachable,
## then send on the embedded default (SQLite) with its own floors.
## Results: the table, target/bench/results.json, latency.svg and history.svg (embedded:
## target/bench/embedded/).
bench:
	$(CARGO) build --release -p message-service --bins
	$(CARGO) run --release -p messaging-bench -- --profile quick
	$(CARGO) run --release -p messaging-bench -- --profile quick --embedded --scenarios floors,send --out target/bench/embedded

bench-full:
	$(CARGO) build --release -p message-service --bins
	$(CARGO) run --release -p messaging-bench -- --profile full

lint: fmt-check clippy buf-lint

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## Copies the googleapis protos that proto/ imports into target/proto-deps for buf.
proto-deps:
	@$(CARGO) run -q -p messaging-proto --bin proto-deps -- target/proto-deps >/dev/null

buf-lint: proto-deps
	$(BUF) lint

buf-build: proto-deps
	$(BUF) build -o /dev/null

## Fails when the protos would break a generated client or a REST route of BASE (default: the
## previous commit): buf's FILE rules, against BASE's protos built with the same imports.
BASE ?= HEAD~1
buf-breaking: proto-deps
	@rm -rf target/buf-base && mkdir -p target/buf-base/target
	@git archive $(BASE) proto buf.yaml | tar -x -C target/buf-base
	@cp -r target/proto-deps target/buf-base/target/
	$(BUF) build target/buf-base -o target/buf-base.binpb
	$(BUF) breaking --against target/buf-base.binpb

## Schemathesis against the REST edge's OpenAPI document (needs `make build`; see .ci/schemathesis).
api-fuzz: build
	bash .ci/schemathesis

## Writes the REST edge's OpenAPI document (made from the protos) to proto/messaging.openapi.json;
## `make test` fails while the committed copy is stale.
openapi:
	@$(CARGO) run -q -p rest-edge --bin openapi > proto/messaging.openapi.json

## make token TENANT=acme USER=alice [ROLES="--admin"]
token:
	@$(CARGO) run -q -p messagingctl -- --config $(CONFIG) token --tenant $(TENANT) --user $(USER) $(ROLES)

clean:
	rm -rf data target/proto-deps
