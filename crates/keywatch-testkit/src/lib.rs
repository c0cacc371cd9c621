//! Helpers for the integration tests that talk to the services `make test` starts on
//! loopback (scripts/services.sh): tansu, moto and the Lambda runtime emulator. A test whose
//! service is missing fails and says which, rather than skipping.

use aws_sdk_sns::config::Credentials;

/// The address in environment variable `var`, checked to be listening; panics with a clear
/// message otherwise.
pub fn service(var: &str) -> String {
    let v = std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: this test needs the services `make test` starts")
    });
    let addr = v.trim_start_matches("http://").to_owned();
    assert!(
        std::net::TcpStream::connect(&addr).is_ok(),
        "nothing listens at {v} ({var}): start the services with scripts/services.sh start (make test does)"
    );
    v
}

/// A name no other test run uses, nor another test of this process: two threads can read
/// the same clock time, and creating a DynamoDB table that exists succeeds (deployments rely
/// on it), so two tests given one name would share a table.
pub fn unique(name: &str) -> String {
    static SEQUENCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{name}-{}-{nanos}-{n}", std::process::id())
}

/// AWS SDK configuration for the moto server at KEYWATCH_TEST_AWS_ENDPOINT.
pub async fn moto() -> aws_config::SdkConfig {
    moto_in("us-east-1").await
}

/// [`moto`] in another Region: a test's own corner of the shared server, where no other
/// test's trails or rules are seen.
pub async fn moto_in(region: &'static str) -> aws_config::SdkConfig {
    aws_config::from_env()
        .endpoint_url(service("KEYWATCH_TEST_AWS_ENDPOINT"))
        .region(aws_config::Region::new(region))
        .credentials_provider(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "keywatch-tests",
        ))
        .load()
        .await
}

/// An SNS topic with an SQS queue subscribed: (topic ARN, queue URL).
pub async fn subscribed_queue(config: &aws_config::SdkConfig, name: &str) -> (String, String) {
    let sns = aws_sdk_sns::Client::new(config);
    let sqs = aws_sdk_sqs::Client::new(config);
    let topic_arn = sns
        .create_topic()
        .name(name)
        .send()
        .await
        .expect("topic")
        .topic_arn()
        .expect("arn")
        .to_owned();
    let queue_url = sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .expect("queue")
        .queue_url()
        .expect("url")
        .to_owned();
    let arn_attr = aws_sdk_sqs::types::QueueAttributeName::QueueArn;
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(arn_attr.clone())
        .send()
        .await
        .expect("queue attributes");
    let queue_arn = attrs
        .attributes()
        .and_then(|a| a.get(&arn_attr))
        .expect("queue ARN")
        .clone();
    sns.subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(queue_arn)
        .send()
        .await
        .expect("subscribe");
    (topic_arn, queue_url)
}

/// Every SNS envelope waiting in the queue (deleted as read).
pub async fn envelopes(config: &aws_config::SdkConfig, queue_url: &str) -> Vec<serde_json::Value> {
    let sqs = aws_sdk_sqs::Client::new(config);
    let mut out = Vec::new();
    loop {
        let r = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive");
        if r.messages().is_empty() {
            return out;
        }
        for m in r.messages() {
            out.push(serde_json::from_str(m.body().unwrap_or_default()).expect("an SNS envelope"));
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .send()
                .await
                .expect("delete");
        }
    }
}

/// The alerts paged into the queue (the JSON SQS subscribers get).
pub async fn paged_alerts(
    config: &aws_config::SdkConfig,
    queue_url: &str,
) -> Vec<serde_json::Value> {
    envelopes(config, queue_url)
        .await
        .iter()
        .map(|e| {
            serde_json::from_str(e["Message"].as_str().unwrap_or_default()).expect("alert JSON")
        })
        .collect()
}

/// POSTs `body` to a function of the Lambda runtime emulator at `addr` (KEYWATCH_TEST_LAMBDA);
/// returns (status line, JSON body).
pub fn invoke(addr: &str, function: &str, body: &[u8]) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("emulator");
    // The first invocation of a function compiles it.
    s.set_read_timeout(Some(std::time::Duration::from_secs(600)))
        .expect("timeout");
    let head = format!(
        "POST /2015-03-31/functions/{function}/invocations HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())
        .and_then(|()| s.write_all(body))
        .expect("send");
    let mut response = String::new();
    s.read_to_string(&mut response).expect("response");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.lines().next().unwrap_or_default().to_owned();
    // The emulator may answer chunked; the JSON object is what lies between the braces.
    let body = match (body.find('{'), body.rfind('}')) {
        (Some(a), Some(b)) => body[a..=b].to_owned(),
        _ => body.to_owned(),
    };
    (status, body)
}

/// The public CloudTrail corpus file `sub` (KEYWATCH_CORPUS, else `../shared/cloudtrail-corpus`
/// beside the repository); panics, saying the test is not passed, when it is absent.
pub fn corpus(sub: &str) -> std::path::PathBuf {
    let root = std::env::var_os("KEYWATCH_CORPUS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../../shared/cloudtrail-corpus")
        });
    let p = root.join(sub);
    assert!(
        p.exists(),
        "the public CloudTrail corpus is not at {} (set KEYWATCH_CORPUS): this test needs it and is NOT passed",
        p.display()
    );
    p
}

/// scripts/fault_proxy.py on a free loopback port in front of an AWS endpoint (moto): it
/// forwards every request, throttles DynamoDB in a fixed pattern, and counts requests by
/// operation. Stopped when dropped.
pub struct FaultProxy {
    child: std::process::Child,
    port: u16,
}

impl FaultProxy {
    /// In front of `upstream`, throttling the first `n` of every `m` DynamoDB requests and,
    /// from the `outage.0`-th DynamoDB request on, all of them for `outage.1`.
    pub fn start(upstream: &str, n: u32, m: u32, outage: (u32, std::time::Duration)) -> Self {
        use std::io::BufRead as _;
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/fault_proxy.py");
        let mut child = std::process::Command::new("python3")
            .arg(script)
            .args(["--upstream", upstream, "--throttle", &format!("{n}/{m}")])
            .args([
                "--outage",
                &format!("{}+{}", outage.0, outage.1.as_secs_f64()),
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 for scripts/fault_proxy.py");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("proxy stdout");
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the proxy says where it listens");
        let port = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from the fault proxy: {line:?}"));
        FaultProxy { child, port }
    }

    /// The endpoint URL to give the code under test.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Requests seen so far by operation (`DynamoDB_20120810.PutItem`, `Publish`…), and
    /// `throttled`.
    pub fn counts(&self) -> std::collections::BTreeMap<String, u64> {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("proxy");
        s.write_all(b"GET /__proxy/counts HTTP/1.1\r\nHost: proxy\r\nConnection: close\r\n\r\n")
            .expect("ask the proxy");
        let mut response = String::new();
        s.read_to_string(&mut response).expect("proxy answer");
        let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        serde_json::from_str(body).unwrap_or_else(|e| panic!("proxy counts {body:?}: {e}"))
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Certificates for a mutual TLS test, made fresh: a CA, a broker certificate for 127.0.0.1
/// and a client certificate, both signed by the CA. The CA and the client's certificate and
/// key are PEM files (as `keywatch run` is given them); they live as long as this value.
pub struct TestCertificates {
    dir: tempfile::TempDir,
    ca_der: tokio_rustls::rustls::pki_types::CertificateDer<'static>,
    server_der: tokio_rustls::rustls::pki_types::CertificateDer<'static>,
    server_key_der: Vec<u8>,
    ca_pem: String,
    client_certificate_pem: String,
    client_key_pem: String,
}

impl TestCertificates {
    /// A new CA and the two certificates it signs.
    pub fn generate() -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
            KeyUsagePurpose,
        };
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "keywatch test CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = ca.self_signed(&ca_key).expect("CA certificate");
        let signed = |names: Vec<String>, usage: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().expect("key");
            let mut params = CertificateParams::new(names.clone()).expect("parameters");
            params
                .distinguished_name
                .push(DnType::CommonName, names[0].as_str());
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &ca, &ca_key).expect("signed");
            (cert, key)
        };
        let (server, server_key) = signed(
            vec!["127.0.0.1".into(), "localhost".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client, client_key) = signed(
            vec!["keywatch-test-client".into()],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let certs = TestCertificates {
            dir: tempfile::tempdir().expect("temporary directory"),
            ca_der: ca.der().clone(),
            server_der: server.der().clone(),
            server_key_der: server_key.serialize_der(),
            ca_pem: ca.pem(),
            client_certificate_pem: client.pem(),
            client_key_pem: client_key.serialize_pem(),
        };
        for (name, pem) in [
            ("ca.pem", &certs.ca_pem),
            ("client.pem", &certs.client_certificate_pem),
            ("client.key", &certs.client_key_pem),
        ] {
            std::fs::write(certs.dir.path().join(name), pem).expect("write a PEM file");
        }
        certs
    }

    /// The CA certificate's file.
    pub fn ca_file(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The client certificate's file.
    pub fn client_certificate_file(&self) -> std::path::PathBuf {
        self.dir.path().join("client.pem")
    }

    /// The client key's file (PKCS #8, unencrypted).
    pub fn client_key_file(&self) -> std::path::PathBuf {
        self.dir.path().join("client.key")
    }

    /// The CA certificate as PEM text.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The client certificate as PEM text.
    pub fn client_certificate_pem(&self) -> &str {
        &self.client_certificate_pem
    }

    /// The client key as PEM text.
    pub fn client_key_pem(&self) -> &str {
        &self.client_key_pem
    }
}

/// A TLS front for a broker that speaks none (tansu): it listens at `listen`, completes the
/// handshake only with clients whose certificate the test CA signed (mutual TLS), and
/// forwards the plain bytes to `backend`. The backend must advertise `listen` as its
/// address, so that clients come back through the front. Stopped when dropped.
pub struct TlsFront {
    address: String,
    runtime: Option<tokio::runtime::Runtime>,
    refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl TlsFront {
    /// The front `make test` provides for: at KEYWATCH_TEST_KAFKA_TLS, before the second
    /// tansu at KEYWATCH_TEST_KAFKA_TLS_BACKEND (which advertises the front). Panics with a
    /// clear message when either is missing.
    pub fn for_test_broker(certs: &TestCertificates) -> Self {
        let backend = service("KEYWATCH_TEST_KAFKA_TLS_BACKEND");
        let listen = std::env::var("KEYWATCH_TEST_KAFKA_TLS").unwrap_or_else(|_| {
            panic!("KEYWATCH_TEST_KAFKA_TLS is not set: this test needs the services `make test` starts")
        });
        Self::start(&listen, &backend, certs)
    }

    /// Starts the front with the broker certificate of `certs`.
    pub fn start(listen: &str, backend: &str, certs: &TestCertificates) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        use tokio_rustls::rustls;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(certs.ca_der.clone()).expect("the test CA");
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .expect("client certificate verifier");
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certs.server_key_der.clone().into());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![certs.server_der.clone(), certs.ca_der.clone()], key)
            .expect("server certificate");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        // Bound here, so that a busy address fails the test at once; served on the front's
        // own runtime (the test may be inside another).
        let listener = std::net::TcpListener::bind(listen)
            .unwrap_or_else(|e| panic!("the TLS front cannot listen at {listen}: {e}"));
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let (refused, accepted) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (refused_count, accepted_count) = (refused.clone(), accepted.clone());
        let backend = backend.to_owned();
        runtime.spawn(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, backend) = (acceptor.clone(), backend.clone());
                let (refused, accepted) = (refused_count.clone(), accepted_count.clone());
                tokio::spawn(async move {
                    match acceptor.accept(tcp).await {
                        Ok(mut tls) => {
                            accepted.fetch_add(1, Ordering::SeqCst);
                            if let Ok(mut plain) = tokio::net::TcpStream::connect(&backend).await {
                                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                            }
                        }
                        Err(_) => {
                            refused.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        TlsFront {
            address: listen.to_owned(),
            runtime: Some(runtime),
            refused,
            accepted,
        }
    }

    /// Where clients connect (`host:port`, the brokers to give them).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Handshakes refused so far (no client certificate, or one the CA did not sign).
    pub fn refused(&self) -> usize {
        self.refused.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Handshakes completed so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
