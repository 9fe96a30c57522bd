//! Generates the `payment.v1` client from the shared contract in proto/.
const PROTO_ROOT: &str = "../proto";
const PAYMENT_PROTO: &str = "../proto/payment/v1/payment.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PAYMENT_PROTO}");
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .compile_protos(&[PAYMENT_PROTO], &[PROTO_ROOT])?;
    Ok(())
}
