# franz tasks. Install just with `cargo install just` (or read the commands).

# Run the whole test suite (starts its own Kafka brokers; needs Java 17+, Maven, Node).
test:
    cargo test --workspace

# Format check and clippy with warnings as errors.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Start a single local broker in the background and print its bootstrap address.
kafka-up:
    cargo run -q -p franz-testkit --bin franz-kafka -- up

# Start a three-node local cluster in the background and print its bootstrap address.
kafka-up-3:
    cargo run -q -p franz-testkit --bin franz-kafka -- up --nodes 3

# Stop the cluster started by kafka-up or kafka-up-3.
kafka-down:
    cargo run -q -p franz-testkit --bin franz-kafka -- down

# Everything CI runs, as CI runs it.
ci:
    CI=true bash .ci/run
