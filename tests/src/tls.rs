//! An https front for the loopback [`HttpServer`](crate::http::HttpServer): it terminates TLS on
//! its own port of 127.0.0.1 with a certificate made for the test (by the `openssl` command,
//! for the IP address 127.0.0.1) and relays each connection, decrypted, to the plain server. So
//! `https://127.0.0.1:TLS_PORT/P` serves what `http://127.0.0.1:PORT/P` serves, faults
//! included, and a client trusts it when `SSL_CERT_FILE` names [`TlsFront::cert_file`] (spkd's
//! TLS roots come from `rustls-native-certs`, which reads that variable).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};

/// A running https front; dropping it stops it.
pub struct TlsFront {
    addr: SocketAddr,
    cert: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Make a self-signed certificate for 127.0.0.1 in `dir`: `(cert.pem, key.pem)`.
fn make_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let cert = dir.join("tls-cert.pem");
    let key = dir.join("tls-key.pem");
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "keyUsage=critical,digitalSignature"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl req failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

impl TlsFront {
    /// Serve https on a random port of 127.0.0.1, relaying to `target` (the plain server's
    /// address); the certificate and key are written into `dir`.
    pub fn start(target: SocketAddr, dir: &Path) -> TlsFront {
        let (cert_file, key_file) = make_certificate(dir);
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_file)
            .expect("read certificate")
            .collect::<Result<_, _>>()
            .expect("parse certificate");
        let key = PrivateKeyDer::from_pem_file(&key_file).expect("read key");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server certificate");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("local address");
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("tls-front".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("tokio listener");
                    loop {
                        let accepted = tokio::select! {
                            a = listener.accept() => a,
                            _ = &mut stop_rx => return,
                        };
                        let Ok((stream, _)) = accepted else { continue };
                        let acceptor = acceptor.clone();
                        tokio::spawn(async move {
                            let Ok(mut tls) = acceptor.accept(stream).await else {
                                return;
                            };
                            let Ok(mut plain) = TcpStream::connect(target).await else {
                                return;
                            };
                            let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                        });
                    }
                });
            })
            .expect("spawn the TLS front");
        TlsFront {
            addr,
            cert: cert_file,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// `https://127.0.0.1:PORT` + `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    /// The certificate to trust (`SSL_CERT_FILE`).
    pub fn cert_file(&self) -> &Path {
        &self.cert
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
