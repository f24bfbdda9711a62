//! TLS for the connections spendgate opens itself (PostgreSQL here, Redis in the gateway's response cache): one
//! rustls client configuration for each way of checking the server, on the ring provider already used for
//! upstream calls. It lives in the store because that is the lowest crate that does IO (`core` does none) and the
//! gateway already depends on it.
//!
//! The ways follow libpq's `sslmode`: encrypt without checking the certificate (`require`), check that it was
//! issued by a trusted CA (`verify-ca`), or that and that it names the host connected to (`verify-full`). The
//! trusted CAs come from a PEM file or from the operating system's store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Where the CAs that may sign a server's certificate come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    /// Every certificate in a PEM file.
    File(PathBuf),
    /// The operating system's trust store (what a browser would trust).
    System,
}

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerCheck {
    /// None of it: the connection is encrypted, but a machine in the middle could present any certificate.
    EncryptOnly,
    /// The certificate must chain to one of the CAs of this PEM file; the host name is not compared (libpq's
    /// `verify-ca`). Never against the system's CAs: any certificate a public CA issued to anyone would pass.
    Chain(PathBuf),
    /// The chain, and the certificate must name the host connected to (libpq's `verify-full`, HTTPS).
    Full(Roots),
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("could not read the CA certificate file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error(
        "the CA certificate file {path} holds no usable certificate; it should contain one or more PEM blocks \
         starting with -----BEGIN CERTIFICATE-----"
    )]
    NoCertificate { path: String },
    #[error("the operating system's trusted certificates could not be loaded ({0}); name a CA file instead")]
    System(String),
    #[error("could not set up TLS: {0}")]
    Setup(String),
}

/// The crypto provider of every TLS connection spendgate opens: ring, like the upstream HTTP client's, set here
/// rather than taken from the process default so that tests and library callers need no set-up.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate of a PEM file; a file with none is an error, since it would trust nothing.
pub fn read_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| TlsError::Read {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let cert = cert.map_err(|e| TlsError::Read {
            path: shown.clone(),
            reason: format!("not valid PEM ({e})"),
        })?;
        roots.add(cert).map_err(|e| TlsError::Read {
            path: shown.clone(),
            reason: format!("a certificate could not be read ({e})"),
        })?;
    }
    if roots.is_empty() {
        return Err(TlsError::NoCertificate { path: shown });
    }
    Ok(roots)
}

/// The client configuration for one way of checking servers. Build it once per pool: it reads the CA file.
pub fn client_config(check: &ServerCheck) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let verifier: Arc<dyn ServerCertVerifier> = match check {
        ServerCheck::EncryptOnly => Arc::new(Unchecked {
            provider: Arc::clone(&provider),
        }),
        ServerCheck::Chain(path) => Arc::new(ChainOnly {
            roots: Arc::new(read_roots(path)?),
            provider: Arc::clone(&provider),
        }),
        ServerCheck::Full(Roots::System) => Arc::new(
            rustls_platform_verifier::Verifier::new(Arc::clone(&provider))
                .map_err(|e| TlsError::System(e.to_string()))?,
        ),
        ServerCheck::Full(Roots::File(path)) => WebPkiServerVerifier::builder_with_provider(
            Arc::new(read_roots(path)?),
            Arc::clone(&provider),
        )
        .build()
        .map_err(|e| TlsError::Setup(e.to_string()))?,
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The handshake's own signatures are still checked against the certificate presented (that is what proves
/// the peer holds its key); only whether to trust that certificate is left out or narrowed.
fn handshake_signature(
    provider: &CryptoProvider,
    tls13: bool,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    let algs = &provider.signature_verification_algorithms;
    if tls13 {
        verify_tls13_signature(message, cert, dss, algs)
    } else {
        verify_tls12_signature(message, cert, dss, algs)
    }
}

/// Accepts any certificate (`sslmode=require`): encryption against a passive listener, nothing more.
#[derive(Debug)]
struct Unchecked {
    provider: Arc<CryptoProvider>,
}

/// Checks the chain up to a trusted root, but not the name (`sslmode=verify-ca`).
#[derive(Debug)]
struct ChainOnly {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
}

/// The parts both verifiers share: the handshake's signatures and the schemes offered, by `self.provider`.
macro_rules! handshake_checks {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            handshake_signature(&self.provider, false, message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            handshake_signature(&self.provider, true, message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider
                .signature_verification_algorithms
                .supported_schemes()
        }
    };
}

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    handshake_checks!();
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    handshake_checks!();
}
