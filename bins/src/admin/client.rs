//! The CLI's HTTPS client of the admin API: one request per connection, the server's
//! certificate pinned by its SHA-256 fingerprint (the server's certificate is self-signed).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use direwolf_core::Fingerprint;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Time to connect and finish the TLS handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for the whole exchange of one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Trusts exactly one certificate, by fingerprint; still checks handshake signatures.
#[derive(Debug)]
pub struct PinnedCert {
    fingerprint: Fingerprint,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedCert {
    /// A verifier trusting the certificate whose SHA-256 is `fingerprint`.
    pub fn new(fingerprint: Fingerprint, provider: &CryptoProvider) -> Self {
        PinnedCert {
            fingerprint,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = Fingerprint::of_der(end_entity);
        if presented == self.fingerprint {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the server's certificate has fingerprint {presented}, not the expected {}",
                self.fingerprint
            )))
        }
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

/// A client of one admin API.
#[derive(Debug, Clone)]
pub struct AdminClient {
    host: String,
    port: u16,
    base: String,
    token: String,
    tls: Arc<ClientConfig>,
}

/// An answer: status and body.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: StatusCode,
    /// The body.
    pub body: Bytes,
}

impl AdminClient {
    /// A client of the API at `url` (`https://HOST[:PORT]`), bearing `token`, trusting only the
    /// certificate with `fingerprint`.
    pub fn new(url: &str, token: String, fingerprint: Fingerprint) -> anyhow::Result<Self> {
        let uri: Uri = url
            .parse()
            .with_context(|| format!("--url {url:?} is not a URL"))?;
        if uri.scheme_str() != Some("https") {
            bail!("--url {url:?} must start with https:// (the admin API is served over HTTPS only)");
        }
        let host = uri
            .host()
            .with_context(|| format!("--url {url:?} has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(443);
        let base = uri.path().trim_end_matches('/').to_owned();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(PinnedCert::new(fingerprint, &provider));
        let mut tls = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .context("TLS configuration")?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(AdminClient {
            host,
            port,
            base,
            token,
            tls: Arc::new(tls),
        })
    }

    /// Sends one request to `path` (under `/api/v1`), with an optional body and its type.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(&'static str, Vec<u8>)>,
    ) -> anyhow::Result<Answer> {
        let target = format!("{}:{}", self.host, self.port);
        let exchange = async {
            let tcp = tokio::time::timeout(
                CONNECT_TIMEOUT,
                TcpStream::connect((self.host.as_str(), self.port)),
            )
            .await
            .with_context(|| format!("connecting to {target} timed out"))?
            .with_context(|| format!("cannot connect to {target} (is direwolf serve running?)"))?;
            let name = ServerName::try_from(self.host.clone())
                .with_context(|| format!("bad host {:?}", self.host))?;
            let tls = tokio::time::timeout(
                CONNECT_TIMEOUT,
                TlsConnector::from(self.tls.clone()).connect(name, tcp),
            )
            .await
            .with_context(|| format!("the TLS handshake with {target} timed out"))?
            .with_context(|| format!("TLS with {target} failed"))?;
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .context("HTTP handshake")?;
            let driver = tokio::spawn(connection);
            let (content_type, bytes) = body.unwrap_or(("application/json", Vec::new()));
            let request = Request::builder()
                .method(method)
                .uri(format!("{}/api/v1{path}", self.base))
                .header(hyper::header::HOST, target.as_str())
                .header(hyper::header::AUTHORIZATION, format!("Bearer {}", self.token))
                .header(hyper::header::CONTENT_TYPE, content_type)
                .body(Full::new(Bytes::from(bytes)))
                .context("building the request")?;
            let response = sender.send_request(request).await.context("the request failed")?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .context("reading the answer")?
                .to_bytes();
            driver.abort();
            Ok::<_, anyhow::Error>(Answer { status, body })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .with_context(|| format!("{target} did not answer within {} s", REQUEST_TIMEOUT.as_secs()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_pinned_certificate_is_trusted() {
        let provider = rustls::crypto::ring::default_provider();
        let der = CertificateDer::from(b"not really DER, only hashed".to_vec());
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let pinned = PinnedCert::new(Fingerprint::of_der(&der), &provider);
        assert!(
            pinned
                .verify_server_cert(&der, &[], &name, &[], UnixTime::now())
                .is_ok()
        );
        let other = CertificateDer::from(b"another certificate".to_vec());
        let refused = pinned.verify_server_cert(&other, &[], &name, &[], UnixTime::now());
        assert!(
            matches!(&refused, Err(rustls::Error::General(m)) if m.contains("not the expected")),
            "{refused:?}"
        );
    }

    #[test]
    fn urls() {
        let fp = Fingerprint::of_der(b"x");
        let client = AdminClient::new("https://[::1]:47990/base/", "t".into(), fp.clone()).unwrap();
        assert_eq!(
            (client.host.as_str(), client.port, client.base.as_str()),
            ("::1", 47990, "/base")
        );
        let client = AdminClient::new("https://example.org", "t".into(), fp.clone()).unwrap();
        assert_eq!((client.host.as_str(), client.port), ("example.org", 443));
        for bad in ["http://127.0.0.1:47990", "127.0.0.1:47990", "https://"] {
            assert!(AdminClient::new(bad, "t".into(), fp.clone()).is_err(), "{bad}");
        }
    }
}
