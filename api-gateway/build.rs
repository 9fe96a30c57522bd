//! Generates the `payment.v1` client from the shared contract in proto/, parsed by protox (pure Rust) so the
//! build needs no protoc.
const PROTO_ROOT: &str = "../proto";
const PAYMENT_PROTO: &str = "../proto/payment/v1/payment.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PAYMENT_PROTO}");
    let descriptors = protox::compile([PAYMENT_PROTO], [PROTO_ROOT])?;
    tonic_prost_build::configure().build_server(false).build_client(true).compile_fds(descriptors)?;
    Ok(())
}
