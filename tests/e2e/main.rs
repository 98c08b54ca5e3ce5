//! End-to-end tests: the `sluice` binary run on real specs, real input files
//! and real Wasm components built from `examples/operators/` (by
//! `scripts/build-guests.sh`, which `scripts/test.sh` runs first).
//!
//! (The data-driven cases under `tests/cases/` are their own test target,
//! `cases`: one test per case and run; see `cases.rs`.)
//! - `bench`: the W1–W4 bench specs reproduce bench/README's checksums;
//! - `sandbox`: traps, deadlines, memory caps and grants;
//! - `fields`: members a module reads, found by the host;
//! - `broadcast`: the broadcast state check of broadcast process functions;
//! - `enricher`: async enrichment against a real HTTP service process;
//! - `polyglot`: Python and JavaScript operators give the Rust results;
//! - `process`: keyed process functions driven call by call;
//! - `cli`: the command line itself;
//! - `examples`: every example is run, and none is left without a test;
//! - `api`: `sluice serve`, its REST API and the CLI client over HTTP;
//! - `dashboard`: the web dashboard in headless Chromium;
//! - `postgres`: the PostgreSQL sink and lookup join against a real server;
//! - `cdc`: the `postgres-cdc` source against a real server.

mod api;
mod bench;
mod broadcast;
mod cdc;
mod changelog;
mod cli;
mod dashboard;
mod enricher;
mod examples;
mod fields;
mod kafka;
mod polyglot;
mod postgres;
mod process;
mod recovery;
mod sandbox;
mod sql;
mod sql_kafka;
mod sql_udf;
mod support;
