//! Certificate authorities for TLS tests: CA certificates, certificates they sign for
//! servers and clients, and revocation lists.

/// A certificate authority of a test, and what it signed.
pub struct Authority {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pub pem: String,
}

impl Authority {
    pub fn new(name: &str) -> Authority {
        let key = rcgen::KeyPair::generate().expect("test TLS material");
        let mut params = rcgen::CertificateParams::new(Vec::new()).expect("test TLS material");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let pem = params.self_signed(&key).expect("test TLS material").pem();
        Authority {
            issuer: rcgen::Issuer::new(params, key),
            pem,
        }
    }

    /// A certificate for `names` (server) or for client `common_name`, with `serial`.
    pub fn sign(&self, names: &[&str], common_name: &str, serial: u64) -> Signed {
        let key = rcgen::KeyPair::generate().expect("test TLS material");
        let names = names
            .iter()
            .map(|name| (*name).to_owned())
            .collect::<Vec<_>>();
        let mut params = rcgen::CertificateParams::new(names).expect("test TLS material");
        params.serial_number = Some(rcgen::SerialNumber::from(serial));
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Shop");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        let certificate = params
            .signed_by(&key, &self.issuer)
            .expect("test TLS material");
        Signed {
            certificate_pem: certificate.pem(),
            der: certificate.der().to_vec(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A current revocation list revoking `serials`.
    pub fn revoking(&self, serials: &[u64]) -> String {
        rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2025, 1, 1),
            next_update: rcgen::date_time_ymd(2099, 1, 1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|serial| rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from(*serial),
                    revocation_time: rcgen::date_time_ymd(2025, 6, 1),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(&self.issuer)
        .expect("test TLS material")
        .pem()
        .expect("test TLS material")
    }
}

pub struct Signed {
    pub certificate_pem: String,
    pub der: Vec<u8>,
    pub key_pem: String,
}

impl Signed {
    /// The certificate and key as the proxy's configuration takes them.
    pub fn as_tls_certificate(&self) -> ronghe_proxy::config::TlsCertificate {
        ronghe_proxy::config::TlsCertificate {
            certificate_pem: self.certificate_pem.clone(),
            private_key_pem: self.key_pem.clone(),
        }
    }
}
