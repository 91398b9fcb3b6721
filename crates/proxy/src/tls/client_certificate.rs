//! What a TERMINATED_HTTPS listener tells members of a client's certificate: the values
//! of Octavia's `X-SSL-*` insert headers, as HAProxy's sample fetches (`ssl_c_*`) in
//! Octavia's amphora make them. Worked out once per connection, after the handshake.

use sha1::{Digest, Sha1};
use x509_parser::prelude::{ASN1Time, FromDer, X509Certificate, X509Name};

use crate::config::SslHeader;

/// The facts of a client's certificate (the chain's first, the client's own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientCertificate {
    /// The subject in OpenSSL's one-line form: `/C=US/O=Shop/CN=client`.
    subject: String,
    /// The subject's first common name.
    common_name: String,
    issuer: String,
    /// The SHA-1 of the DER, uppercase hex.
    sha1: String,
    /// As ASN.1 writes times: `YYMMDDhhmmssZ` (`YYYYMMDDhhmmssZ` outside 1950 to 2049).
    not_before: String,
    not_after: String,
}

impl ClientCertificate {
    /// The facts of the certificate `der`; `None` if it does not parse (rustls verified
    /// it, so it does).
    pub fn of(der: &[u8]) -> Option<ClientCertificate> {
        let (_, certificate) = X509Certificate::from_der(der).ok()?;
        let validity = certificate.validity();
        Some(ClientCertificate {
            subject: one_line(certificate.subject()),
            common_name: certificate
                .subject()
                .iter_common_name()
                .next()
                .map(|name| escaped(name.as_slice()))
                .unwrap_or_default(),
            issuer: one_line(certificate.issuer()),
            sha1: Sha1::digest(der)
                .iter()
                .map(|byte| format!("{byte:02X}"))
                .collect(),
            not_before: asn1_time(&validity.not_before),
            not_after: asn1_time(&validity.not_after),
        })
    }
}

/// The value of the field `header` for a client that sent `certificate` (`None`: it
/// sent none). A connection only gets this far with a certificate that verified, or
/// none, so the verify result is always OpenSSL's `0` (no error); the facts of a missing
/// certificate are empty.
pub(crate) fn field_value(header: SslHeader, certificate: Option<&ClientCertificate>) -> String {
    let quoted = |fact: fn(&ClientCertificate) -> &str| {
        format!("\"{}\"", certificate.map(fact).unwrap_or_default())
    };
    match header {
        SslHeader::ClientVerify => "0".to_owned(),
        SslHeader::ClientHasCert => if certificate.is_some() { "1" } else { "0" }.to_owned(),
        SslHeader::ClientDn => quoted(|c| &c.subject),
        SslHeader::ClientCn => quoted(|c| &c.common_name),
        SslHeader::Issuer => quoted(|c| &c.issuer),
        SslHeader::ClientSha1 => quoted(|c| &c.sha1),
        SslHeader::ClientNotBefore => quoted(|c| &c.not_before),
        SslHeader::ClientNotAfter => quoted(|c| &c.not_after),
    }
}

/// A name as OpenSSL's `X509_NAME_oneline` writes it: `/SHORT=value` for each attribute
/// in order, unknown attributes by their OID.
fn one_line(name: &X509Name<'_>) -> String {
    let registry = x509_parser::objects::oid_registry();
    let mut line = String::new();
    for attribute in name.iter_attributes() {
        let oid = attribute.attr_type();
        let short = match x509_parser::objects::oid2abbrev(oid, registry) {
            Ok("Email") => "emailAddress".to_owned(),
            Ok(short) => short.to_owned(),
            Err(_) => oid.to_id_string(),
        };
        line.push('/');
        line.push_str(&short);
        line.push('=');
        line.push_str(&escaped(attribute.as_slice()));
    }
    line
}

/// Bytes of a name as header text: printable ASCII as it is, other bytes (controls, the
/// bytes of non-ASCII characters) as `\xHH`, as `X509_NAME_oneline` writes them; `"` and
/// `\` are escaped too, since the value goes between quotes. No byte can end the field.
fn escaped(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len());
    for &byte in bytes {
        match byte {
            b'"' | b'\\' => {
                text.push('\\');
                text.push(char::from(byte));
            }
            0x20..=0x7e => text.push(char::from(byte)),
            _ => text.push_str(&format!("\\x{byte:02X}")),
        }
    }
    text
}

/// A time as ASN.1 writes it in certificates (RFC 5280 section 4.1.2.5): UTCTime for the
/// years 1950 to 2049, GeneralizedTime otherwise.
fn asn1_time(time: &ASN1Time) -> String {
    let time = time.to_datetime();
    let year = time.year();
    let year = if (1950..2050).contains(&year) {
        format!("{:02}", year % 100)
    } else {
        format!("{year:04}")
    };
    format!(
        "{year}{:02}{:02}{:02}{:02}{:02}Z",
        u8::from(time.month()),
        time.day(),
        time.hour(),
        time.minute(),
        time.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(params: &mut rcgen::CertificateParams) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn fields_read_as_haproxy_writes_them() {
        let mut params = rcgen::CertificateParams::new(Vec::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CountryName, "US");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Shop \"East\"");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "client-1");
        params.not_before = rcgen::date_time_ymd(2026, 1, 2);
        params.not_after = rcgen::date_time_ymd(2051, 3, 4);
        let der = certificate(&mut params);
        let facts = ClientCertificate::of(&der).unwrap();
        let value = |header| field_value(header, Some(&facts));
        assert_eq!(value(SslHeader::ClientVerify), "0");
        assert_eq!(value(SslHeader::ClientHasCert), "1");
        assert_eq!(
            value(SslHeader::ClientDn),
            r#""/C=US/O=Shop \"East\"/CN=client-1""#
        );
        assert_eq!(value(SslHeader::ClientCn), "\"client-1\"");
        // Self-signed: the issuer is the subject.
        assert_eq!(value(SslHeader::Issuer), value(SslHeader::ClientDn));
        assert_eq!(value(SslHeader::ClientNotBefore), "\"260102000000Z\"");
        assert_eq!(value(SslHeader::ClientNotAfter), "\"20510304000000Z\"");
        let sha1 = value(SslHeader::ClientSha1);
        assert_eq!(sha1.len(), 42);
        assert!(
            sha1.trim_matches('"')
                .chars()
                .all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c))
        );

        // No certificate: verified (nothing to fail), none sent, empty facts.
        assert_eq!(field_value(SslHeader::ClientVerify, None), "0");
        assert_eq!(field_value(SslHeader::ClientHasCert, None), "0");
        assert_eq!(field_value(SslHeader::ClientDn, None), "\"\"");
    }

    #[test]
    fn a_name_cannot_break_the_field() {
        let mut params = rcgen::CertificateParams::new(Vec::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            "evil\r\nX-SSL-Client-Verify: 0 é",
        );
        let facts = ClientCertificate::of(&certificate(&mut params)).unwrap();
        let dn = field_value(SslHeader::ClientDn, Some(&facts));
        assert_eq!(dn, r#""/CN=evil\x0D\x0AX-SSL-Client-Verify: 0 \xC3\xA9""#);
        assert!(dn.bytes().all(|b| (0x20..0x7f).contains(&b)));
    }
}
