//! The relay's identity: an offline CA and an online TLS key and certificate.
//!
//! # Files (all written 0600, each atomically: temporary file, fsync, rename)
//!
//! | file | what | needed to run |
//! |---|---|---|
//! | `ca.key` | CA private key (Ed25519, PKCS#8 PEM) | **no** — move it offline after `init` |
//! | `ca.crt` | self-signed CA certificate (PEM); its SHA-256 is the fingerprint | yes |
//! | `server.key` | online TLS private key (Ed25519, PKCS#8 PEM) | yes |
//! | `server.crt` | online TLS certificate signed by the CA (PEM) | yes |
//! | `fingerprint` | the CA fingerprint as text (informational; never read back) | no |
//!
//! The relay presents the chain `[server.crt, ca.crt]`. Clients pin the fingerprint of
//! `ca.crt` ([`CaFingerprint`]), so [`RelayIdentity::rotate_online`] can replace the online key
//! and certificate (with `ca.key` brought back) without changing the relay's address.
//!
//! The CA certificate is valid for [`CA_VALIDITY_DAYS`], an online certificate for
//! [`ONLINE_VALIDITY_DAYS`]; [`RelayIdentity::online_cert_valid_at`] tells when to rotate.
//! [`RelayIdentity::load`] refuses an online certificate that the CA did not sign, that is
//! outside its validity dates, or whose key is not `server.key`.
//!
//! Private keys are never logged: [`RelayIdentity`]'s `Debug` omits the online key.

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::RngCore as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::sign::CertifiedKey;
use zeroize::{Zeroize as _, Zeroizing};

use crate::tls::{provider, verify_online_cert};
use smpx_relay_protocol::{CaFingerprint, RelayAddress, RelayHost};

/// CA private key file (move it offline after `init`).
pub const CA_KEY_FILE: &str = "ca.key";
/// CA certificate file.
pub const CA_CERT_FILE: &str = "ca.crt";
/// Online TLS private key file.
pub const ONLINE_KEY_FILE: &str = "server.key";
/// Online TLS certificate file.
pub const ONLINE_CERT_FILE: &str = "server.crt";
/// The CA fingerprint as text (for the operator; not read back).
pub const FINGERPRINT_FILE: &str = "fingerprint";

/// Validity of the CA certificate.
pub const CA_VALIDITY_DAYS: u32 = 20 * 365;
/// Validity of an online certificate.
pub const ONLINE_VALIDITY_DAYS: u32 = 365;
/// Certificates start this long before their creation (clock skew between relay and clients).
pub const BACKDATE: Duration = Duration::from_secs(3600);

const CA_COMMON_NAME: &str = "smpx relay CA";
const ONLINE_COMMON_NAME: &str = "smpx relay";

/// Why an identity could not be created, loaded or rotated.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// `create` refuses to overwrite an existing identity.
    #[error("{}: already exists; refusing to overwrite a relay identity", .path.display())]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// A file the relay needs is not there.
    #[error("{}: missing", .path.display())]
    Missing {
        /// The missing file.
        path: PathBuf,
    },
    /// Reading or writing failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: io::Error,
    },
    /// The file is not what it should be (not PEM, wrong block, undecodable DER or key).
    #[error("{}: corrupt: {reason}", .path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong (never contains key material).
        reason: String,
    },
    /// `server.key` is not the key of `server.crt`.
    #[error("{} is not the key of {}", .key.display(), .cert.display())]
    KeyMismatch {
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        cert: PathBuf,
    },
    /// `server.crt` is not valid under `ca.crt` now: not signed by it, expired, not yet valid.
    #[error("the online certificate is not valid under the CA certificate: {0} (issue a new one with the CA key: rotate)")]
    OnlineCertNotValid(rustls::CertificateError),
    /// `rotate_online` or `sign_with_ca` needs the CA private key, which is offline.
    #[error("{}: missing: bring the offline CA key back (it issues online certificates and signs directory registrations)", .path.display())]
    CaKeyOffline {
        /// Where the CA key was expected.
        path: PathBuf,
    },
    /// `ca.key` is not the key of `ca.crt`.
    #[error("{} is not the key of the CA certificate", .path.display())]
    CaKeyMismatch {
        /// The CA key file.
        path: PathBuf,
    },
    /// Key or certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(String),
}

/// What a running relay needs: its CA certificate and online key and certificate.
pub struct RelayIdentity {
    ca_cert: CertificateDer<'static>,
    online_cert: CertificateDer<'static>,
    online_key: PrivatePkcs8KeyDer<'static>,
    fingerprint: CaFingerprint,
}

impl fmt::Debug for RelayIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayIdentity")
            .field("fingerprint", &self.fingerprint.to_string())
            .field("online_key", &"[elided]")
            .finish_non_exhaustive()
    }
}

impl Drop for RelayIdentity {
    fn drop(&mut self) {
        self.online_key.zeroize();
    }
}

impl RelayIdentity {
    /// Creates a new identity in `dir` (created 0700 if missing): CA key and certificate,
    /// online key and certificate, and the `fingerprint` file. Refuses to overwrite any of
    /// them. The operator should then move `ca.key` offline.
    pub fn create(dir: &Path) -> Result<Self, IdentityError> {
        for name in [
            CA_KEY_FILE,
            CA_CERT_FILE,
            ONLINE_KEY_FILE,
            ONLINE_CERT_FILE,
            FINGERPRINT_FILE,
        ] {
            let path = dir.join(name);
            if path.exists() {
                return Err(IdentityError::AlreadyExists { path });
            }
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| IdentityError::Io {
                path: dir.to_path_buf(),
                source,
            })?;

        let now = smpx_os::Clock::now_system_time(&smpx_os::SystemClock);
        let ca_key = KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(generate)?;
        let ca_params = ca_params(now)?;
        let ca_cert = ca_params.self_signed(&ca_key).map_err(generate)?;
        let ca_der = ca_cert.der().clone();
        let issuer = Issuer::new(ca_params, ca_key);
        let (online_der, online_key) = issue_online(&issuer, now)?;
        let fingerprint = CaFingerprint::of_certificate(&ca_der);

        let ca_key_pem = Zeroizing::new(issuer.key().serialize_pem());
        write_secret(&dir.join(CA_KEY_FILE), ca_key_pem.as_bytes())?;
        write_secret(&dir.join(CA_CERT_FILE), ca_cert.pem().as_bytes())?;
        write_online(dir, &online_der, &online_key)?;
        write_secret(
            &dir.join(FINGERPRINT_FILE),
            format!("{fingerprint}\n").as_bytes(),
        )?;
        Self::from_parts(dir, ca_der, online_der, online_key)
    }

    /// Loads `ca.crt`, `server.crt` and `server.key` from `dir` and checks them: the online
    /// certificate is signed by the CA and valid now, and `server.key` is its key. `ca.key`
    /// is not needed.
    pub fn load(dir: &Path) -> Result<Self, IdentityError> {
        let ca_der = read_certificate(&dir.join(CA_CERT_FILE))?;
        let online_der = read_certificate(&dir.join(ONLINE_CERT_FILE))?;
        let online_key = read_private_key(&dir.join(ONLINE_KEY_FILE))?;
        Self::from_parts(dir, ca_der, online_der, online_key)
    }

    /// Issues a new online key and certificate with the CA key (which must be back in `dir`),
    /// replaces `server.key` and `server.crt`, and returns the new identity. The fingerprint,
    /// and so the relay's address, stays the same. A running relay picks the new files up
    /// when it reloads its identity.
    pub fn rotate_online(dir: &Path) -> Result<Self, IdentityError> {
        let ca_cert_path = dir.join(CA_CERT_FILE);
        let ca_key_path = dir.join(CA_KEY_FILE);
        let ca_der = read_certificate(&ca_cert_path)?;
        let ca_key = read_ca_key(&ca_key_path)?;

        let now = smpx_os::Clock::now_system_time(&smpx_os::SystemClock);
        // The issuer needs the CA's name, key-identifier method and key; `ca_params` builds
        // the same ones `create` used (the dates do not matter for issuing).
        let issuer = Issuer::new(ca_params(now)?, ca_key);
        let (online_der, online_key) = issue_online(&issuer, now)?;
        // A CA key that is not the key of `ca.crt` produces a certificate `ca.crt` cannot
        // verify: check before replacing anything.
        match verify_online_cert(&ca_der, &online_der, UnixTime::now()) {
            Ok(()) => {}
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadSignature | rustls::CertificateError::UnknownIssuer,
            )) => return Err(IdentityError::CaKeyMismatch { path: ca_key_path }),
            Err(rustls::Error::InvalidCertificate(e)) => {
                return Err(IdentityError::OnlineCertNotValid(e))
            }
            Err(e) => {
                return Err(IdentityError::Corrupt {
                    path: ca_cert_path,
                    reason: e.to_string(),
                })
            }
        }
        write_online(dir, &online_der, &online_key)?;
        Self::from_parts(dir, ca_der, online_der, online_key)
    }

    /// Signs `msg` for the purpose `domain` with the CA key in `dir` (which must be back from
    /// offline): Ed25519 over `u16 BE len(domain) ‖ domain ‖ msg`, the framing of every smpx
    /// signature (`smpx_core::crypto::sign`). A directory registration is signed this way,
    /// proving the registrant holds the key of the fingerprint it registers; the CA
    /// certificate's SubjectPublicKeyInfo holds the key to check it with.
    pub fn sign_with_ca(dir: &Path, domain: &str, msg: &[u8]) -> Result<[u8; 64], IdentityError> {
        let path = dir.join(CA_KEY_FILE);
        let ca_key = read_ca_key(&path)?;
        if ca_key.algorithm() != &rcgen::PKCS_ED25519 {
            return Err(IdentityError::Corrupt {
                path,
                reason: "the CA key is not an Ed25519 key".into(),
            });
        }
        let len = u16::try_from(domain.len()).map_err(|_| IdentityError::Corrupt {
            path: path.clone(),
            reason: "signature domain longer than 65535 bytes".into(),
        })?;
        let mut framed = Vec::with_capacity(2 + domain.len() + msg.len());
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(domain.as_bytes());
        framed.extend_from_slice(msg);
        let sig = rcgen::SigningKey::sign(&ca_key, &framed).map_err(generate)?;
        <[u8; 64]>::try_from(sig.as_slice()).map_err(|_| IdentityError::Corrupt {
            path,
            reason: "the CA key made a signature that is not 64 bytes".into(),
        })
    }

    fn from_parts(
        dir: &Path,
        ca_der: CertificateDer<'static>,
        online_der: CertificateDer<'static>,
        online_key: PrivatePkcs8KeyDer<'static>,
    ) -> Result<Self, IdentityError> {
        let key_path = dir.join(ONLINE_KEY_FILE);
        let cert_path = dir.join(ONLINE_CERT_FILE);
        let signing_key = provider()
            .key_provider
            .load_private_key(PrivateKeyDer::Pkcs8(online_key.clone_key()))
            .map_err(|e| IdentityError::Corrupt {
                path: key_path.clone(),
                reason: format!("unusable private key: {e}"),
            })?;
        let certified = CertifiedKey::new(vec![online_der.clone(), ca_der.clone()], signing_key);
        match certified.keys_match() {
            Ok(()) => {}
            Err(rustls::Error::InvalidCertificate(e)) => {
                return Err(IdentityError::Corrupt {
                    path: cert_path,
                    reason: format!("undecodable certificate: {e}"),
                })
            }
            Err(_) => {
                return Err(IdentityError::KeyMismatch {
                    key: key_path,
                    cert: cert_path,
                })
            }
        }
        match verify_online_cert(&ca_der, &online_der, UnixTime::now()) {
            Ok(()) => {}
            Err(rustls::Error::InvalidCertificate(e)) => {
                return Err(IdentityError::OnlineCertNotValid(e))
            }
            Err(e) => {
                return Err(IdentityError::Corrupt {
                    path: dir.join(CA_CERT_FILE),
                    reason: e.to_string(),
                })
            }
        }
        let fingerprint = CaFingerprint::of_certificate(&ca_der);
        Ok(Self {
            ca_cert: ca_der,
            online_cert: online_der,
            online_key,
            fingerprint,
        })
    }

    /// The CA fingerprint clients pin.
    pub fn fingerprint(&self) -> CaFingerprint {
        self.fingerprint
    }

    /// This relay's address at `host:port`.
    pub fn address(&self, host: RelayHost, port: u16) -> RelayAddress {
        RelayAddress::new(self.fingerprint, host, port)
    }

    /// The CA certificate (DER).
    pub fn ca_certificate(&self) -> &CertificateDer<'static> {
        &self.ca_cert
    }

    /// The online certificate (DER).
    pub fn online_certificate(&self) -> &CertificateDer<'static> {
        &self.online_cert
    }

    /// The chain the relay presents: `[online certificate, CA certificate]`.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.online_cert.clone(), self.ca_cert.clone()]
    }

    /// The online private key: the TLS server configuration and the destination's
    /// forwarding-key signature use it; never logged.
    pub fn online_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.online_key.clone_key())
    }

    /// Whether the online certificate is valid (under the CA) at `time`; e.g. check
    /// `now + 30 days` at start and rotate when it is not.
    pub fn online_cert_valid_at(&self, time: SystemTime) -> bool {
        let secs = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        verify_online_cert(
            &self.ca_cert,
            &self.online_cert,
            UnixTime::since_unix_epoch(secs),
        )
        .is_ok()
    }
}

/// Where the CA key of the identity in `dir` lives (to tell the operator to move it).
pub fn ca_key_path(dir: &Path) -> PathBuf {
    dir.join(CA_KEY_FILE)
}

/// Reads the CA private key; [`IdentityError::CaKeyOffline`] when it is not there.
fn read_ca_key(path: &Path) -> Result<KeyPair, IdentityError> {
    let pem = match fs::read(path) {
        Ok(bytes) => Zeroizing::new(bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(IdentityError::CaKeyOffline {
                path: path.to_owned(),
            });
        }
        Err(source) => {
            return Err(IdentityError::Io {
                path: path.to_owned(),
                source,
            })
        }
    };
    let text = std::str::from_utf8(&pem).map_err(|_| IdentityError::Corrupt {
        path: path.to_owned(),
        reason: "not PEM text".into(),
    })?;
    KeyPair::from_pem(text).map_err(|e| IdentityError::Corrupt {
        path: path.to_owned(),
        reason: format!("not a private key: {e}"),
    })
}

fn generate(e: rcgen::Error) -> IdentityError {
    IdentityError::Generate(e.to_string())
}

fn offset_time(t: SystemTime) -> Result<time::OffsetDateTime, IdentityError> {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| IdentityError::Generate("system clock before 1970".into()))?
        .as_secs();
    let secs = i64::try_from(secs).map_err(|_| IdentityError::Generate("clock overflow".into()))?;
    time::OffsetDateTime::from_unix_timestamp(secs)
        .map_err(|e| IdentityError::Generate(e.to_string()))
}

fn validity(
    params: &mut CertificateParams,
    now: SystemTime,
    days: u32,
) -> Result<(), IdentityError> {
    params.not_before = offset_time(now - BACKDATE)?;
    params.not_after = offset_time(now + Duration::from_secs(u64::from(days) * 86_400))?;
    Ok(())
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x01; // no leading zero byte to trim
    SerialNumber::from_slice(&bytes)
}

fn ca_params(now: SystemTime) -> Result<CertificateParams, IdentityError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    params.distinguished_name = dn;
    // Path length 0: the CA signs only end-entity (online) certificates.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.serial_number = Some(random_serial());
    validity(&mut params, now, CA_VALIDITY_DAYS)?;
    Ok(params)
}

fn issue_online(
    issuer: &Issuer<'_, KeyPair>,
    now: SystemTime,
) -> Result<(CertificateDer<'static>, PrivatePkcs8KeyDer<'static>), IdentityError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(generate)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, ONLINE_COMMON_NAME);
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial());
    validity(&mut params, now, ONLINE_VALIDITY_DAYS)?;
    let cert = params.signed_by(&key, issuer).map_err(generate)?;
    let der = cert.der().clone();
    let key_der = PrivatePkcs8KeyDer::from(key.serialize_der());
    Ok((der, key_der))
}

fn write_online(
    dir: &Path,
    cert: &CertificateDer<'_>,
    key: &PrivatePkcs8KeyDer<'_>,
) -> Result<(), IdentityError> {
    let key_pem = Zeroizing::new(pem_encode("PRIVATE KEY", key.secret_pkcs8_der()));
    // Key first: a crash between the two renames leaves a key/certificate mismatch that
    // `load` reports as such, and rotating again repairs it.
    write_secret(&dir.join(ONLINE_KEY_FILE), key_pem.as_bytes())?;
    write_secret(
        &dir.join(ONLINE_CERT_FILE),
        pem_encode("CERTIFICATE", cert).as_bytes(),
    )
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    let b64 = Zeroizing::new(STANDARD.encode(der));
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 64);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// Writes `bytes` to `path` with mode 0600, atomically and durably.
fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), IdentityError> {
    smpx_os::fs::write_atomic(path, bytes, smpx_os::fs::Access::Private).map_err(|e| {
        IdentityError::Io {
            path: e.path,
            source: e.source,
        }
    })
}

fn read_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, IdentityError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Zeroizing::new(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(IdentityError::Missing {
            path: path.to_path_buf(),
        }),
        Err(source) => Err(IdentityError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Exactly one `CERTIFICATE` block that parses as an X.509 certificate.
fn read_certificate(path: &Path) -> Result<CertificateDer<'static>, IdentityError> {
    let bytes = read_file(path)?;
    let corrupt = |reason: String| IdentityError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        certs.push(cert.map_err(|e| corrupt(format!("bad PEM: {e}")))?);
    }
    if certs.len() != 1 {
        return Err(corrupt(format!(
            "expected one CERTIFICATE block, found {}",
            certs.len()
        )));
    }
    let cert = certs.remove(0);
    rustls::server::ParsedCertificate::try_from(&cert)
        .map_err(|e| corrupt(format!("undecodable certificate: {e}")))?;
    Ok(cert)
}

/// Exactly one PKCS#8 `PRIVATE KEY` block. Error messages never include key bytes.
fn read_private_key(path: &Path) -> Result<PrivatePkcs8KeyDer<'static>, IdentityError> {
    let bytes = read_file(path)?;
    let corrupt = |reason: String| IdentityError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let mut keys = Vec::new();
    for key in PrivatePkcs8KeyDer::pem_slice_iter(&bytes) {
        keys.push(key.map_err(|_| corrupt("bad PEM".into()))?);
    }
    if keys.len() != 1 {
        return Err(corrupt(format!(
            "expected one PRIVATE KEY (PKCS#8) block, found {}",
            keys.len()
        )));
    }
    let key = keys.remove(0);
    provider()
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(key.clone_key()))
        .map_err(|_| corrupt("undecodable or unsupported private key".into()))?;
    Ok(key)
}
