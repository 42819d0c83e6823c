//! Whether a client certificate received in pairing phase 1 can later complete the HTTPS
//! handshake (`docs/protocol/moonlight-http.md` § Phase 1). The handshake checks the client's
//! signature with the certificate, through the parser rustls uses (webpki), which refuses what
//! x509-parser accepts: X.509 v1 and v2 certificates, and encodings that are not strict DER.
//! Its RSA algorithms take keys of 2048 to 8192 bits, and pairing phase 4 verifies with keys of
//! at most [`MAX_RSA_BITS`], so phase 1 asks for 2048 to 4096. Refusing all that at phase 1
//! spares the client a pairing that is stored but never works ("certificate unknown").

use rustls::pki_types::CertificateDer;

use crate::crypto::{CertificateInfo, MAX_RSA_BITS};

/// The smallest RSA key the HTTPS handshake verifies signatures with, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// Why `cert` could be paired but never used over HTTPS, if it could not.
///
/// # Errors
/// A message naming the problem: not RSA, a key size out of range, or a certificate webpki
/// refuses (with X.509 v1/v2 named as such).
pub fn check_usable_for_tls(cert: &CertificateInfo) -> Result<(), String> {
    if !cert.is_rsa() {
        return Err("the key must be RSA".into());
    }
    let bits = cert.rsa_bits();
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(format!(
            "the RSA key has {bits} bits; {MIN_RSA_BITS} to {MAX_RSA_BITS} are needed"
        ));
    }
    let der = CertificateDer::from(cert.der());
    match webpki::EndEntityCert::try_from(&der) {
        Ok(_) => Ok(()),
        Err(webpki::Error::UnsupportedCertVersion) => {
            Err("an X.509 v1 or v2 certificate; HTTPS needs X.509 v3".into())
        }
        Err(e) => Err(format!("the HTTPS handshake would refuse this certificate ({e})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::tests::VECTOR_C_CLIENT_CERT;

    /// Made with `openssl x509 -req` (no extensions, hence v1) from vector C's client key.
    const V1_CERT: &str = include_str!("../tests/data/v1_client_cert.pem");
    /// A v3 certificate with a 1024-bit RSA key (`openssl req -x509 -newkey rsa:1024`).
    const RSA1024_CERT: &str = include_str!("../tests/data/rsa1024_client_cert.pem");

    #[test]
    fn a_v3_rsa_2048_certificate_is_usable() {
        let cert = CertificateInfo::from_pem(VECTOR_C_CLIENT_CERT).unwrap();
        assert_eq!(check_usable_for_tls(&cert), Ok(()));
    }

    #[test]
    fn an_x509_v1_certificate_is_refused() {
        let cert = CertificateInfo::from_pem(V1_CERT).unwrap();
        assert!(cert.is_rsa() && cert.rsa_bits() == 2048);
        let refused = check_usable_for_tls(&cert).unwrap_err();
        assert!(refused.contains("X.509 v1"), "{refused}");
    }

    #[test]
    fn small_and_non_rsa_keys_are_refused() {
        let cert = CertificateInfo::from_pem(RSA1024_CERT).unwrap();
        let refused = check_usable_for_tls(&cert).unwrap_err();
        assert!(refused.contains("1024 bits"), "{refused}");
        let key = rcgen::KeyPair::generate().unwrap();
        let ecdsa = rcgen::CertificateParams::default().self_signed(&key).unwrap();
        let cert = CertificateInfo::from_pem(&ecdsa.pem()).unwrap();
        assert_eq!(check_usable_for_tls(&cert).unwrap_err(), "the key must be RSA");
    }

    #[test]
    fn a_bad_encoding_is_refused_by_one_parser_or_the_other() {
        // Vector C's certificate with two bytes (a NULL) after the signature, inside the outer
        // SEQUENCE: whichever parser notices first, phase 1 gets an error.
        let der = CertificateInfo::from_pem(VECTOR_C_CLIENT_CERT)
            .unwrap()
            .der()
            .to_vec();
        assert_eq!(&der[..2], &[0x30, 0x82], "a two-byte outer length");
        let len = usize::from(der[2]) << 8 | usize::from(der[3]);
        let mut bad = vec![0x30, 0x82];
        bad.extend_from_slice(&u16::try_from(len + 2).unwrap().to_be_bytes());
        bad.extend_from_slice(&der[4..]);
        bad.extend_from_slice(&[0x05, 0x00]);
        let checked = CertificateInfo::from_der(&bad)
            .map_err(|e| e.to_string())
            .and_then(|cert| check_usable_for_tls(&cert));
        assert!(checked.is_err());
    }
}
