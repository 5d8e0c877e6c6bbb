//! Compiles `proto/*.proto` with the pure-Rust `protox` compiler (no system
//! `protoc` needed) and generates messages, clients and servers with tonic,
//! plus the list of methods marked `idempotency_level = NO_SIDE_EFFECTS`.

use std::fmt::Write as _;

use prost_types::{FileDescriptorSet, method_options::IdempotencyLevel};

const PROTOS: &[&str] = &[
    "common.proto",
    "user.proto",
    "video.proto",
    "interaction.proto",
    "relation.proto",
    "chat.proto",
    "counter.proto",
    "health.proto",
];

/// `/package.Service/Method` of every method marked as having no side effects.
fn without_side_effects(descriptors: &FileDescriptorSet) -> Vec<String> {
    let mut paths = Vec::new();
    for file in &descriptors.file {
        for service in &file.service {
            for method in &service.method {
                let level = method.options.as_ref().map(|o| o.idempotency_level());
                if level == Some(IdempotencyLevel::NoSideEffects) {
                    paths.push(format!("/{}.{}/{}", file.package(), service.name(), method.name()));
                }
            }
        }
    }
    paths
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed=proto/{proto}");
    }
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    let mut list = String::from("&[\n");
    for path in without_side_effects(&descriptors) {
        writeln!(list, "    {path:?},")?;
    }
    list.push(']');
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("no_side_effects.rs"), list)?;
    tonic_prost_build::configure().build_server(true).build_client(true).compile_fds(descriptors)?;
    Ok(())
}
