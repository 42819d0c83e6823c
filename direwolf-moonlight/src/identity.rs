//! The server identity: a self-signed RSA-2048 certificate every client pins at pairing, its key,
//! and the server `uniqueid` (`docs/protocol/moonlight-http.md` § Server identity, § Server info).

use std::fmt;

use direwolf_core::{Fingerprint, ServerIdentity};
use rand::RngCore;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_RSA_SHA256, SerialNumber};
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, pem::PemObject};

use crate::crypto::{CertificateInfo, CryptoError, ServerSigner};

/// The common name of generated server certificates (clients do not check it).
pub const CERT_COMMON_NAME: &str = "Direwolf GameStream Host";

/// Why an identity could not be created or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// RSA key generation failed.
    #[error("RSA key generation failed: {0}")]
    KeyGeneration(String),
    /// Building or signing the certificate failed.
    #[error("certificate generation failed: {0}")]
    Certificate(String),
    /// The stored certificate or key is unusable.
    #[error("the stored server identity is unusable: {0}")]
    Invalid(#[from] CryptoError),
    /// The stored key does not belong to the stored certificate.
    #[error("the stored private key does not match the stored certificate")]
    KeyMismatch,
}

/// Generates a fresh identity: RSA-2048 key, self-signed X.509 v3 certificate with
/// sha256WithRSAEncryption valid for 20 years from today, a random positive serial, and a random
/// UUID (version 4) as `uniqueid`. Takes a few hundred milliseconds (RSA key generation); call it
/// from a blocking context.
///
/// # Errors
/// [`IdentityError::KeyGeneration`] or [`IdentityError::Certificate`].
pub fn generate_identity() -> Result<ServerIdentity, IdentityError> {
    // The rsa crate generates the key because ring cannot generate RSA keys (nor can rcgen on
    // its ring backend). That is all rsa does here: ring makes and checks every signature
    // (`crate::crypto`), so rsa's non-constant-time private-key operations (RUSTSEC-2023-0071)
    // are never run where a client could time them.
    let mut rng = rand::rngs::OsRng;
    let private =
        rsa::RsaPrivateKey::new(&mut rng, 2048).map_err(|e| IdentityError::KeyGeneration(e.to_string()))?;
    let pkcs8 = private
        .to_pkcs8_der()
        .map_err(|e| IdentityError::KeyGeneration(e.to_string()))?;
    let key_pem = private
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| IdentityError::KeyGeneration(e.to_string()))?
        .to_string();
    let key_pair = KeyPair::from_pkcs8_der_and_sign_algo(
        &PrivatePkcs8KeyDer::from(pkcs8.as_bytes().to_vec()),
        &PKCS_RSA_SHA256,
    )
    .map_err(|e| IdentityError::Certificate(e.to_string()))?;

    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, CERT_COMMON_NAME);
    params.distinguished_name = name;
    let mut serial = [0u8; 16];
    rng.fill_bytes(&mut serial);
    serial[0] &= 0x7F; // positive
    serial[0] |= 0x01; // and never a shorter encoding
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    let (year, month, day) = civil_from_days(direwolf_core::model::unix_now() / 86_400);
    params.not_before = rcgen::date_time_ymd(year, month, day);
    params.not_after = rcgen::date_time_ymd(year + 20, month, day.min(28));
    let cert = params
        .self_signed(&key_pair)
        .map_err(|e| IdentityError::Certificate(e.to_string()))?;
    Ok(ServerIdentity {
        cert_pem: cert.pem(),
        key_pem,
        unique_id: random_uuid(),
    })
}

/// A random version-4 UUID in the usual lower-case 8-4-4-4-12 form.
pub fn random_uuid() -> String {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0F) | 0x40;
    b[8] = (b[8] & 0x3F) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// (year, month, day) of a day count since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(days: u64) -> (i32, u8, u8) {
    // Howard Hinnant's days_from_civil inverse, for non-negative day counts.
    let z = days as i64 + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
    (year, month, day)
}

/// A [`ServerIdentity`] parsed and ready for TLS and pairing.
pub struct LoadedIdentity {
    identity: ServerIdentity,
    cert: CertificateInfo,
    key_der: PrivateKeyDer<'static>,
    signer: ServerSigner,
}

impl LoadedIdentity {
    /// Parses and checks an identity: the certificate parses, the key is RSA, and the key signs
    /// what the certificate's key verifies.
    ///
    /// # Errors
    /// [`IdentityError::Invalid`] or [`IdentityError::KeyMismatch`].
    pub fn new(identity: ServerIdentity) -> Result<Self, IdentityError> {
        let cert = CertificateInfo::from_pem(&identity.cert_pem)?;
        let key_der = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes())
            .map_err(|e| CryptoError::BadPrivateKey(e.to_string()))?;
        let signer = ServerSigner::from_der(&key_der)?;
        let probe = b"direwolf identity check";
        if !cert.verify(probe, &signer.sign(probe)?) {
            return Err(IdentityError::KeyMismatch);
        }
        Ok(LoadedIdentity {
            identity,
            cert,
            key_der,
            signer,
        })
    }

    /// The stored identity.
    pub fn identity(&self) -> &ServerIdentity {
        &self.identity
    }

    /// The certificate.
    pub fn cert(&self) -> &CertificateInfo {
        &self.cert
    }

    /// The certificate as rustls wants it.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        CertificateDer::from(self.cert.der().to_vec())
    }

    /// The private key as rustls wants it.
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        self.key_der.clone_key()
    }

    /// Signs with the server key.
    pub fn signer(&self) -> &ServerSigner {
        &self.signer
    }

    /// The certificate's fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        self.cert.fingerprint()
    }

    /// `plaincert`: upper-case hex of the certificate's PEM text, byte for byte as stored.
    pub fn plaincert_hex(&self) -> String {
        hex::encode_upper(self.identity.cert_pem.as_bytes())
    }
}

impl fmt::Debug for LoadedIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedIdentity")
            .field("unique_id", &self.identity.unique_id)
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use x509_parser::prelude::{FromDer, X509Certificate, X509Version};

    use super::*;
    use crate::crypto::tests::{VECTOR_C_CLIENT_KEY, VECTOR_C_SERVER_CERT, VECTOR_C_SERVER_KEY};

    #[test]
    fn generated_identity_has_the_required_shape() {
        let id = generate_identity().unwrap();
        let loaded = LoadedIdentity::new(id.clone()).unwrap();
        let (_, cert) = X509Certificate::from_der(loaded.cert().der()).unwrap();
        assert_eq!(cert.version(), X509Version::V3);
        assert_eq!(
            cert.signature_algorithm.algorithm.to_id_string(),
            "1.2.840.113549.1.1.11"
        );
        assert_eq!(cert.subject(), cert.issuer());
        assert_eq!(loaded.cert().signature().len(), 256);
        let validity = cert.validity();
        let years = (validity.not_after.timestamp() - validity.not_before.timestamp()) / (365 * 86_400);
        assert_eq!(years, 20);
        assert!(cert.tbs_certificate.raw_serial()[0] & 0x80 == 0);
        assert_eq!(id.unique_id.len(), 36);
        assert_eq!(&id.unique_id[14..15], "4");
        assert!(id.cert_pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(id.key_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(!format!("{loaded:?}").contains("PRIVATE"));
        assert_ne!(generate_identity().unwrap().unique_id, id.unique_id);
    }

    #[test]
    fn vector_c_identity_loads_and_mismatched_key_is_refused() {
        let id = ServerIdentity {
            cert_pem: VECTOR_C_SERVER_CERT.into(),
            key_pem: VECTOR_C_SERVER_KEY.into(),
            unique_id: "u".into(),
        };
        let loaded = LoadedIdentity::new(id.clone()).unwrap();
        assert!(loaded.plaincert_hex().starts_with("2D2D2D2D2D424547494E"));
        assert_eq!(loaded.plaincert_hex().len(), 1994);
        let wrong = ServerIdentity {
            key_pem: VECTOR_C_CLIENT_KEY.into(),
            ..id
        };
        assert!(matches!(
            LoadedIdentity::new(wrong),
            Err(IdentityError::KeyMismatch)
        ));
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_089), (2025, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }
}
