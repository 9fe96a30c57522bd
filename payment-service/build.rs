//! Generates the `payment.v1` server and client from the shared contract, plus the file descriptor set
//! that gRPC reflection serves.
use std::{env, path::PathBuf};

const PROTO_ROOT: &str = "../proto";
const PAYMENT_PROTO: &str = "../proto/payment/v1/payment.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PAYMENT_PROTO}");
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .file_descriptor_set_path(out_dir.join("payment_v1_descriptor.bin"))
        .compile_protos(&[PAYMENT_PROTO], &[PROTO_ROOT])?;
    Ok(())
}
