//! Assembles a process from roles: opens the backends the roles need, builds
//! each role's gRPC server, wires peers in-process or by address, and serves
//! the gateway, the gRPC listener and the admin listener until shutdown.

pub mod cli;
mod process;

pub use process::{Running, health_check, migrate, new_generation, service_name, start};
