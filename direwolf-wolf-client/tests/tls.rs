//! HTTPS to a TLS-terminating proxy (feature `tls`), against the fake serving TLS.
#![cfg(all(feature = "tls", feature = "fake"))]

mod common;

use std::sync::Arc;

use common::within;
use direwolf_wolf_client::fake::FakeWolf;
use direwolf_wolf_client::{Error, WolfClient, WolfVersion};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[tokio::test]
async fn https_with_self_signed_proxy_certificate() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let der = cert.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .unwrap();
    let wolf = FakeWolf::builder()
        .tcp("127.0.0.1:0".parse().unwrap())
        .tls(Arc::new(server))
        .start()
        .await
        .unwrap();
    let addr = wolf.addr().unwrap().to_string();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let client = WolfClient::builder()
        .with_https(&addr, "localhost", Arc::new(config))
        .unwrap()
        .build()
        .unwrap();
    assert!(
        within("https sessions", client.sessions())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        within("https version", client.version()).await.unwrap(),
        WolfVersion::V6
    );

    // A client that does not trust the certificate fails to connect, with a typed error.
    let untrusted = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let client = WolfClient::builder()
        .with_https(&addr, "localhost", Arc::new(untrusted))
        .unwrap()
        .build()
        .unwrap();
    assert!(matches!(
        within("untrusted", client.sessions()).await,
        Err(Error::Connect { .. })
    ));
}
