# franz tasks. Install just with `cargo install just` (or read the commands).

# The main demo: orders gateway + billing services (starts a broker unless KAFKA_BOOTSTRAP is set).
demo:
    cargo run -p franz --example orders

# Run the whole test suite (starts its own Kafka brokers; needs Java 17+, Maven, Node).
test:
    cargo test --workspace

# The same suite on an in-process franz-mock cluster (no Java brokers); lists the real-broker-only tests it skipped.
test-mock:
    rm -f target/franz-mock-skips.log
    FRANZ_TEST_BROKER=mock FRANZ_SKIP_LOG="$PWD/target/franz-mock-skips.log" cargo test --workspace
    @echo "skipped as real-broker-only: $(cat target/franz-mock-skips.log 2>/dev/null | wc -l)"; cat target/franz-mock-skips.log 2>/dev/null || true

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

# Start an in-process franz-mock cluster in the background (no Java) and print its bootstrap address.
kafka-up-mock:
    cargo run -q -p franz-testkit --bin franz-kafka -- up --mock

# Stop the cluster started by kafka-up, kafka-up-3 or kafka-up-mock.
kafka-down:
    cargo run -q -p franz-testkit --bin franz-kafka -- down

# The chaos suite at full size (CI runs each scenario's smoke form), every scenario judged by the history checker: leader SIGKILLs (1,000,000 records, 10 kills) and a leader cut off by SIGSTOP (300,000 records, 5 pauses) on three brokers; group churn (member SIGKILLs) and a rolling restart of every broker; the transport under server SIGKILLs (10 kills); exactly-once consume-transform-produce under broker and app kills; rebootstrap after every broker moved; in-band re-authentication.
chaos records="1000000" kills="10" pause_records="300000" pauses="5" server_kills="10":
    FRANZ_CHAOS_RECORDS={{records}} FRANZ_CHAOS_KILLS={{kills}} FRANZ_CHAOS_PAUSE_RECORDS={{pause_records}} FRANZ_CHAOS_PAUSES={{pauses}} cargo test -p franz-suite --test chaos -- --nocapture
    cargo test -p franz-consumer --test churn -- --nocapture
    FRANZ_CHAOS_SERVER_KILLS={{server_kills}} cargo test -p franz-transport --test server_churn
    cargo test -p franz-suite --test exactly_once --test rebootstrap --test reauthentication -- --nocapture

# The ordinary suite on other Kafka releases (default: 3.9.1, the last 3.x, and 4.4.0, the newest 4.x served here): the testkit resolves each release's jars with Maven (FRANZ_KAFKA_VERSION). tests/compat.rs checks the version-dependent features on each (KIP-848 used or refused typed, transaction version 2 or 1). CI runs a subset (compat-quick).
compat versions="3.9.1 4.4.0":
    for v in {{versions}}; do echo "== Kafka $v"; FRANZ_KAFKA_VERSION=$v cargo test --workspace --no-fail-fast || exit 1; done

# The CI subset of `compat`: the version-dependent features and a few basic suites on each release.
compat-quick versions="3.9.1 4.4.0":
    for v in {{versions}}; do echo "== Kafka $v"; export FRANZ_KAFKA_VERSION=$v; cargo test -p franz-suite --test compat -- --nocapture && cargo test -p franz-client --test admin && cargo test -p franz-producer --test roundtrip --test transactions && cargo test -p franz-consumer --test group || exit 1; done

# Everything CI runs, as CI runs it.
ci:
    CI=true bash .ci/run

# Run each fuzz target (the codec's and franz-mock's request decoding, SCRAM server messages, the consumer's fetch-response path, the NestJS wire layer) for `seconds` (cargo-fuzz; RUSTC_BOOTSTRAP lets it use nightly flags on stable).
fuzz seconds="600":
    cargo install cargo-fuzz --locked --quiet || true
    cd crates/franz-protocol/fuzz && for t in decode_messages record_batch decompress; do RUSTC_BOOTSTRAP=1 cargo fuzz run -O -a $t -- -max_total_time={{seconds}} -rss_limit_mb=2048 || exit 1; done
    cd crates/franz-mock/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -O -a mock_requests -- -max_total_time={{seconds}} -rss_limit_mb=2048
    cd crates/franz-client/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -O -a scram_server -- -max_total_time={{seconds}} -rss_limit_mb=2048
    cd crates/franz-consumer/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -O -a fetch_response -- -max_total_time={{seconds}} -rss_limit_mb=2048
    cd crates/franz-transport/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -O -a nest_wire -- -max_total_time={{seconds}} -rss_limit_mb=2048

# Codec benchmarks, side by side with the kafka-protocol crate.
bench-codec:
    cargo bench --manifest-path benches/Cargo.toml --bench codec

# The benchmark suite (issue #16): franz against librdkafka, Java, franz-go,
# KafkaJS and NestJS, each client its own process, every point on a fresh
# topic. `just bench` runs every part then writes BENCHMARKS.md and
# benches/charts/; `just bench producer` (consumer, transport, limits,
# report) runs one part, resuming from benches/results/*.jsonl.
# Building librdkafka needs cmake, a C compiler and curl headers (apt-get install cmake libcurl4-openssl-dev).
bench *parts:
    cargo build --release --manifest-path benches/Cargo.toml --features peers --bins
    benches/target/release/bench {{parts}}

# The small form CI runs: a few points, 16 MiB each, no C peer; results
# and report under benches/target/bench-quick.
bench-quick:
    cargo build --release --manifest-path benches/Cargo.toml --bins
    benches/target/release/bench --quick
