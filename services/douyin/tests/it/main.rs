//! The HTTP suites of the douyin binary, one module each, linked into one test
//! binary so the whole app is built and linked once. Each suite starts the real
//! app (`common::TestApp`, in-process on port 0), a gateway and roles on two
//! servers (`common::split`), or `douyin` OS processes (`common::process`).
//!
//! A test that needs what `cargo test --workspace` does not provide (a Redis or
//! MariaDB server, an S3-API server, the seven-process mesh) is ignored with
//! its reason; the `.ci/` step that provides it runs it with `--ignored`.

mod common;
mod otlp;

mod auth;
mod edges;
mod faults;
mod hardening;
mod health;
mod interaction;
mod limits;
mod logs;
mod media;
mod mesh;
mod metrics;
mod rcluster;
mod relation;
mod replica;
mod restore;
mod s3;
mod traces;
mod video;
