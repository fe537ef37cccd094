//! Relay addresses: `smpx://<CA fingerprint>@host:port`.
//!
//! * The fingerprint is the [`CaFingerprint`] of the relay's offline CA certificate; a client
//!   refuses any relay whose certificate chain does not end in exactly that certificate.
//! * `host` is a DNS name (letters, digits and hyphens, labels of 1–63 characters, at most
//!   253 in all, stored in lower case), a dotted IPv4 address, or an IPv6 address in brackets
//!   (`[2001:db8::1]`, no zone index).
//! * `:port` is optional when parsing; the default is [`DEFAULT_PORT`] (5223, SMP's port).
//!   [`fmt::Display`] always writes the port, so `parse(display(a)) == a` for every address.
//! * Nothing may follow the port: no path, query or fragment. The scheme is matched without
//!   regard to case. Each malformed form has its own [`AddressError`].
//!
//! Unlike SMP, one address names one host (no comma-separated list of alternatives).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use super::fingerprint::{CaFingerprint, FingerprintError};

/// The URI scheme of relay addresses.
pub const SCHEME: &str = "smpx";

/// The port used when an address names none (SMP's port).
pub const DEFAULT_PORT: u16 = 5223;

/// Longest address text accepted (well above the longest valid one, 7 + 43 + 1 + 253 + 6).
pub const MAX_ADDRESS_LEN: usize = 512;

/// Where a relay listens.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RelayHost {
    /// A DNS name, lower case, without a trailing dot.
    Dns(String),
    /// An IPv4 address.
    Ipv4(Ipv4Addr),
    /// An IPv6 address (written in brackets in an address).
    Ipv6(Ipv6Addr),
}

impl fmt::Display for RelayHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RelayHost::Dns(name) => f.write_str(name),
            RelayHost::Ipv4(ip) => write!(f, "{ip}"),
            RelayHost::Ipv6(ip) => write!(f, "[{ip}]"),
        }
    }
}

impl FromStr for RelayHost {
    type Err = AddressError;

    /// A host as it appears in an address (IPv6 in brackets).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(AddressError::MissingHost);
        }
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or(AddressError::BadIpv6)?;
            return inner
                .parse::<Ipv6Addr>()
                .map(RelayHost::Ipv6)
                .map_err(|_| AddressError::BadIpv6);
        }
        if s.contains(':') {
            return Err(AddressError::UnbracketedIpv6);
        }
        if let Ok(ip) = s.parse::<Ipv4Addr>() {
            return Ok(RelayHost::Ipv4(ip));
        }
        validate_dns_name(s)?;
        Ok(RelayHost::Dns(s.to_ascii_lowercase()))
    }
}

fn validate_dns_name(s: &str) -> Result<(), AddressError> {
    if s.len() > 253 {
        return Err(AddressError::BadHost("longer than 253 characters"));
    }
    let mut last = "";
    for label in s.split('.') {
        if label.is_empty() {
            return Err(AddressError::BadHost("empty label"));
        }
        if label.len() > 63 {
            return Err(AddressError::BadHost("label longer than 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(AddressError::BadHost(
                "only letters, digits, hyphens and dots are allowed",
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(AddressError::BadHost(
                "a label starts or ends with a hyphen",
            ));
        }
        last = label;
    }
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AddressError::BadHost(
            "all-numeric top label (not a valid IPv4 address either)",
        ));
    }
    Ok(())
}

/// A relay's address: its CA fingerprint, host and port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RelayAddress {
    /// The pinned CA fingerprint.
    pub fingerprint: CaFingerprint,
    /// The host to connect to.
    pub host: RelayHost,
    /// The TCP port.
    pub port: u16,
}

impl RelayAddress {
    /// An address from its parts.
    pub fn new(fingerprint: CaFingerprint, host: RelayHost, port: u16) -> Self {
        Self {
            fingerprint,
            host,
            port,
        }
    }

    /// `host:port` as `tokio::net::TcpStream::connect` takes it (IPv6 in brackets).
    pub fn socket_addr_text(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

impl fmt::Display for RelayAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SCHEME}://{}@{}:{}",
            self.fingerprint, self.host, self.port
        )
    }
}

/// Why an address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Longer than [`MAX_ADDRESS_LEN`].
    #[error("address longer than {MAX_ADDRESS_LEN} characters")]
    TooLong,
    /// No `scheme://` at all.
    #[error("address must start with {SCHEME}://")]
    MissingScheme,
    /// Another scheme than `smpx`.
    #[error("unsupported scheme {0:?}: address must start with {SCHEME}://")]
    WrongScheme(String),
    /// No `<fingerprint>@` before the host.
    #[error("address has no CA fingerprint (smpx://<fingerprint>@host:port)")]
    MissingFingerprint,
    /// The fingerprint is malformed.
    #[error("bad CA fingerprint: {0}")]
    BadFingerprint(#[from] FingerprintError),
    /// A path, query, fragment, second `@` or whitespace after the fingerprint.
    #[error("unexpected character {0:?} in the host part")]
    UnexpectedCharacter(char),
    /// Nothing between `@` and the port.
    #[error("address has no host")]
    MissingHost,
    /// A malformed DNS name.
    #[error("bad host name: {0}")]
    BadHost(&'static str),
    /// Brackets that do not hold a valid IPv6 address (zone indices are not accepted).
    #[error("bad IPv6 address in brackets")]
    BadIpv6,
    /// An IPv6 address without brackets, or a stray colon.
    #[error("IPv6 addresses must be written in brackets, e.g. [2001:db8::1]:5223")]
    UnbracketedIpv6,
    /// A port that is empty, not decimal, 0, or above 65535.
    #[error("bad port {0:?}: a decimal number from 1 to 65535")]
    BadPort(String),
}

impl FromStr for RelayAddress {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() > MAX_ADDRESS_LEN {
            return Err(AddressError::TooLong);
        }
        let (scheme, rest) = s.split_once("://").ok_or(AddressError::MissingScheme)?;
        if !scheme.eq_ignore_ascii_case(SCHEME) {
            return Err(AddressError::WrongScheme(scheme.chars().take(32).collect()));
        }
        let (fingerprint, authority) = rest
            .split_once('@')
            .ok_or(AddressError::MissingFingerprint)?;
        if fingerprint.is_empty() {
            return Err(AddressError::MissingFingerprint);
        }
        let fingerprint: CaFingerprint = fingerprint.parse()?;
        if let Some(c) = authority.chars().find(|c| {
            matches!(c, '/' | '?' | '#' | '@' | '%') || c.is_whitespace() || c.is_control()
        }) {
            return Err(AddressError::UnexpectedCharacter(c));
        }
        let (host, port) = split_host_port(authority)?;
        let host: RelayHost = host.parse()?;
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => parse_port(p)?,
        };
        Ok(Self {
            fingerprint,
            host,
            port,
        })
    }
}

/// Splits `host[:port]` / `[v6][:port]`.
fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), AddressError> {
    if authority.starts_with('[') {
        let close = authority.find(']').ok_or(AddressError::BadIpv6)?;
        let (host, after) = authority.split_at(close + 1);
        if after.is_empty() {
            return Ok((host, None));
        }
        let port = after.strip_prefix(':').ok_or(AddressError::BadIpv6)?;
        return Ok((host, Some(port)));
    }
    match authority.split_once(':') {
        None => Ok((authority, None)),
        Some((host, port)) => {
            if port.contains(':') {
                Err(AddressError::UnbracketedIpv6)
            } else {
                Ok((host, Some(port)))
            }
        }
    }
}

fn parse_port(p: &str) -> Result<u16, AddressError> {
    let bad = || AddressError::BadPort(p.chars().take(16).collect());
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(bad()),
        Ok(port) => Ok(port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp() -> CaFingerprint {
        CaFingerprint::of_certificate(b"ca")
    }

    #[test]
    fn default_port_and_case() {
        let a: RelayAddress = format!("SMPX://{}@Relay.Example.COM", fp())
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.port, DEFAULT_PORT);
        assert_eq!(a.host, RelayHost::Dns("relay.example.com".into()));
        assert_eq!(
            a.to_string(),
            format!("smpx://{}@relay.example.com:5223", fp())
        );
    }
}
