//! Certificates made in a test (rcgen): a cluster CA kept in memory that issues node and
//! client certificates with chosen serial numbers, names and validity, so that a test can
//! give nodes new certificates from the same CA, or expired or misnamed ones.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A CA whose key stays in memory.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// Its certificate (PEM), what nodes and clients trust.
    pub pem: String,
}

/// A certificate and its key, PEM, and the certificate's DER (what a TLS peer is sent).
pub struct Issued {
    /// The certificate, PEM.
    pub cert: String,
    /// Its private key, PEM.
    pub key: String,
    /// The certificate, DER.
    pub der: Vec<u8>,
}

impl Issued {
    /// Writes the certificate and the key as `dir/cert` and `dir/key` (replacing them).
    pub fn write(&self, dir: &Path, cert: &str, key: &str) {
        std::fs::write(dir.join(cert), &self.cert).expect("certificate file");
        std::fs::write(dir.join(key), &self.key).expect("key file");
    }
}

impl Default for TestCa {
    fn default() -> TestCa {
        TestCa::new()
    }
}

impl TestCa {
    /// A new CA.
    pub fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "wire test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let key = KeyPair::generate().expect("CA key");
        let pem = params.self_signed(&key).expect("CA certificate").pem();
        TestCa {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// A certificate with serial number `serial` for `names` (server and client use), valid
    /// now.
    pub fn issue(&self, names: &[&str], serial: u64) -> Issued {
        self.issue_params(names, serial, |_| {})
    }

    /// [`TestCa::issue`], but valid only in the year 2000.
    pub fn issue_expired(&self, names: &[&str], serial: u64) -> Issued {
        self.issue_params(names, serial, |params| {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        })
    }

    /// A node certificate for 127.0.0.1 with `serial`, written as `dir/node.pem` and
    /// `dir/node-key.pem` (replacing them).
    pub fn node_files(&self, dir: &Path, serial: u64) -> Issued {
        let issued = self.issue(&["127.0.0.1", "localhost"], serial);
        issued.write(dir, "node.pem", "node-key.pem");
        issued
    }

    fn issue_params(
        &self,
        names: &[&str],
        serial: u64,
        adjust: impl FnOnce(&mut CertificateParams),
    ) -> Issued {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("params");
        params.serial_number = Some(serial.into());
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        adjust(&mut params);
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("certificate");
        Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}
