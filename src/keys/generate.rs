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
pub(super) const SIGNER_ORGANIZATION: &str = "mmgen local signer (untrusted)";
const SIGNER_COMMON_NAME: &str = "mmgen C2PA signer";
/// Upper bound of an organizationName in X.520 (`ub-organization-name`).
const MAX_ORGANIZATION_CHARS: usize = 64;

/// Choices for a new key set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyOptions {
    /// Organisation (O) in both certificate subjects, which C2PA readers
    /// show as the manifest's issuer. `None` keeps the local defaults,
    /// whose names contain "untrusted".
    pub organization: Option<String>,
}

impl KeyOptions {
    /// Checks the organisation name: 1 to 64 characters, no control
    /// characters.
    pub fn validate(&self) -> Result<(), KeyError> {
        let Some(name) = &self.organization else {
            return Ok(());
        };
        let chars = name.chars().count();
        if chars == 0 || chars > MAX_ORGANIZATION_CHARS || name.chars().any(char::is_control) {
            return Err(KeyError::InvalidOption(format!(
                "organisation name {name:?} is invalid; use 1 to {MAX_ORGANIZATION_CHARS} \
                 characters without control characters"
            )));
        }
        Ok(())
    }
}

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
pub fn generate(now: OffsetDateTime, options: &KeyOptions) -> Result<GeneratedFiles, KeyError> {
    options.validate()?;
    let ca_organization = options.organization.as_deref().unwrap_or(CA_ORGANIZATION);
    let signer_organization = options
        .organization
        .as_deref()
        .unwrap_or(SIGNER_ORGANIZATION);

    let ca_key = new_ed25519_key("the CA key")?;
    let ca_params = ca_params(now, ca_organization)?;
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .map_err(gen_err("the CA certificate"))?;

    let signer_key = new_ed25519_key("the signer key")?;
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let subject = subject(signer_organization, SIGNER_COMMON_NAME);
    let signer_cert = signer_params(subject, now, now + SIGNER_LIFETIME)?
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

/// A new signing key and its PEM chain (end-entity, then the CA), issued
/// by the CA in `ca_cert_pem` for `subject`, valid until `not_after`.
pub struct IssuedSigner {
    pub key_pem: String,
    pub chain_pem: String,
}

/// Issues a new signing certificate from an existing CA, for rotation.
pub fn issue_signer(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    subject: DistinguishedName,
    now: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<IssuedSigner, KeyError> {
    let ca_key = KeyPair::from_pem(ca_key_pem).map_err(gen_err("the CA key"))?;
    let issuer =
        Issuer::from_ca_cert_pem(ca_cert_pem, &ca_key).map_err(gen_err("the CA issuer"))?;
    let signer_key = new_ed25519_key("the signer key")?;
    let signer_cert = signer_params(subject, now, not_after)?
        .signed_by(&signer_key, &issuer)
        .map_err(gen_err("the signer certificate"))?;
    Ok(IssuedSigner {
        key_pem: signer_key.serialize_pem(),
        chain_pem: format!("{}{ca_cert_pem}", signer_cert.pem()),
    })
}

/// Builds the subject of a signing certificate for `organization`, with
/// the default common name.
pub fn signer_subject(organization: &str) -> DistinguishedName {
    subject(organization, SIGNER_COMMON_NAME)
}

fn ca_params(now: OffsetDateTime, organization: &str) -> Result<CertificateParams, KeyError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(organization, CA_COMMON_NAME);
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
fn signer_params(
    subject: DistinguishedName,
    now: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertificateParams, KeyError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = subject;
    params.serial_number = Some(random_serial()?);
    params.not_before = now - CLOCK_SKEW;
    params.not_after = not_after;
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
