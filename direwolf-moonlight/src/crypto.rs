//! The cryptographic steps of Moonlight pairing (`docs/protocol/moonlight-http.md` § Pairing
//! crypto).
//!
//! * AES-128 in ECB mode without padding over whole 16-byte blocks,
//! * SHA-256,
//! * RSA PKCS#1 v1.5 with SHA-256, both through ring (the implementation rustls uses in the TLS
//!   handshake): signing with the server key (constant time) and verifying with a client
//!   certificate's key,
//! * `sig(cert)`: the signatureValue bits of an X.509 certificate,
//! * the pairing key `K = SHA-256(salt[0..16] ‖ PIN)[0..16]`.

use std::fmt;
use std::sync::Arc;

use aes::Aes128;
use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit, generic_array::GenericArray};
use direwolf_core::Fingerprint;
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY, RSA_PKCS1_SHA256, RsaKeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;

/// Errors of the pairing cryptography. Every one means "this input cannot be used".
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoError {
    /// The salt is shorter than 16 bytes.
    #[error("salt too short ({0} bytes, at least 16 needed)")]
    SaltTooShort(usize),
    /// AES input is not a whole number of 16-byte blocks.
    #[error("AES input of {0} bytes is not a multiple of 16")]
    NotBlockAligned(usize),
    /// The text is not PEM with a certificate in it.
    #[error("no PEM certificate found")]
    NoPemCertificate,
    /// The certificate's DER does not parse as X.509.
    #[error("the certificate does not parse as X.509: {0}")]
    BadCertificate(String),
    /// The certificate's key is not RSA (every Moonlight client uses RSA 2048).
    #[error("the certificate's key is not an RSA key")]
    NotRsa,
    /// The private key cannot be used for RSA PKCS#1 v1.5 SHA-256 signatures.
    #[error("the private key cannot sign with RSA PKCS#1 v1.5 SHA-256: {0}")]
    BadPrivateKey(String),
    /// Signing failed.
    #[error("signing failed: {0}")]
    SignFailed(String),
}

/// SHA-256 over the concatenation of `parts`.
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// The AES key of a pairing: the first 16 bytes of `SHA-256(salt[0..16] ‖ pin)`.
///
/// Only the first 16 bytes of the salt are used: legacy ios builds sent `salt ‖ PIN` (20 bytes) and
/// derived the key from the first 16 (`docs/protocol/moonlight-http.md` § Pairing crypto, § Test
/// vectors: vector A).
///
/// # Errors
/// [`CryptoError::SaltTooShort`] when `salt` has fewer than 16 bytes.
pub fn derive_key(salt: &[u8], pin: &str) -> Result<[u8; 16], CryptoError> {
    let salt = salt.get(..16).ok_or(CryptoError::SaltTooShort(salt.len()))?;
    let hash = sha256(&[salt, pin.as_bytes()]);
    let mut key = [0u8; 16];
    key.copy_from_slice(&hash[..16]);
    Ok(key)
}

fn check_blocks(data: &[u8]) -> Result<(), CryptoError> {
    if !data.len().is_multiple_of(16) {
        return Err(CryptoError::NotBlockAligned(data.len()));
    }
    Ok(())
}

/// AES-128-ECB encryption without padding.
///
/// # Errors
/// [`CryptoError::NotBlockAligned`] when `data` is not a multiple of 16 bytes.
pub fn aes_ecb_encrypt(key: &[u8; 16], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    check_blocks(data)?;
    let cipher = Aes128::new(GenericArray::from_slice(key));
    let mut out = data.to_vec();
    for block in out.chunks_exact_mut(16) {
        cipher.encrypt_block(GenericArray::from_mut_slice(block));
    }
    Ok(out)
}

/// AES-128-ECB decryption without padding.
///
/// # Errors
/// [`CryptoError::NotBlockAligned`] when `data` is not a multiple of 16 bytes.
pub fn aes_ecb_decrypt(key: &[u8; 16], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    check_blocks(data)?;
    let cipher = Aes128::new(GenericArray::from_slice(key));
    let mut out = data.to_vec();
    for block in out.chunks_exact_mut(16) {
        cipher.decrypt_block(GenericArray::from_mut_slice(block));
    }
    Ok(out)
}

/// The largest RSA key whose signatures [`CertificateInfo::verify`] checks, in bits (the bound of
/// the pure-Rust verifier used before ring; every Moonlight client uses 2048).
pub const MAX_RSA_BITS: usize = 4096;

/// An X.509 certificate as pairing needs it: its PEM text, DER, `sig(cert)` and public key.
#[derive(Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    pem: String,
    der: Vec<u8>,
    signature: Vec<u8>,
    public_key: Vec<u8>,
    is_rsa: bool,
    /// The RSA modulus size in bits (0 if not RSA).
    rsa_bits: usize,
}

impl CertificateInfo {
    /// Parses the first certificate of a PEM text.
    ///
    /// # Errors
    /// [`CryptoError::NoPemCertificate`] or [`CryptoError::BadCertificate`].
    pub fn from_pem(pem: &str) -> Result<Self, CryptoError> {
        let der =
            CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|_| CryptoError::NoPemCertificate)?;
        let mut info = Self::from_der(der.as_ref())?;
        info.pem = pem.to_owned();
        Ok(info)
    }

    /// Parses a DER certificate; [`CertificateInfo::pem`] is then empty.
    ///
    /// # Errors
    /// [`CryptoError::BadCertificate`].
    pub fn from_der(der: &[u8]) -> Result<Self, CryptoError> {
        let (rest, cert) =
            X509Certificate::from_der(der).map_err(|e| CryptoError::BadCertificate(e.to_string()))?;
        if !rest.is_empty() {
            return Err(CryptoError::BadCertificate(
                "trailing bytes after the certificate".into(),
            ));
        }
        let spki = &cert.tbs_certificate.subject_pki;
        // rsaEncryption, 1.2.840.113549.1.1.1
        let is_rsa = spki.algorithm.algorithm.to_id_string() == "1.2.840.113549.1.1.1";
        let rsa_bits = match spki.parsed() {
            Ok(PublicKey::RSA(key)) if is_rsa => bit_length(key.modulus),
            _ => 0,
        };
        Ok(CertificateInfo {
            pem: String::new(),
            der: der.to_vec(),
            signature: cert.signature_value.data.to_vec(),
            public_key: spki.subject_public_key.data.to_vec(),
            is_rsa,
            rsa_bits,
        })
    }

    /// The PEM text the certificate was read from (empty if it came from DER).
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// `sig(cert)`: the signatureValue BIT STRING contents, without the unused-bits octet.
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    /// Lower-case hex SHA-256 of the DER (what HTTPS requests are authorised by).
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of_der(&self.der)
    }

    /// Whether the subject key is RSA.
    pub fn is_rsa(&self) -> bool {
        self.is_rsa
    }

    /// The RSA modulus size in bits (0 if the key is not RSA).
    pub fn rsa_bits(&self) -> usize {
        self.rsa_bits
    }

    /// Checks an RSA PKCS#1 v1.5 SHA-256 signature of `message` made with this certificate's key
    /// (ring; keys of 1024 to [`MAX_RSA_BITS`] bits).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        if !self.is_rsa || self.rsa_bits > MAX_RSA_BITS {
            return false;
        }
        ring::signature::UnparsedPublicKey::new(
            &RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
            &self.public_key,
        )
        .verify(message, signature)
        .is_ok()
    }
}

/// The bit length of a big-endian unsigned integer.
fn bit_length(be: &[u8]) -> usize {
    let start = be.iter().position(|b| *b != 0).unwrap_or(be.len());
    match be.get(start) {
        None => 0,
        Some(first) => (be.len() - start) * 8 - first.leading_zeros() as usize,
    }
}

impl fmt::Debug for CertificateInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateInfo")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

/// Signs with the server's private key: RSA PKCS#1 v1.5 with SHA-256 (deterministic), through
/// ring.
#[derive(Clone)]
pub struct ServerSigner {
    key: Arc<RsaKeyPair>,
    random: SystemRandom,
}

impl ServerSigner {
    /// Loads a PKCS#8 (or PKCS#1) PEM private key.
    ///
    /// # Errors
    /// [`CryptoError::BadPrivateKey`] when the key does not parse or is not RSA.
    pub fn from_pem(key_pem: &str) -> Result<Self, CryptoError> {
        let der = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| CryptoError::BadPrivateKey(e.to_string()))?;
        Self::from_der(&der)
    }

    /// Loads a DER private key: PKCS#8 or PKCS#1, RSA of at least 2048 bits (as rustls takes
    /// it for TLS).
    ///
    /// # Errors
    /// [`CryptoError::BadPrivateKey`] when the key does not parse or is not RSA.
    pub fn from_der(der: &PrivateKeyDer<'_>) -> Result<Self, CryptoError> {
        let key = match der {
            PrivateKeyDer::Pkcs8(der) => RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()),
            PrivateKeyDer::Pkcs1(der) => RsaKeyPair::from_der(der.secret_pkcs1_der()),
            _ => return Err(CryptoError::BadPrivateKey("not an RSA key".into())),
        }
        .map_err(|e| CryptoError::BadPrivateKey(e.to_string()))?;
        Ok(ServerSigner {
            key: Arc::new(key),
            random: SystemRandom::new(),
        })
    }

    /// `Sign(message)`: RSA PKCS#1 v1.5 over SHA-256 of `message`.
    ///
    /// # Errors
    /// [`CryptoError::SignFailed`] if the underlying signer fails.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &self.random, message, &mut signature)
            .map_err(|e| CryptoError::SignFailed(e.to_string()))?;
        Ok(signature)
    }
}

impl fmt::Debug for ServerSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerSigner(<redacted>)")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Vector C's server certificate (`docs/protocol/moonlight-http.md` § Test vectors).
    pub(crate) const VECTOR_C_SERVER_CERT: &str = include_str!("../tests/data/vector_c_server_cert.pem");
    pub(crate) const VECTOR_C_SERVER_KEY: &str = include_str!("../tests/data/vector_c_server_key.pem");
    pub(crate) const VECTOR_C_CLIENT_CERT: &str = include_str!("../tests/data/vector_c_client_cert.pem");
    pub(crate) const VECTOR_C_CLIENT_KEY: &str = include_str!("../tests/data/vector_c_client_key.pem");

    pub(crate) fn unhex(s: &str) -> Vec<u8> {
        let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        hex::decode(clean).expect("test vector is hex")
    }

    /// Vector A (`docs/protocol/moonlight-http.md` § Test vectors).
    #[test]
    fn vector_a_key_derivation_and_aes() {
        let salt = unhex("000102030405060708090a0b0c0d0e0f");
        assert_eq!(
            hex::encode_upper(sha256(&[&salt, b"1234"])),
            "BAD0B4F7CAE08EB7C1B5ACC763A8ED25242E2C9173E81F3F624B1FA5303CF6CE"
        );
        let k = derive_key(&salt, "1234").unwrap();
        assert_eq!(hex::encode_upper(k), "BAD0B4F7CAE08EB7C1B5ACC763A8ED25");
        let c = unhex("101112131415161718191A1B1C1D1E1F");
        let enc = aes_ecb_encrypt(&k, &c).unwrap();
        assert_eq!(hex::encode_upper(&enc), "5FEBCDC985B2BADDD65925DA162380EB");
        assert_eq!(aes_ecb_decrypt(&k, &enc).unwrap(), c);

        // Legacy ios salt (salt ‖ PIN): only the first 16 bytes count.
        let legacy = unhex("000102030405060708090a0b0c0d0e0f31323334");
        assert_eq!(derive_key(&legacy, "1234").unwrap(), k);
        // Wrong PIN gives a different key and garbage.
        let wrong = derive_key(&salt, "0000").unwrap();
        assert_eq!(hex::encode_upper(wrong), "3556C4BC34453058DCE6B2728FF7ABAC");
        assert_eq!(
            hex::encode_upper(aes_ecb_decrypt(&wrong, &enc).unwrap()),
            "14C77A440659C8FBC35DFADB10B1C849"
        );
        assert_eq!(
            derive_key(&salt[..15], "1234"),
            Err(CryptoError::SaltTooShort(15))
        );
        assert_eq!(
            aes_ecb_encrypt(&k, &[0; 17]),
            Err(CryptoError::NotBlockAligned(17))
        );
        assert_eq!(
            aes_ecb_decrypt(&k, &[0; 15]),
            Err(CryptoError::NotBlockAligned(15))
        );
    }

    /// Wolf's testCrypto vector and the key/AES part of its pairing test
    /// (`docs/protocol/moonlight-http.md` § Test vectors).
    #[test]
    fn vector_b_wolf() {
        let k = derive_key(&unhex("ff5dc6eda99339a8a0793e216c4257c4"), "5338").unwrap();
        assert_eq!(hex::encode_upper(k), "5EA186FFBA663C75AEC82187CE502647");
        let dec = aes_ecb_decrypt(&k, &unhex("c05930ac81d7bd426344235436046018")).unwrap();
        assert_eq!(hex::encode_upper(dec), "E3A915CCCB4C60206077D7E9A12316A5");

        let k = derive_key(&unhex("a0c288cfb0ea624ec3e5cc54d6ab7e38"), "7284").unwrap();
        assert_eq!(hex::encode_upper(k), "8A0191F59F31950D5DE3396901AA585D");
        let c = aes_ecb_decrypt(&k, &unhex("60418ac415307d7a1f9695ba04e1ae34")).unwrap();
        assert_eq!(hex::encode_upper(c), "5E152B9621185139A9697BD5FB9669FA");
        let ch = aes_ecb_decrypt(
            &k,
            &unhex("2798e4a56fa102558e8c93b892fbbe17b06b0cac91855ceb536ca2def53f7cf1"),
        )
        .unwrap();
        assert_eq!(
            hex::encode_upper(ch),
            "3875FFF759355205355EFE5D3065CD776A06A806CAAE0CEFAEF22475D593CEA4"
        );
        // challengeresponse = AES_K(h ‖ SC): decrypting it gives a 32-byte hash and SC = SS.
        let resp = aes_ecb_decrypt(
            &k,
            &unhex(
                "2A86F54B35997EAE9CC30D3F06E66D93178FB7892180FEE2B4BBB8C68473BDE1\
                 3401EFE6604815200DE9BEA7D2215FC4",
            ),
        )
        .unwrap();
        assert_eq!(hex::encode_upper(&resp[32..]), "AB7D178785415C893A6757C1B736105A");
    }

    /// Vector C (`docs/protocol/moonlight-http.md` § Test vectors): every crypto primitive on the
    /// fixed transcript.
    #[test]
    fn vector_c_primitives() {
        let server = CertificateInfo::from_pem(VECTOR_C_SERVER_CERT).unwrap();
        let client = CertificateInfo::from_pem(VECTOR_C_CLIENT_CERT).unwrap();
        assert_eq!(VECTOR_C_SERVER_CERT.len(), 997);
        assert_eq!(VECTOR_C_CLIENT_CERT.len(), 1013);
        assert!(server.is_rsa() && client.is_rsa());
        assert_eq!(
            server.fingerprint().as_str(),
            "e3184e5ee09b72f594b6e6ed6e572a6e5381439ccf7c0339142cedcbe74b2e47"
        );
        assert_eq!(
            client.fingerprint().as_str(),
            "47108458673331c7b447447a2b316bf23e3d067c93139a2be299081bf3a566e0"
        );
        let sig_server = unhex(
            "45EEB2A3C2A3651DB950FBA35B58EA6E8240690ADD0025C1D91D7D8D6D927C52617C1405A507486451BCBA853A2D3541F6F80325C224B7BC6356CD152B3DF2E2
             FD61716D32170C7DB9AA11A62C81D8945C3E52B7C70C14B42522842FFE4F8F7D15720CA2C2B0AEB37CFBE3E5C82D598251BAFB8AE5F89D87B356B3D8D62FA264
             38C072DAA9BFBD4A7DFE775DBE685DFD3096E644A845D4D1B13B9558A6138E6B01C4097E6DE81AF562A4604BF4F09D7DFE0EA3AE73E4C55B91080C646E2BC580
             E9D4E1ED60A30C74B3DD8532564B079296401E72B2F5EF15DBB2A511485FC7C2668A7A6894403BA0BF13DE6BE8B56A74ECB014056752D94FD03054B95DBEADE8",
        );
        assert_eq!(server.signature(), &sig_server[..]);
        let sig_client = unhex(
            "44DB211EB09378DB4703F29BF9F4981C186189BCD431C820ED767AB6B2A9B6CD2D7A78081E09D317A27358689F3B0F0238641CE3B6D34E29AA09D48D6C960BB0
             30F1A66097E300ECCE9CB3221CD038E0ADF1F94C2BDA9140C11E90DC253C52089F7001D2DC6271C5E4ADC724952EFC516A4DF77D1F9407D997F91477D41F33FF
             92119F340400EBB2D3F3F2129BC4182E46D813E4EC943E07D208FEEE8F59E986B663DB94F71D51F381B0C9C7E476057C2CAB7300A7AAC145A2548B79E34D8C2D
             76DBA40A8A219269D4199FD06EBCD5B8BD6D57C3C13F5BD4F16A0E99F74783A2F5129EFE808A6BF42171FC76AE70127C398198722B278508DA0027E4DEC7E685",
        );
        assert_eq!(client.signature(), &sig_client[..]);

        let c = unhex("101112131415161718191A1B1C1D1E1F");
        let ss = unhex("202122232425262728292A2B2C2D2E2F");
        let sc = unhex("303132333435363738393A3B3C3D3E3F");
        let cs = unhex("404142434445464748494A4B4C4D4E4F");
        let h = sha256(&[&c, server.signature(), &ss]);
        assert_eq!(
            hex::encode_upper(h),
            "717A4E7468E519F74DBEBB94F4BAD50CD3E7386F6CDB2570515340AB55079FA6"
        );
        let ch = sha256(&[&sc, client.signature(), &cs]);
        assert_eq!(
            hex::encode_upper(ch),
            "D54312E4F150B67F9FCB421F6891DF194F5D7CFEA77EC4674FB0AABCF70919D0"
        );

        let signer = ServerSigner::from_pem(VECTOR_C_SERVER_KEY).unwrap();
        let sig = signer.sign(&ss).unwrap();
        assert_eq!(sig.len(), 256);
        assert_eq!(
            hex::encode_upper(&sig[..32]),
            "BCCD3B2B780BF062A80F29357FC8A050F900D1EF1C30ACAB773471EFEAE6427E"
        );
        assert!(server.verify(&ss, &sig));
        assert!(!server.verify(&cs, &sig));

        let client_sig = unhex(
            "2EFFD77A1527DFCDB459B97C1EBA8FB0D81BED7AEDC6085B26183F5299295D86FB00381BF0B1DDEA5BD402AB23051E61
             C9921F7B080EC4D83AB2E40158EB4DA369A15196FC8E4CA18455C2A4BAF7501674BD1366751E3A4681DC1BC3DC71F3E0F4995F50D265B4D90607FB5E75EB6205
             DC1D8B18B97A8DE6DD4ACEE01AAA3D0E414F8D4F03675AA66C8BFB8C421160ED8A7554184E2FD21D66DB6D91589030986C3A050A044A5D860DC2A6D9DB78194E
             2F9D6ED2682D0096D3B347447B8BAFE87EE153EF2C5DAC07442D8C6CC03D68835D6796794997099F3161FDB12CEB572EB01E26984A59EF0D02E089B56C459B15
             668B17F6D1DEBB155FCC01CF30621319",
        );
        assert!(client.verify(&cs, &client_sig));
        assert!(!client.verify(&ss, &client_sig));
        assert!(!client.verify(&cs, &client_sig[..255]));
        let client_signer = ServerSigner::from_pem(VECTOR_C_CLIENT_KEY).unwrap();
        assert_eq!(client_signer.sign(&cs).unwrap(), client_sig);
    }

    #[test]
    fn key_sizes_and_non_rsa_keys() {
        assert_eq!(bit_length(&[]), 0);
        assert_eq!(bit_length(&[0, 0]), 0);
        assert_eq!(bit_length(&[0, 0x01]), 1);
        assert_eq!(bit_length(&[0, 0x80, 0]), 16);
        assert_eq!(bit_length(&[0x7f, 0xff]), 15);
        let client = CertificateInfo::from_pem(VECTOR_C_CLIENT_CERT).unwrap();
        assert_eq!(client.rsa_bits, 2048);
        // An ECDSA certificate: not RSA, so nothing verifies with it.
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::default().self_signed(&key).unwrap();
        let ecdsa = CertificateInfo::from_pem(&cert.pem()).unwrap();
        assert!(!ecdsa.is_rsa());
        assert_eq!(ecdsa.rsa_bits, 0);
        let signer = ServerSigner::from_pem(VECTOR_C_CLIENT_KEY).unwrap();
        let signature = signer.sign(b"m").unwrap();
        assert!(client.verify(b"m", &signature));
        assert!(!ecdsa.verify(b"m", &signature));
        // An ECDSA key cannot sign pairing messages.
        assert!(ServerSigner::from_pem(&key.serialize_pem()).is_err());
    }

    #[test]
    fn bad_certificates_are_errors() {
        assert_eq!(
            CertificateInfo::from_pem("hello").unwrap_err(),
            CryptoError::NoPemCertificate
        );
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            CertificateInfo::from_pem(garbage),
            Err(CryptoError::BadCertificate(_))
        ));
        assert!(ServerSigner::from_pem("nope").is_err());
    }
}
