//! A real ACME server for the ACME tests: Debian's `pebble`, with
//! `pebble-challtestsrv` as its DNS server answering 127.0.0.1 for every
//! name, everything on 127.0.0.1 ports of its own. Pebble validates HTTP-01
//! on `httpPort`, which is teal's `--http-bind` port, so the CA's requests
//! go through teal's HAProxy like a real CA's would. Pebble's random wait
//! before each validation is off (`PEBBLE_VA_NOSLEEP`); its rejection of 5 %
//! of nonces is left on, which the client must get past. Both processes end
//! when the fixture is dropped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::util::{free_addr, free_port, wait_until};

const START_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Pebble {
    pebble: Child,
    dns: Child,
    dir: TempDir,
    /// `--acme-directory`.
    pub directory: String,
    /// `--acme-ca-file`: the CA of pebble's own HTTPS.
    pub ca_file: PathBuf,
    management: SocketAddr,
    dns_management: SocketAddr,
}

pub struct PebbleBuilder {
    http_port: u16,
    validity: Option<Duration>,
}

impl PebbleBuilder {
    /// Certificates valid this long (pebble's `certificateValidityPeriod`).
    pub fn validity(mut self, validity: Duration) -> Self {
        self.validity = Some(validity);
        self
    }

    pub async fn start(self) -> Pebble {
        let dir = tempfile::Builder::new()
            .prefix("teal-pebble-")
            .tempdir()
            .expect("temp dir");
        let (ca_pem, cert_pem, key_pem) = https_certificate();
        let path = |name: &str| dir.path().join(name);
        for (name, text) in [("ca.pem", &ca_pem), ("cert.pem", &cert_pem), ("key.pem", &key_pem)] {
            std::fs::write(path(name), text).expect("write pebble's certificate");
        }
        let (listen, management, dns, dns_management) = (free_addr(), free_addr(), free_addr(), free_addr());
        let mut config = serde_json::json!({
            "pebble": {
                "listenAddress": listen.to_string(),
                "managementListenAddress": management.to_string(),
                "certificate": path("cert.pem"),
                "privateKey": path("key.pem"),
                "httpPort": self.http_port,
                "tlsPort": free_port(),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
            }
        });
        if let Some(validity) = self.validity {
            config["pebble"]["certificateValidityPeriod"] = validity.as_secs().into();
        }
        std::fs::write(path("pebble.json"), config.to_string()).expect("write pebble.json");
        let log = |name: &str| std::fs::File::create(path(name)).expect("log file");
        let dns_child = Command::new("pebble-challtestsrv")
            .args(["-dns01", &dns.to_string(), "-management", &dns_management.to_string()])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .stdin(Stdio::null())
            .stdout(log("challtestsrv.log"))
            .stderr(log("challtestsrv.err"))
            .spawn()
            .expect("run pebble-challtestsrv (Debian's pebble package; scripts/test.sh installs it)");
        let pebble_child = Command::new("pebble")
            .arg("-config")
            .arg(path("pebble.json"))
            .args(["-dnsserver", &dns.to_string()])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .stdin(Stdio::null())
            .stdout(log("pebble.log"))
            .stderr(log("pebble.err"))
            .spawn()
            .expect("run pebble (Debian's pebble package; scripts/test.sh installs it)");
        let pebble = Pebble {
            pebble: pebble_child,
            dns: dns_child,
            directory: format!("https://{listen}/dir"),
            ca_file: path("ca.pem"),
            dir,
            management,
            dns_management,
        };
        for addr in [listen, management, dns_management] {
            wait_until(START_TIMEOUT, &format!("pebble listens on {addr}"), || async move {
                tokio::net::TcpStream::connect(addr).await.is_ok()
            })
            .await;
        }
        pebble
    }
}

impl Pebble {
    /// Pebble validating HTTP-01 on `http_port` (teal's `--http-bind`).
    pub fn builder(http_port: u16) -> PebbleBuilder {
        PebbleBuilder {
            http_port,
            validity: None,
        }
    }

    /// The root of the chains pebble issues (new at each start), PEM.
    pub async fn root(&self) -> String {
        let url = format!("https://{}/roots/0", self.management);
        let out = tokio::process::Command::new("curl")
            .args(["-sf", "--max-time", "5", "--cacert"])
            .arg(&self.ca_file)
            .arg(&url)
            .output()
            .await
            .expect("run curl");
        assert!(
            out.status.success(),
            "GET {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("PEM")
    }

    /// Makes DNS answer `ip` for `host`: 127.0.0.3 is loopback where nothing
    /// listens, so the CA's validation cannot connect.
    pub async fn resolve(&self, host: &str, ip: &str) {
        self.dns_command(
            "add-a",
            serde_json::json!({ "host": format!("{host}."), "addresses": [ip] }),
        )
        .await;
    }

    /// Back to the default answer (127.0.0.1) for `host`.
    pub async fn forget(&self, host: &str) {
        self.dns_command("clear-a", serde_json::json!({ "host": format!("{host}.") }))
            .await;
    }

    async fn dns_command(&self, command: &str, body: serde_json::Value) {
        let url = format!("http://{}/{command}", self.dns_management);
        let out = tokio::process::Command::new("curl")
            .args(["-sf", "--max-time", "5", "-X", "POST", "-d", &body.to_string(), &url])
            .output()
            .await
            .expect("run curl");
        assert!(
            out.status.success(),
            "POST {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Ends pebble and its DNS server: the directory URL answers no more.
    pub fn stop(&mut self) {
        for child in [&mut self.pebble, &mut self.dns] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Pebble's log, for a failing test.
    pub fn log(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!("{}{}", read("pebble.log"), read("pebble.err"))
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("----- pebble log -----\n{}\n-----", self.log());
        }
    }
}

/// A CA, and a certificate it signed for 127.0.0.1 and localhost with its
/// key: pebble's own HTTPS, which teal trusts through `--acme-ca-file`.
fn https_certificate() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "teal test pebble CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("key")).expect("CA");
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned()]).expect("leaf params");
    leaf.subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    let key = KeyPair::generate().expect("key");
    let cert = leaf.signed_by(&key, &ca).expect("leaf");
    (ca.pem(), cert.pem(), key.serialize_pem())
}
