//! A small Moonlight test client: raw HTTP/1.1 over TCP or TLS, client certificates, and the
//! client side of pairing.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use direwolf_core::{InMemoryPinBroker, Pairing, PinBroker, ServerIdentity, Stores, User, UserName};
use direwolf_moonlight::crypto::{
    CertificateInfo, ServerSigner, aes_ecb_decrypt, aes_ecb_encrypt, derive_key, sha256,
};
use direwolf_moonlight::trusted_proxy::TrustedProxies;
use direwolf_moonlight::{ConnectionLimits, MoonlightServer, MoonlightServerBuilder};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_RSA_SHA256, SerialNumber};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime, pem::PemObject,
};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const SERVER_CERT: &str = include_str!("../data/vector_c_server_cert.pem");
pub const SERVER_KEY: &str = include_str!("../data/vector_c_server_key.pem");
pub const CLIENT_CERT: &str = include_str!("../data/vector_c_client_cert.pem");
pub const CLIENT_KEY: &str = include_str!("../data/vector_c_client_key.pem");
pub const SALT: &str = "000102030405060708090a0b0c0d0e0f";

/// Every network wait of the tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(20);

pub async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// A TCP connection without Nagle's delay (requests are small and latency matters).
pub async fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// A client identity: certificate PEM and key PEM.
#[derive(Clone)]
pub struct Client {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Client {
    /// Vector C's client (serial 1; `docs/protocol/moonlight-http.md` § Test vectors).
    pub fn vector_c() -> Self {
        Client {
            cert_pem: CLIENT_CERT.into(),
            key_pem: CLIENT_KEY.into(),
        }
    }

    /// A certificate like qt/ios/embedded make: serial 0, CN "NVIDIA GameStream Client", v3, no
    /// extensions (key reused from vector C to keep the test fast).
    pub fn serial_zero() -> Self {
        let der = PrivatePkcs8KeyDer::from_pem_slice(CLIENT_KEY.as_bytes()).unwrap();
        let key = KeyPair::from_pkcs8_der_and_sign_algo(&der, &PKCS_RSA_SHA256).unwrap();
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, "NVIDIA GameStream Client");
        params.distinguished_name = name;
        params.serial_number = Some(SerialNumber::from_slice(&[0]));
        params.not_before = rcgen::date_time_ymd(2025, 1, 1);
        params.not_after = rcgen::date_time_ymd(2045, 1, 1);
        let cert = params.self_signed(&key).unwrap();
        Client {
            cert_pem: cert.pem(),
            key_pem: CLIENT_KEY.into(),
        }
    }

    pub fn info(&self) -> CertificateInfo {
        CertificateInfo::from_pem(&self.cert_pem).unwrap()
    }

    pub fn cert_hex(&self) -> String {
        hex::encode(&self.cert_pem)
    }
}

pub struct Harness {
    pub stores: Stores,
    pub broker: InMemoryPinBroker,
    pub http: SocketAddr,
    pub https: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

pub fn vector_c_stores() -> Stores {
    Stores::in_memory()
}

pub async fn seed_identity(stores: &Stores) {
    stores
        .identity
        .create_if_absent(ServerIdentity {
            cert_pem: SERVER_CERT.into(),
            key_pem: SERVER_KEY.into(),
            unique_id: "1f0e4c2a-7b3d-4e59-9a61-3c2d8e0b5f47".into(),
        })
        .await
        .unwrap();
}

/// Stores `client` as paired, to the default user (created).
pub async fn store_pairing(stores: &Stores, client: &Client) {
    let user = UserName::default_user();
    stores.users.put(User::new(user.clone())).await.expect("user");
    let pairing = Pairing {
        fingerprint: client.info().fingerprint(),
        cert_pem: client.cert_pem.clone(),
        user,
        device_name: None,
        paired_at: 0,
    };
    stores.pairings.put(pairing).await.expect("pairing");
}

/// Pairs `client` with `pin` entered on the PIN page (optionally for `user`); returns phase 4's reply.
pub async fn pair(
    h: &Harness,
    client: &Client,
    server_pin: &str,
    client_pin: &str,
    user: Option<&str>,
) -> Response {
    let phase1 = {
        let path = phase1_path(client);
        let addr = h.http;
        tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await.unwrap();
            within("phase 1", request(stream, "GET", &path, None)).await
        })
    };
    let secret = h.pending_secret().await;
    let body = match user {
        Some(u) => format!(r#"{{"pin":"{server_pin}","secret":"{secret}","user":"{u}"}}"#),
        None => format!(r#"{{"pin":"{server_pin}","secret":"{secret}"}}"#),
    };
    let r = h.post_pin(&body).await;
    assert_eq!((r.status, r.text().as_str()), (200, "OK"));
    let phase1 = within("phase 1 reply", phase1).await.unwrap();
    assert_eq!(phase1.status, 200);
    assert_eq!(
        phase1.element("paired").as_deref(),
        Some("1"),
        "{}",
        phase1.text()
    );
    let plaincert = String::from_utf8(hex::decode(phase1.element("plaincert").unwrap()).unwrap()).unwrap();
    assert_eq!(plaincert, SERVER_CERT);
    let (pin_ok, phase4) = ClientPairing::new(client.clone(), client_pin)
        .phases_2_to_4(h, &plaincert)
        .await;
    assert_eq!(pin_ok, server_pin == client_pin, "the client-side PIN check");
    phase4
}

pub fn test_limits() -> ConnectionLimits {
    ConnectionLimits {
        header_read_timeout: Duration::from_millis(500),
        tls_handshake_timeout: Duration::from_secs(2),
        shutdown_grace: Duration::from_millis(200),
        ..ConnectionLimits::default()
    }
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(|b| b).await
    }

    pub async fn start_with(
        configure: impl FnOnce(MoonlightServerBuilder) -> MoonlightServerBuilder,
    ) -> Self {
        let stores = Stores::in_memory();
        seed_identity(&stores).await;
        let broker = InMemoryPinBroker::default();
        let builder = MoonlightServer::builder()
            .with_stores(stores.clone())
            .with_pin_broker(Arc::new(broker.clone()))
            .with_bind_addrs(vec!["127.0.0.1".parse().unwrap()])
            .with_http_port(0)
            .with_https_port(0)
            .with_mdns(false)
            .with_connection_limits(test_limits())
            // These tests are about the protocol, not about who enters the PIN.
            .with_trusted_proxies(TrustedProxies {
                networks: vec![],
                allow_unauthenticated: true,
            });
        let server = configure(builder).build().await.unwrap();
        let http = server.http_addrs()[0];
        let https = server.https_addrs()[0];
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run_until(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Harness {
            stores,
            broker,
            http,
            https,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            within("server shutdown", task).await.unwrap();
        }
    }

    pub async fn get(&self, path_and_query: &str) -> Response {
        let stream = TcpStream::connect(self.http).await.unwrap();
        stream.set_nodelay(true).unwrap();
        within(path_and_query, request(stream, "GET", path_and_query, None)).await
    }

    pub async fn post_pin(&self, body: &str) -> Response {
        let stream = TcpStream::connect(self.http).await.unwrap();
        stream.set_nodelay(true).unwrap();
        within(
            "POST /pin/",
            request(stream, "POST", "/pin/", Some(body.as_bytes())),
        )
        .await
    }

    pub async fn get_tls(&self, client: Option<&Client>, path_and_query: &str) -> (Response, Vec<u8>) {
        let (stream, server_cert) = within("TLS handshake", tls_connect(self.https, client)).await;
        (
            within(path_and_query, request(stream, "GET", path_and_query, None)).await,
            server_cert,
        )
    }

    /// Waits until a PIN entry is pending and returns its secret.
    pub async fn pending_secret(&self) -> String {
        within("pending PIN entry", async {
            loop {
                if let Some(p) = self.broker.pending().await.unwrap().first() {
                    return p.secret.as_str().to_owned();
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The text of the first `<name>` element.
    pub fn element(&self, name: &str) -> Option<String> {
        let text = self.text();
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find(&format!("</{name}>"))? + start;
        Some(text[start..end].to_owned())
    }

    pub fn xml_status(&self) -> Option<u32> {
        let text = self.text();
        let start = text.find("status_code=\"")? + 13;
        text[start..].split('"').next()?.parse().ok()
    }
}

/// Sends one request with `Connection: close` and reads the response.
pub async fn request<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> Response {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    if let Some(body) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    if let Some(body) = body {
        stream.write_all(body).await.unwrap();
    }
    stream.flush().await.unwrap();
    read_response(&mut stream)
        .await
        .expect("a complete HTTP response")
}

pub async fn read_response<S: AsyncRead + Unpin>(stream: &mut S) -> Option<Response> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(response) = parse_response(&buf) {
            return Some(response);
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return parse_response(&buf),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn parse_response(buf: &[u8]) -> Option<Response> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers.get("content-length")?.parse().ok()?;
    let body = buf.get(end + 4..end + 4 + len)?.to_vec();
    Some(Response {
        status,
        headers,
        body,
    })
}

#[derive(Debug)]
struct AnyServerCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

pub fn client_config(client: Option<&Client>) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider)));
    let mut config = match client {
        Some(c) => {
            let cert = CertificateDer::from_pem_slice(c.cert_pem.as_bytes()).unwrap();
            let key = PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes()).unwrap();
            builder.with_client_auth_cert(vec![cert], key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Connects over TLS; returns the stream and the DER of the single server certificate.
pub async fn tls_connect(
    addr: SocketAddr,
    client: Option<&Client>,
) -> (tokio_rustls::client::TlsStream<TcpStream>, Vec<u8>) {
    let connector = tokio_rustls::TlsConnector::from(client_config(client));
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let stream = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let certs = stream.get_ref().1.peer_certificates().unwrap();
    assert_eq!(certs.len(), 1, "the server sends exactly one certificate");
    let der = certs[0].to_vec();
    (stream, der)
}

/// The client side of pairing phases 2–4 after phase 1 with `pin`; like a real client, it loads
/// its certificate and key once.
pub struct ClientPairing {
    pub key: [u8; 16],
    pub client: Client,
    info: CertificateInfo,
    signer: ServerSigner,
}

impl ClientPairing {
    pub fn new(client: Client, pin: &str) -> Self {
        ClientPairing {
            key: derive_key(&hex::decode(SALT).unwrap(), pin).unwrap(),
            info: client.info(),
            signer: ServerSigner::from_pem(&client.key_pem).unwrap(),
            client,
        }
    }

    /// Runs phases 2–4 against the server; returns (phase 3 server check ok, phase-4 reply).
    pub async fn phases_2_to_4(&self, harness: &Harness, server_cert_pem: &str) -> (bool, Response) {
        let c = [0x11u8; 16];
        let q = format!(
            "/pair?uniqueid=0123456789ABCDEF&devicename=roth&updateState=1&clientchallenge={}",
            hex::encode(aes_ecb_encrypt(&self.key, &c).unwrap())
        );
        let r = harness.get(&q).await;
        assert_eq!(r.xml_status(), Some(200), "{}", r.text());
        assert_eq!(r.element("paired").as_deref(), Some("1"));
        let resp = aes_ecb_decrypt(
            &self.key,
            &hex::decode(r.element("challengeresponse").unwrap()).unwrap(),
        )
        .unwrap();
        let (server_hash, sc) = resp.split_at(32);
        let cs = [0x22u8; 16];
        let ch = sha256(&[sc, self.info.signature(), &cs]);
        let q = format!(
            "/pair?uniqueid=0123456789ABCDEF&devicename=roth&updateState=1&serverchallengeresp={}",
            hex::encode(aes_ecb_encrypt(&self.key, &ch).unwrap())
        );
        let r = harness.get(&q).await;
        assert_eq!(r.element("paired").as_deref(), Some("1"), "{}", r.text());
        let secret = hex::decode(r.element("pairingsecret").unwrap()).unwrap();
        let (ss, signature) = secret.split_at(16);
        let server = CertificateInfo::from_pem(server_cert_pem).unwrap();
        assert!(
            server.verify(ss, signature),
            "server signature must verify with plaincert"
        );
        let pin_ok = sha256(&[&c, server.signature(), ss])[..] == server_hash[..];
        let mut pairing_secret = cs.to_vec();
        pairing_secret.extend(self.signer.sign(&cs).unwrap());
        let q = format!(
            "/pair?uniqueid=0123456789ABCDEF&devicename=roth&updateState=1&clientpairingsecret={}",
            hex::encode(pairing_secret)
        );
        (pin_ok, harness.get(&q).await)
    }
}

pub fn phase1_path(client: &Client) -> String {
    format!(
        "/pair?uniqueid=0123456789ABCDEF&uuid=abc&devicename=roth&updateState=1&phrase=getservercert&salt={SALT}&clientcert={}",
        client.cert_hex()
    )
}
