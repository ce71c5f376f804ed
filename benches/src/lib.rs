//! Shared workloads for franz's benchmarks (see `benches/`).
