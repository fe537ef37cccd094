//! Whole numbers written as floats (`10.0`, `1e3`) rewritten as integers before a body is
//! deserialised, so the server accepts what the OpenAPI documents accept: JSON Schema's
//! `"type": "integer"` means any number with a zero fractional part, and no keyword can
//! forbid `10.0`.
//!
//! The rewrite works on the text, digit by digit, so it is exact at any magnitude (a float
//! parser would round above 2^53). It touches number tokens outside strings only, and only
//! those whose value is whole and fits an `i64` or `u64`; anything else (`10.5`, `1e30`, a
//! malformed token) is left as written, for the deserialiser to refuse as before.

/// `body` with every whole number that fits `i64`/`u64` written as an integer, or `None`
/// when there is nothing to rewrite (the common case: no allocation).
pub(crate) fn whole_numbers_as_integers(body: &[u8]) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    // Bytes of `body` before `copied` are already in `out` (when there is one).
    let mut copied = 0;
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'"' => i = string_end(body, i),
            b'-' | b'0'..=b'9' => {
                let end = number_end(body, i);
                let token = &body[i..end];
                if token.iter().any(|b| matches!(b, b'.' | b'e' | b'E')) {
                    if let Some(int) = whole(token) {
                        let out = out.get_or_insert_with(|| Vec::with_capacity(body.len()));
                        out.extend_from_slice(&body[copied..i]);
                        out.extend_from_slice(int.as_bytes());
                        copied = end;
                    }
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    out.map(|mut out| {
        out.extend_from_slice(&body[copied..]);
        out
    })
}

/// The index just past the string starting with the quote at `start` (or the end of input).
fn string_end(body: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < body.len() {
        match body[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    body.len()
}

/// The index just past the number-like token starting at `start`.
fn number_end(body: &[u8], start: usize) -> usize {
    let mut i = start;
    while i < body.len() && matches!(body[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
        i += 1;
    }
    i
}

/// The integer `token` denotes, if it is a well-formed JSON number with a zero fractional
/// part that fits `u64` (or `i64` when negative).
fn whole(token: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(token).ok()?;
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
        None => (unsigned, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (mantissa, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    // JSON: `0` or a non-zero digit first; at least one digit after `.` and in the exponent.
    if !digits(int) || (int.len() > 1 && int.starts_with('0')) {
        return None;
    }
    let frac = match frac {
        Some(f) if !digits(f) => return None,
        Some(f) => f,
        None => "",
    };
    let exponent: i64 = match exponent {
        None => 0,
        Some(e) => {
            let magnitude = e.strip_prefix(['+', '-']).unwrap_or(e);
            if !digits(magnitude) {
                return None;
            }
            // Beyond 4 digits the value is zero, too large or not whole whatever the
            // exact exponent: 10,000 judges it the same.
            let m = magnitude.trim_start_matches('0');
            let m: i64 = if m.len() > 4 {
                10_000
            } else {
                m.parse().unwrap_or(0)
            };
            if e.starts_with('-') {
                -m
            } else {
                m
            }
        }
    };
    let all: Vec<u8> = int.bytes().chain(frac.bytes()).collect();
    if all.iter().all(|&b| b == b'0') {
        return Some("0".to_owned());
    }
    // The decimal point sits after `point` digits of `all`.
    let point = int.len() as i64 + exponent;
    if point <= 0 {
        return None; // a non-zero value below 1
    }
    let point = point as usize;
    if all
        .get(point..)
        .is_some_and(|rest| rest.iter().any(|&b| b != b'0'))
    {
        return None; // not whole
    }
    let mut integer: Vec<u8> = all.iter().copied().take(point).collect();
    integer.resize(point, b'0');
    let integer = std::str::from_utf8(&integer).ok()?.trim_start_matches('0');
    if integer.len() > 20 {
        return None;
    }
    let value: u128 = integer.parse().ok()?;
    let fits = if negative {
        value <= 1u128 << 63
    } else {
        value <= u128::from(u64::MAX)
    };
    fits.then(|| format!("{}{integer}", if negative { "-" } else { "" }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rewrite(body: &str) -> String {
        whole_numbers_as_integers(body.as_bytes())
            .map(|b| String::from_utf8(b).unwrap())
            .unwrap_or_else(|| body.to_owned())
    }

    #[test]
    fn whole_floats_become_integers() {
        assert_eq!(
            rewrite(r#"{"denomination": 10.0}"#),
            r#"{"denomination": 10}"#
        );
        assert_eq!(
            rewrite("[1e3, 1.5e1, 2.50e2, 1E+2, 0.0, -0.0, -7.000]"),
            "[1000, 15, 250, 100, 0, 0, -7]"
        );
        assert_eq!(rewrite("[100e-2, 0e999999999999, 1.0e0]"), "[1, 0, 1]");
        // Exact beyond 2^53, where a float would round.
        assert_eq!(rewrite("9007199254740993.0"), "9007199254740993");
        assert_eq!(rewrite("18446744073709551615.0"), "18446744073709551615");
        assert_eq!(rewrite("-9223372036854775808.0"), "-9223372036854775808");
    }

    #[test]
    fn everything_else_is_left_as_written() {
        for body in [
            r#"{"a": 10, "b": [1, 2], "c": "10.0", "d": "x\"1.0\"", "e": true}"#,
            "[10.5, 1e-1, 1.25e1, 1e30, 18446744073709551616.0, -9223372036854775809.0]",
            "[01.0, 1., .5, 1e, 1e+, 1.0.0, --1.0, 1e99999999999999999999]",
        ] {
            assert_eq!(whole_numbers_as_integers(body.as_bytes()), None, "{body}");
        }
        // `0.1e1` is 1: whole.
        assert_eq!(rewrite("0.1e1"), "1");
    }

    #[test]
    fn strings_with_escapes_are_skipped() {
        assert_eq!(
            rewrite(r#"["a\\", 2.0, "\"3.0", 4.0]"#),
            r#"["a\\", 2, "\"3.0", 4]"#
        );
        // An unterminated string: nothing after it is touched.
        assert_eq!(whole_numbers_as_integers(br#"["abc 1.0"#), None);
    }
}
