//! Compiles `proto/*.proto` with the pure-Rust `protox` compiler (no system
//! `protoc` needed) and generates messages, clients and servers with tonic.

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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed=proto/{proto}");
    }
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    tonic_prost_build::configure().build_server(true).build_client(true).compile_fds(descriptors)?;
    Ok(())
}
