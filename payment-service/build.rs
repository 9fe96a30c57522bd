//! Generates the `payment.v1` server and client from the shared contract, plus the file descriptor set
//! that gRPC reflection serves. protox (pure Rust) parses the contract, so the build needs no protoc.
use std::{env, path::PathBuf};

use prost::Message as _;

const PROTO_ROOT: &str = "../proto";
const PAYMENT_PROTO: &str = "../proto/payment/v1/payment.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PAYMENT_PROTO}");
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let descriptors = protox::compile([PAYMENT_PROTO], [PROTO_ROOT])?;
    std::fs::write(out_dir.join("payment_v1_descriptor.bin"), descriptors.encode_to_vec())?;
    tonic_prost_build::configure().build_server(true).build_client(true).compile_fds(descriptors)?;
    Ok(())
}
