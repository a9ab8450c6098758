//! When a certificate expires: `notAfter` read from the DER of a PEM certificate. Enough DER to
//! walk to one field, no more (fleet shows the date; it verifies nothing).

use base64::Engine as _;

/// `notAfter` as RFC 3339, from the first certificate in a PEM text.
pub fn expiry(pem: &str) -> Option<String> {
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD.decode(body.trim()).ok()?;
    let (_, cert) = element(&der)?;
    let (_, tbs) = element(cert)?;
    let mut rest = tbs;
    // version [0] is optional; serial, signature, issuer, then validity.
    if rest.first() == Some(&0xA0) {
        rest = skip(rest)?;
    }
    for _ in 0..3 {
        rest = skip(rest)?;
    }
    let (_, validity) = element(rest)?;
    let after = skip(validity)?;
    let (tag, time) = element_with_tag(after)?;
    let text = std::str::from_utf8(time).ok()?;
    let full = match tag {
        // UTCTime YYMMDDHHMMSSZ: years 50-99 are 19xx (RFC 5280).
        0x17 => format!("{}{text}", if text.get(..2)? >= "50" { "19" } else { "20" }),
        0x18 => text.to_string(),
        _ => return None,
    };
    let d = full.get(..14)?;
    Some(format!("{}-{}-{}T{}:{}:{}Z", &d[..4], &d[4..6], &d[6..8], &d[8..10], &d[10..12], &d[12..14]))
}

/// (tag, content) of the element at the start of `data`.
fn element_with_tag(data: &[u8]) -> Option<(u8, &[u8])> {
    let tag = *data.first()?;
    let (len, header) = length(data.get(1..)?)?;
    Some((tag, data.get(1 + header..1 + header + len)?))
}

fn element(data: &[u8]) -> Option<(u8, &[u8])> {
    element_with_tag(data)
}

/// What follows the element at the start of `data`.
fn skip(data: &[u8]) -> Option<&[u8]> {
    let (len, header) = length(data.get(1..)?)?;
    data.get(1 + header + len..)
}

/// A DER length: (value, bytes it took).
fn length(data: &[u8]) -> Option<(usize, usize)> {
    let first = *data.first()?;
    if first < 0x80 {
        return Some((usize::from(first), 1));
    }
    let n = usize::from(first & 0x7F);
    if n == 0 || n > 4 {
        return None;
    }
    let value = data.get(1..1 + n)?.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
    Some((value, 1 + n))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_not_after_of_a_real_certificate() {
        // Made with: openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes
        //   -subj /CN=shop.test -days 3650; `openssl x509 -noout -enddate` says Dec 1 19:45:17 2036 GMT.
        let pem = include_str!("testdata/shop.test.crt");
        assert_eq!(super::expiry(pem).as_deref(), Some("2036-12-01T19:45:17Z"));
        assert_eq!(super::expiry("not a certificate"), None);
    }
}
