# The index of the project's commands (https://github.com/casey/just: `cargo install just`).
# Each recipe calls the script or cargo command it names; the README's two commands stay `scripts/stack` and
# `scripts/test`, which need nothing but Rust and Python.

# List the recipes.
default:
    @just --list

# The whole stack on this machine: engines + five services, gateway on :3000 (Ctrl-C stops all).
stack *args:
    scripts/stack {{args}}

# Every check CI runs (containers, fmt, cargo-deny, clippy, all tests, benchmark smoke run).
test:
    scripts/test

# One crate's tests against engines started for the run, e.g. `just test-crate order-service`.
test-crate crate *args:
    scripts/bootstrap.sh
    CARGO_INCREMENTAL=0 python3 scripts/engines.py run -- cargo test -p {{crate}} {{args}}

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --locked -- -D warnings

# The benchmark (release build, load from a second process on 127.0.0.1).
bench *args:
    scripts/bench {{args}}

# The dependency policy (deny.toml): licences, bans, sources, and advisories when the database can be fetched.
deny:
    scripts/deny

# Dockerfiles, docker-compose.yml, Kubernetes manifests and the variables they set.
check-containers:
    scripts/check-containers

# The engines alone, for `cargo run -p <service>` against them.
engines:
    python3 scripts/engines.py run -- sleep infinity
