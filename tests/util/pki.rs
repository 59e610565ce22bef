//! Test certificates, made at test time with rcgen (no private key is ever committed): a test
//! CA, server certificates it signs (for `localhost` and `127.0.0.1`; expired on request) and
//! client certificates, written as PEM files in a temporary directory.
#![allow(dead_code)]

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SerialNumber,
};

/// A test CA and the directory its files are written to.
pub struct Pki {
    pub dir: tempfile::TempDir,
    /// The CA's certificate, PEM: what clients trust.
    pub ca: PathBuf,
    ca_cert: rcgen::Certificate,
    ca_key: KeyPair,
}

/// A certificate and its key, as files.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The certificate's serial number, as Python's `getpeercert()["serialNumber"]` spells
    /// it (upper-case hex).
    pub serial: String,
}

impl Pki {
    /// A new CA ("socketserver test CA").
    pub fn new() -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("socketserver-pki")
            .tempdir()
            .expect("temp dir");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "socketserver test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = params.self_signed(&ca_key).expect("CA certificate");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, ca_cert.pem()).expect("write CA");
        Pki {
            dir,
            ca,
            ca_cert,
            ca_key,
        }
    }

    /// A server certificate for `localhost` and `127.0.0.1`, with serial `serial`, valid now
    /// (or expired since 2021 when `expired`), written as `<file>.pem` and `<file>.key`.
    pub fn server(&self, file: &str, serial: u64, expired: bool) -> Issued {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, format!("server {serial}"));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        self.issue(file, serial, params)
    }

    /// A client certificate with common name `name`.
    pub fn client(&self, file: &str, serial: u64, name: &str) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(file, serial, params)
    }

    fn issue(&self, file: &str, serial: u64, mut params: CertificateParams) -> Issued {
        params.serial_number = Some(SerialNumber::from(serial));
        let key = KeyPair::generate().expect("key");
        let cert = params
            .signed_by(&key, &self.ca_cert, &self.ca_key)
            .expect("sign");
        let issued = Issued {
            cert: self.dir.path().join(format!("{file}.pem")),
            key: self.dir.path().join(format!("{file}.key")),
            serial: format!("{serial:02X}"),
        };
        std::fs::write(&issued.cert, cert.pem()).expect("write certificate");
        std::fs::write(&issued.key, key.serialize_pem()).expect("write key");
        issued
    }
}
