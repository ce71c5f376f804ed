//! Support code shared by the cross-crate suites in `tests/` and the
//! benchmarks in `benches/` (the `franz-suite` package, never published).
//!
//! The suites themselves are the files directly under `tests/`; each needs a
//! broker and gets one from `franz_testkit`.
