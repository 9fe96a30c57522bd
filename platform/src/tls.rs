//! TLS for every outbound client, the same in each service: rustls on ring (the one crypto provider of the
//! tree), trusting the public web roots (webpki-roots, compiled in: the distroless images and a fresh machine
//! need no CA bundle) plus the CAs of TLS_CA_FILE for a private PKI ([`TlsRoots`]).
//!
//! - [`http_client`]: a reqwest client builder (JWKS, the gateway's and order-service's service calls, OTLP);
//! - [`grpc_client`] / [`grpc_server`] (feature `grpc-tls`): tonic's TLS settings, and [`pinned_client_config`]
//!   for a service's probe of its own TLS port.
use std::sync::Arc;

use anyhow::Context as _;
use rustls::{ClientConfig, RootCertStore};

#[cfg(feature = "grpc-tls")]
use crate::config::ServerIdentity;
use crate::config::TlsRoots;

/// ring, explicitly: rustls would otherwise look for a process-wide default, and pick none when a dependency
/// enables a second provider.
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The web roots plus `roots`' certificates. A certificate that is not a usable trust anchor is an error naming
/// its file.
pub fn root_store(roots: &TlsRoots) -> anyhow::Result<RootCertStore> {
    let mut store = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    for certificate in &roots.certificates {
        store.add(certificate.clone()).with_context(|| {
            format!("{}: a certificate is not a usable CA", roots.ca_file.as_deref().unwrap_or("TLS_CA_FILE"))
        })?;
    }
    Ok(store)
}

/// A rustls client configuration (TLS 1.2 and 1.3, ALPN http/1.1) trusting [`root_store`].
pub fn client_config(roots: &TlsRoots) -> anyhow::Result<ClientConfig> {
    let mut config = ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .context("the TLS protocol versions")?
        .with_root_certificates(root_store(roots)?)
        .with_no_client_auth();
    // The clients speak HTTP/1.1 (reqwest is built without HTTP/2).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A reqwest client builder whose https:// connections use [`client_config`]; the caller adds its timeouts.
pub fn http_client(roots: &TlsRoots) -> anyhow::Result<reqwest::ClientBuilder> {
    Ok(reqwest::Client::builder().tls_backend_preconfigured(client_config(roots)?))
}

/// Like [`http_client`], blocking (the OTLP exporter's, which runs on its own thread).
#[cfg(feature = "telemetry")]
pub fn blocking_http_client(roots: &TlsRoots) -> anyhow::Result<reqwest::blocking::ClientBuilder> {
    Ok(reqwest::blocking::Client::builder().tls_backend_preconfigured(client_config(roots)?))
}

/// tonic's client TLS for an https:// endpoint: the web roots plus `roots`' CAs (tonic uses ring: its only
/// provider feature enabled is `tls-ring`).
#[cfg(feature = "grpc-tls")]
pub fn grpc_client(roots: &TlsRoots) -> tonic::transport::ClientTlsConfig {
    let config = tonic::transport::ClientTlsConfig::new().with_webpki_roots();
    if roots.pem.is_empty() {
        config
    } else {
        config.ca_certificate(tonic::transport::Certificate::from_pem(&roots.pem))
    }
}

/// tonic's server TLS with `identity`, checked first: a key that does not belong to the certificate is an
/// error at startup, not at each client's handshake.
#[cfg(feature = "grpc-tls")]
pub fn grpc_server(identity: &ServerIdentity) -> anyhow::Result<tonic::transport::ServerTlsConfig> {
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
    let chain = CertificateDer::pem_slice_iter(&identity.certificate_chain).collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(&identity.private_key)?;
    rustls::ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .with_context(|| format!("{}: the private key does not fit the certificate", identity.cert_file))?;
    let identity = tonic::transport::Identity::from_pem(&identity.certificate_chain, &identity.private_key);
    Ok(tonic::transport::ServerTlsConfig::new().identity(identity))
}

/// A client configuration that accepts exactly the server certificate `pinned` (whatever its name, which a probe
/// of the local process cannot know) and still checks the handshake's signatures: what a service's own health
/// probe uses to reach its TLS port on 127.0.0.1. ALPN h2 (gRPC).
#[cfg(feature = "grpc-tls")]
pub fn pinned_client_config(pinned: rustls_pki_types::CertificateDer<'static>) -> ClientConfig {
    let provider = crypto_provider();
    let verifier = Arc::new(Pinned { certificate: pinned, provider: provider.clone() });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    config
}

#[cfg(feature = "grpc-tls")]
#[derive(Debug)]
struct Pinned {
    certificate: rustls_pki_types::CertificateDer<'static>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

#[cfg(feature = "grpc-tls")]
impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.certificate.as_ref() {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// A throw-away PKI for tests: a CA generated at test time and a server certificate it signed, for servers
/// the tests make. Its files live in a temporary directory removed on drop.
#[cfg(feature = "test-pki")]
pub mod testing {
    use std::{collections::HashMap, path::PathBuf, sync::Arc};

    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    use rustls_pki_types::{PrivateKeyDer, pem::PemObject as _};

    use crate::config::TlsRoots;

    pub struct TestPki {
        pub ca_pem: String,
        /// The server's certificate (for `localhost`, `127.0.0.1`) and its key, in PEM.
        pub cert_pem: String,
        pub key_pem: String,
        dir: PathBuf,
    }

    impl TestPki {
        pub fn new() -> Self {
            let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
            ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // A name of its own: clients tell CAs apart by name before they check signatures.
            ca.distinguished_name.push(DnType::CommonName, format!("platform test CA {}-{n}", std::process::id()));
            let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("a CA key")).expect("the CA");
            let key = KeyPair::generate().expect("a server key");
            let server = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server parameters")
                .signed_by(&key, &ca)
                .expect("the server certificate");
            let dir = std::env::temp_dir().join(format!("test-pki-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("a temporary directory");
            let pki = Self { ca_pem: ca.pem(), cert_pem: server.pem(), key_pem: key.serialize_pem(), dir };
            std::fs::write(pki.ca_file(), &pki.ca_pem).expect("the CA file");
            std::fs::write(pki.dir.join("server.pem"), &pki.cert_pem).expect("the certificate file");
            std::fs::write(pki.dir.join("server.key"), &pki.key_pem).expect("the key file");
            pki
        }

        /// The CA certificate's file, as TLS_CA_FILE would name it.
        pub fn ca_file(&self) -> String {
            self.dir.join("ca.pem").to_str().expect("a UTF-8 path").to_owned()
        }

        /// The server certificate's and key's files.
        pub fn cert_file(&self) -> String {
            self.dir.join("server.pem").to_str().expect("a UTF-8 path").to_owned()
        }

        pub fn key_file(&self) -> String {
            self.dir.join("server.key").to_str().expect("a UTF-8 path").to_owned()
        }

        /// What a client configured with TLS_CA_FILE = this CA trusts.
        pub fn roots(&self) -> TlsRoots {
            let file = self.ca_file();
            TlsRoots::from_source(&HashMap::from([("TLS_CA_FILE", file.as_str())])).expect("the test CA file")
        }

        /// A rustls server configuration presenting the server certificate, offering `alpn`.
        pub fn server_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
            let chain = rustls_pki_types::CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .expect("the server certificate");
            let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).expect("the server key");
            let mut config = rustls::ServerConfig::builder_with_provider(super::crypto_provider())
                .with_safe_default_protocol_versions()
                .expect("protocol versions")
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .expect("a server configuration");
            config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
            Arc::new(config)
        }
    }

    impl Default for TestPki {
        fn default() -> Self {
            Self::new()
        }
    }

    impl Drop for TestPki {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
