//! Relay addresses: round trips, every malformed form, and no panics on any input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use smpx_relay_protocol::{
    AddressError, CaFingerprint, FingerprintError, RelayAddress, RelayHost, DEFAULT_PORT,
};

fn fp() -> CaFingerprint {
    CaFingerprint::of_certificate(b"some CA certificate")
}

fn parse(s: &str) -> Result<RelayAddress, AddressError> {
    s.parse()
}

#[test]
fn round_trips() {
    let fp = fp();
    for (text, host, port) in [
        (
            format!("smpx://{fp}@relay.example.org:443"),
            RelayHost::Dns("relay.example.org".into()),
            443,
        ),
        (
            format!("smpx://{fp}@localhost"),
            RelayHost::Dns("localhost".into()),
            DEFAULT_PORT,
        ),
        (
            format!("smpx://{fp}@127.0.0.1:5223"),
            RelayHost::Ipv4(Ipv4Addr::LOCALHOST),
            5223,
        ),
        (
            format!("smpx://{fp}@[::1]:65535"),
            RelayHost::Ipv6(Ipv6Addr::LOCALHOST),
            65535,
        ),
        (
            format!("smpx://{fp}@[2001:DB8::1]"),
            RelayHost::Ipv6("2001:db8::1".parse().unwrap()),
            DEFAULT_PORT,
        ),
        (
            format!("smpx://{fp}@xn--bcher-kva.example:1"),
            RelayHost::Dns("xn--bcher-kva.example".into()),
            1,
        ),
    ] {
        let a = parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(a.fingerprint, fp);
        assert_eq!(a.host, host, "{text}");
        assert_eq!(a.port, port, "{text}");
        let shown = a.to_string();
        assert_eq!(parse(&shown).unwrap(), a, "{shown}");
        assert!(shown.ends_with(&format!(":{port}")), "{shown}");
    }
    assert_eq!(
        parse(&format!("smpx://{fp}@[::1]:7")).unwrap().to_string(),
        format!("smpx://{fp}@[::1]:7")
    );
    assert_eq!(
        RelayAddress::new(fp, RelayHost::Ipv6(Ipv6Addr::LOCALHOST), 9).socket_addr_text(),
        "[::1]:9"
    );
}

#[test]
fn malformed_forms_have_typed_errors() {
    let fp = fp();
    let long = "a".repeat(600);
    let label64 = "a".repeat(64);
    let name254 = ["a"; 127].join(".") + "b"; // 127 labels of 1 + 126 dots + 1 = 254
    assert!(name254.len() > 253);
    let cases: Vec<(String, AddressError)> = vec![
        (long, AddressError::TooLong),
        (String::new(), AddressError::MissingScheme),
        (format!("{fp}@host:1"), AddressError::MissingScheme),
        (
            format!("smp://{fp}@host:1"),
            AddressError::WrongScheme("smp".into()),
        ),
        (
            format!("https://{fp}@host:1"),
            AddressError::WrongScheme("https".into()),
        ),
        ("smpx://host:1".into(), AddressError::MissingFingerprint),
        ("smpx://@host:1".into(), AddressError::MissingFingerprint),
        (
            "smpx://abc@host:1".into(),
            AddressError::BadFingerprint(FingerprintError::Length(3)),
        ),
        (
            format!("smpx://{}@host:1", "!".repeat(43)),
            AddressError::BadFingerprint(FingerprintError::Encoding),
        ),
        (
            format!("smpx://{}=@host:1", &fp.to_string()[..42]),
            AddressError::BadFingerprint(FingerprintError::Encoding),
        ),
        (format!("smpx://{fp}@"), AddressError::MissingHost),
        (format!("smpx://{fp}@:5223"), AddressError::MissingHost),
        (
            format!("smpx://{fp}@host:1/path"),
            AddressError::UnexpectedCharacter('/'),
        ),
        (
            format!("smpx://{fp}@host:1?q"),
            AddressError::UnexpectedCharacter('?'),
        ),
        (
            format!("smpx://{fp}@host#f"),
            AddressError::UnexpectedCharacter('#'),
        ),
        (
            format!("smpx://{fp}@a@host"),
            AddressError::UnexpectedCharacter('@'),
        ),
        (
            format!("smpx://{fp}@ho st"),
            AddressError::UnexpectedCharacter(' '),
        ),
        (
            format!("smpx://{fp}@[fe80::1%eth0]:1"),
            AddressError::UnexpectedCharacter('%'),
        ),
        (format!("smpx://{fp}@[::1"), AddressError::BadIpv6),
        (format!("smpx://{fp}@[::g]:1"), AddressError::BadIpv6),
        (format!("smpx://{fp}@[1.2.3.4]:1"), AddressError::BadIpv6),
        (format!("smpx://{fp}@[::1]x"), AddressError::BadIpv6),
        (format!("smpx://{fp}@::1"), AddressError::UnbracketedIpv6),
        (
            format!("smpx://{fp}@::1:5223"),
            AddressError::UnbracketedIpv6,
        ),
        (
            format!("smpx://{fp}@host:"),
            AddressError::BadPort(String::new()),
        ),
        (
            format!("smpx://{fp}@host:0"),
            AddressError::BadPort("0".into()),
        ),
        (
            format!("smpx://{fp}@host:65536"),
            AddressError::BadPort("65536".into()),
        ),
        (
            format!("smpx://{fp}@host:+1"),
            AddressError::BadPort("+1".into()),
        ),
        (
            format!("smpx://{fp}@host:005223"),
            AddressError::BadPort("005223".into()),
        ),
        (
            format!("smpx://{fp}@[::1]:x"),
            AddressError::BadPort("x".into()),
        ),
        (
            format!("smpx://{fp}@-host"),
            AddressError::BadHost("a label starts or ends with a hyphen"),
        ),
        (
            format!("smpx://{fp}@a..b"),
            AddressError::BadHost("empty label"),
        ),
        (
            format!("smpx://{fp}@host."),
            AddressError::BadHost("empty label"),
        ),
        (
            format!("smpx://{fp}@under_score.org"),
            AddressError::BadHost("only letters, digits, hyphens and dots are allowed"),
        ),
        (
            format!("smpx://{fp}@{label64}.org"),
            AddressError::BadHost("label longer than 63 characters"),
        ),
        (
            format!("smpx://{fp}@{name254}"),
            AddressError::BadHost("longer than 253 characters"),
        ),
        (
            format!("smpx://{fp}@1.2.3"),
            AddressError::BadHost("all-numeric top label (not a valid IPv4 address either)"),
        ),
        (
            format!("smpx://{fp}@256.1.1.1"),
            AddressError::BadHost("all-numeric top label (not a valid IPv4 address either)"),
        ),
        (
            format!("smpx://{fp}@héllo.org"),
            AddressError::BadHost("only letters, digits, hyphens and dots are allowed"),
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(parse(&text), Err(expected), "{text:?}");
    }
}

fn host_strategy() -> impl Strategy<Value = RelayHost> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|b| RelayHost::Ipv4(Ipv4Addr::from(b))),
        any::<[u8; 16]>().prop_map(|b| RelayHost::Ipv6(Ipv6Addr::from(b))),
        "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\\.[a-z0-9]{1,8}){0,3}\\.[a-z]{2,6}"
            .prop_map(RelayHost::Dns),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn any_text_parses_or_errors_without_panic(s in ".{0,200}") {
        if let Ok(a) = parse(&s) {
            // Whatever parses, prints to an address that parses to the same value.
            prop_assert_eq!(parse(&a.to_string()), Ok(a));
        }
    }

    #[test]
    fn near_miss_text_never_panics(
        fp_bytes in any::<[u8; 32]>(),
        tail in "[\\[\\]:@/a-z0-9.%-]{0,40}",
    ) {
        let text = format!("smpx://{}@{tail}", CaFingerprint::from_bytes(fp_bytes));
        if let Ok(a) = parse(&text) {
            prop_assert_eq!(parse(&a.to_string()), Ok(a));
        }
    }

    #[test]
    fn generated_addresses_round_trip(
        fp_bytes in any::<[u8; 32]>(),
        host in host_strategy(),
        port in 1u16..,
    ) {
        let a = RelayAddress::new(CaFingerprint::from_bytes(fp_bytes), host, port);
        prop_assert_eq!(parse(&a.to_string()), Ok(a));
    }
}
