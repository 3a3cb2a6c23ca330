//! Generation of a fresh key set: an Ed25519 CA, an end-entity signing
//! certificate that meets the C2PA certificate profile, the watermark
//! secret and the checkpoint key.

use rand_core::{OsRng, RngCore};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use super::KeyError;

/// Lifetime of the local CA certificate: 20 years.
pub const CA_LIFETIME: Duration = Duration::days(20 * 365);
/// Lifetime of the signing certificate: 3 years. Without a time-stamp
/// authority, C2PA readers check a manifest against the certificate's
/// validity at reading time, so manifests read back Invalid once it ends.
pub const SIGNER_LIFETIME: Duration = Duration::days(3 * 365);
/// Backdating of `notBefore`, so that a reader whose clock runs slightly
/// behind still accepts a fresh certificate.
const CLOCK_SKEW: Duration = Duration::minutes(5);

/// Country code in both subjects: ZZ is the ISO 3166 user-assigned code
/// for an unknown country, because a local key set has no owner yet.
const COUNTRY: &str = "ZZ";
const CA_ORGANIZATION: &str = "mmgen local CA (untrusted)";
const CA_COMMON_NAME: &str = "mmgen local CA";
const SIGNER_ORGANIZATION: &str = "mmgen local signer (untrusted)";
const SIGNER_COMMON_NAME: &str = "mmgen C2PA signer";

/// The PEM and text contents of every file in a new key set.
pub struct GeneratedFiles {
    pub ca_key_pem: String,
    pub ca_cert_pem: String,
    pub signer_key_pem: String,
    pub signer_chain_pem: String,
    pub watermark_hex: String,
    pub checkpoint_key_pem: String,
}

/// Generates every key and certificate of a new key set in memory.
pub fn generate(now: OffsetDateTime) -> Result<GeneratedFiles, KeyError> {
    let ca_key = new_ed25519_key("the CA key")?;
    let ca_params = ca_params(now)?;
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .map_err(gen_err("the CA certificate"))?;

    let signer_key = new_ed25519_key("the signer key")?;
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let signer_cert = signer_params(now)?
        .signed_by(&signer_key, &issuer)
        .map_err(gen_err("the signer certificate"))?;

    let checkpoint_key = new_ed25519_key("the checkpoint key")?;

    let mut watermark = [0u8; 32];
    OsRng
        .try_fill_bytes(&mut watermark)
        .map_err(gen_err("the watermark secret"))?;

    let ca_cert_pem = ca_cert.pem();
    Ok(GeneratedFiles {
        ca_key_pem: ca_key.serialize_pem(),
        signer_chain_pem: format!("{}{}", signer_cert.pem(), ca_cert_pem),
        ca_cert_pem,
        signer_key_pem: signer_key.serialize_pem(),
        watermark_hex: format!("{}\n", hex(&watermark)),
        checkpoint_key_pem: checkpoint_key.serialize_pem(),
    })
}

fn ca_params(now: OffsetDateTime) -> Result<CertificateParams, KeyError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(CA_ORGANIZATION, CA_COMMON_NAME);
    params.serial_number = Some(random_serial()?);
    params.not_before = now - CLOCK_SKEW;
    params.not_after = now + CA_LIFETIME;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

/// End-entity parameters that pass the C2PA certificate profile: v3,
/// digitalSignature only, an allowed extended key usage (never
/// anyExtendedKeyUsage) and an Authority Key Identifier.
fn signer_params(now: OffsetDateTime) -> Result<CertificateParams, KeyError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(SIGNER_ORGANIZATION, SIGNER_COMMON_NAME);
    params.serial_number = Some(random_serial()?);
    params.not_before = now - CLOCK_SKEW;
    params.not_after = now + SIGNER_LIFETIME;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::EmailProtection];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

/// A subject with C, O and CN. c2pa 0.90 reads a manifest signed by a
/// certificate without O back as Invalid (`claimSignature.mismatch`).
fn subject(organization: &str, common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CountryName, COUNTRY);
    name.push(DnType::OrganizationName, organization);
    name.push(DnType::CommonName, common_name);
    name
}

/// A positive 127-bit serial number, as RFC 5280 section 4.1.2.2 allows.
fn random_serial() -> Result<SerialNumber, KeyError> {
    let mut bytes = [0u8; 16];
    OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(gen_err("a certificate serial number"))?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

fn new_ed25519_key(what: &'static str) -> Result<KeyPair, KeyError> {
    KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(gen_err(what))
}

fn gen_err<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> KeyError {
    move |e| KeyError::Generate {
        what,
        reason: e.to_string(),
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
