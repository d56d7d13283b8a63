//! What a certificate says of itself (names, issuer, validity), read from
//! its PEM, and when it is due for renewal.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Renewed once this much of its validity is left at most...
const RENEW_BEFORE_MAX: Duration = Duration::from_secs(30 * 24 * 3600);
/// ...or a third of its lifetime, whichever is less: a 90-day certificate
/// is renewed 30 days before it expires, a 6-day one 2 days before.
const RENEW_AT_FRACTION_LEFT: u32 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// The DNS names of its subjectAltName.
    pub names: Vec<String>,
    /// The issuer's distinguished name, as OpenSSL prints it (`CN=...`).
    pub issuer: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl CertificateInfo {
    /// The first certificate of `pem` (the leaf of a chain).
    pub fn read(pem: &[u8]) -> Result<Self, String> {
        let (_, block) = x509_parser::pem::parse_x509_pem(pem).map_err(|e| format!("not a PEM certificate: {e}"))?;
        let (_, cert) =
            X509Certificate::from_der(&block.contents).map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let names = match cert.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(name) => Some(name.to_string()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let time = |t: x509_parser::time::ASN1Time| UNIX_EPOCH + Duration::from_secs(t.timestamp().max(0) as u64);
        Ok(Self {
            names,
            issuer: cert.issuer().to_string(),
            not_before: time(cert.validity().not_before),
            not_after: time(cert.validity().not_after),
        })
    }

    /// When to ask for the next one.
    pub fn renew_at(&self) -> SystemTime {
        let lifetime = self.not_after.duration_since(self.not_before).unwrap_or_default();
        self.not_after - (lifetime / RENEW_AT_FRACTION_LEFT).min(RENEW_BEFORE_MAX)
    }

    /// Seconds until it expires; negative once it has.
    pub fn seconds_left(&self, now: SystemTime) -> i64 {
        match self.not_after.duration_since(now) {
            Ok(left) => left.as_secs() as i64,
            Err(past) => -(past.duration().as_secs() as i64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(days: i64) -> String {
        let mut params = rcgen::CertificateParams::new(vec!["a.example".into(), "www.a.example".into()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2030, 1, 1);
        params.not_after = params.not_before + time_days(days);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().pem()
    }

    fn time_days(days: i64) -> std::time::Duration {
        std::time::Duration::from_secs(days as u64 * 24 * 3600)
    }

    #[test]
    fn reads_names_issuer_and_validity() {
        let info = CertificateInfo::read(certificate(90).as_bytes()).unwrap();
        assert_eq!(info.names, ["a.example", "www.a.example"]);
        assert!(info.issuer.contains("rcgen"), "{}", info.issuer);
        assert_eq!(info.not_after.duration_since(info.not_before).unwrap(), time_days(90));
        assert!(CertificateInfo::read(b"no pem here").is_err());
    }

    #[test]
    fn renews_with_a_third_of_its_lifetime_or_30_days_left() {
        let long = CertificateInfo::read(certificate(365).as_bytes()).unwrap();
        assert_eq!(long.not_after.duration_since(long.renew_at()).unwrap(), time_days(30));
        let short = CertificateInfo::read(certificate(6).as_bytes()).unwrap();
        assert_eq!(short.not_after.duration_since(short.renew_at()).unwrap(), time_days(2));
        assert_eq!(short.seconds_left(short.not_after - time_days(1)), 24 * 3600);
        assert_eq!(short.seconds_left(short.not_after + time_days(1)), -24 * 3600);
    }
}
