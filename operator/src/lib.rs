//! Kubernetes operator for douyin environments.
//!
//! A `DouyinEnvironment` (group `douyin.rs`) describes one environment of the
//! backend; the operator provisions MySQL (MariaDB), Redis and MinIO for it as
//! StatefulSets and publishes the Secret the application reads
//! (`DOUYIN_DATABASE_URL`, `DOUYIN_REDIS_URL`, `DOUYIN_S3_*`).

pub mod backends;
pub mod builders;
pub mod controller;
pub mod crd;
pub mod credentials;
mod error;
pub mod events;
pub mod guard;
pub mod http;
pub mod manager;
pub mod metrics;
pub mod names;
pub mod quantity;
pub mod reconcile;
pub mod render;
pub mod settings;
pub mod status;
pub mod telemetry;
pub mod validate;

#[cfg(test)]
mod controller_tests;
#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod reconcile_tests;
#[cfg(test)]
mod safety_tests;

pub use crd::{DouyinEnvironment, DouyinEnvironmentSpec, DouyinEnvironmentStatus};
pub use error::{Error, Result};
