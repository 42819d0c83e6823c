//! TLS on the HTTPS port (`docs/protocol/moonlight-http.md` § TLS): request a client certificate,
//! accept any, leave "is it paired?" to the request handler.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::NoServerSessionStorage;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};

use crate::identity::LoadedIdentity;

/// A [`ClientCertVerifier`] for Moonlight clients: it asks every client for a certificate
/// (clients only send one when asked), does not require one, names no acceptable CAs, accepts any
/// certificate (clients are self-signed; authorisation happens per request by fingerprint), and
/// still checks the handshake signature with the crypto provider, so a peer must hold the private
/// key of the certificate it presents.
#[derive(Debug)]
pub struct AcceptAnyClientCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl AcceptAnyClientCert {
    /// A verifier that checks handshake signatures with `provider`'s algorithms.
    pub fn new(provider: &CryptoProvider) -> Self {
        AcceptAnyClientCert {
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ClientCertVerifier for AcceptAnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The rustls configuration of the HTTPS port: ring provider installed explicitly, TLS 1.2 and
/// 1.3, [`AcceptAnyClientCert`], exactly one certificate (the server leaf, equal to
/// `plaincert`), ALPN `http/1.1` only, and no session resumption (no session cache, no TLS 1.3
/// tickets), so the certificate a request is authorised by always comes from a full handshake.
///
/// # Errors
/// A rustls error when the key does not match the certificate or cannot sign.
pub fn server_config(identity: &LoadedIdentity) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AcceptAnyClientCert::new(&provider));
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![identity.cert_der()], identity.key_der())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.max_early_data_size = 0;
    Ok(Arc::new(config))
}

/// The rustls configuration of the admin port (`direwolf_core::admin`): the same certificate as
/// the HTTPS port, so clients that pinned it (the CLI, by fingerprint) trust it; TLS 1.2 and 1.3,
/// ALPN `http/1.1`, and no client certificate asked for (requests bear a token instead).
///
/// # Errors
/// A rustls error when the key does not match the certificate or cannot sign.
pub fn admin_server_config(identity: &LoadedIdentity) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(vec![identity.cert_der()], identity.key_der())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use direwolf_core::ServerIdentity;

    use super::*;
    use crate::crypto::tests::{VECTOR_C_SERVER_CERT, VECTOR_C_SERVER_KEY};

    #[test]
    fn config_policy() {
        let identity = LoadedIdentity::new(ServerIdentity {
            cert_pem: VECTOR_C_SERVER_CERT.into(),
            key_pem: VECTOR_C_SERVER_KEY.into(),
            unique_id: "u".into(),
        })
        .unwrap();
        let config = server_config(&identity).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert_eq!(config.send_tls13_tickets, 0);
        assert!(!config.ticketer.enabled());
        assert!(!config.session_storage.can_cache());
        let verifier = AcceptAnyClientCert::new(&rustls::crypto::ring::default_provider());
        assert!(verifier.offer_client_auth());
        assert!(!verifier.client_auth_mandatory());
        assert!(verifier.root_hint_subjects().is_empty());
        assert!(
            verifier
                .supported_verify_schemes()
                .contains(&SignatureScheme::RSA_PKCS1_SHA256)
        );
        let admin = admin_server_config(&identity).unwrap();
        assert_eq!(admin.alpn_protocols, vec![b"http/1.1".to_vec()]);
        let any = CertificateDer::from(vec![1, 2, 3]);
        assert!(verifier.verify_client_cert(&any, &[], UnixTime::now()).is_ok());
    }
}
