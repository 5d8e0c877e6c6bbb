//! Compiles `proto/*.proto` with the pure-Rust `protox` compiler (no system
//! `protoc` needed) and generates messages, clients and servers with tonic,
//! plus the list of methods marked `idempotency_level = NO_SIDE_EFFECTS` and a
//! peer client per service that calls a server hosted in the same process
//! without encoding its messages (see `src/hosted.rs`).

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

/// `GetUsers` → `get_users`, as tonic names the methods it generates.
fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `.douyin.common.v1.Ids` → `crate::douyin::common::v1::Ids`.
fn rust_type(proto_type: &str) -> String {
    format!("crate::{}", proto_type.trim_start_matches('.').replace('.', "::"))
}

/// A `<Service>Peer` per douyin service: its unary methods call the hosted
/// server's handler directly when the process hosts it, and the generated
/// client otherwise; streaming methods always go through the client (over the
/// in-process channel when hosted).
fn peers(descriptors: &FileDescriptorSet) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    for file in descriptors.file.iter().filter(|f| f.package().starts_with("douyin.")) {
        let module = format!("crate::{}", file.package().replace('.', "::"));
        for service in &file.service {
            let name = service.name();
            let short = name.trim_end_matches("Service");
            let snake = snake_case(name);
            let client = format!("{module}::{snake}_client::{name}Client<crate::hosted::Channel>");
            let server = format!("dyn {module}::{snake}_server::{name}");
            writeln!(out, "/// `{}.{name}`, called in this process when it hosts the service.", file.package())?;
            writeln!(out, "#[derive(Clone)]")?;
            writeln!(out, "pub struct {short}Peer<A> {{")?;
            writeln!(out, "    client: {client},")?;
            writeln!(out, "    hosted: Option<(crate::hosted::Slot<{server}>, A)>,")?;
            writeln!(out, "}}\n")?;
            writeln!(out, "impl<A: crate::hosted::Around> {short}Peer<A> {{")?;
            writeln!(out, "    /// Calls through `client` only.")?;
            writeln!(out, "    pub fn remote(client: {client}) -> Self {{")?;
            writeln!(out, "        Self {{ client, hosted: None }}")?;
            writeln!(out, "    }}\n")?;
            writeln!(out, "    /// Calls the server in `slot` (once registered) through `around`;")?;
            writeln!(out, "    /// streaming methods go through `client`.")?;
            writeln!(
                out,
                "    pub fn hosted(client: {client}, slot: crate::hosted::Slot<{server}>, around: A) -> Self {{"
            )?;
            writeln!(out, "        Self {{ client, hosted: Some((slot, around)) }}")?;
            writeln!(out, "    }}")?;
            for method in &service.method {
                let rust = snake_case(method.name());
                let input = rust_type(method.input_type());
                let output = rust_type(method.output_type());
                let path = format!("/{}.{name}/{}", file.package(), method.name());
                writeln!(out)?;
                writeln!(out, "    /// `{path}`")?;
                let request = if method.client_streaming() {
                    format!("impl tonic::IntoStreamingRequest<Message = {input}>")
                } else {
                    format!("impl tonic::IntoRequest<{input}>")
                };
                let response =
                    if method.server_streaming() { format!("tonic::codec::Streaming<{output}>") } else { output };
                writeln!(
                    out,
                    "    pub async fn {rust}(&mut self, request: {request}) -> Result<tonic::Response<{response}>, tonic::Status> {{"
                )?;
                if method.client_streaming() || method.server_streaming() {
                    writeln!(out, "        self.client.{rust}(request).await")?;
                } else {
                    writeln!(
                        out,
                        "        let Some((slot, around)) = &self.hosted else {{ return self.client.{rust}(request).await }};"
                    )?;
                    writeln!(
                        out,
                        "        let (server, around, request) = (slot.get().cloned(), around.clone(), request.into_request());"
                    )?;
                    writeln!(
                        out,
                        "        around.call({path:?}, async move {{ crate::hosted::served(server)?.{rust}(request).await }}).await"
                    )?;
                }
                writeln!(out, "    }}")?;
            }
            writeln!(out, "}}\n")?;
        }
    }
    Ok(out)
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
    std::fs::write(out.join("peers.rs"), peers(&descriptors)?)?;
    tonic_prost_build::configure().build_server(true).build_client(true).compile_fds(descriptors)?;
    Ok(())
}
