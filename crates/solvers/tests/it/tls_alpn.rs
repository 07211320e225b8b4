//! The TLS-ALPN-01 listener with a real rustls client: the challenge certificate for a pending
//! name offered `acme-tls/1`, and failed handshakes for everything else (RFC 8737 §3).

use std::sync::Arc;

use certfleet_core::{ChallengeKind, PendingChallenge, Secret, Solver};
use certfleet_solvers::tls_alpn::{ACME_TLS_ALPN, TlsAlpn01Solver, TlsAlpnResponder, serve};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;

/// Accepts any certificate: the test inspects it itself (as a CA's validator does).
#[derive(Debug)]
struct AnyCert;

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

async fn handshake(
    addr: std::net::SocketAddr,
    sni: &str,
    alpn: &[&[u8]],
) -> Result<Vec<u8>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let tls = connector
        .connect(ServerName::try_from(sni.to_string()).unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (_, conn) = tls.get_ref();
    assert_eq!(
        conn.alpn_protocol(),
        Some(ACME_TLS_ALPN),
        "the server selected acme-tls/1"
    );
    Ok(conn.peer_certificates().unwrap()[0].to_vec())
}

#[tokio::test]
async fn serves_the_acme_identifier_certificate_and_refuses_everything_else() {
    let responder = TlsAlpnResponder::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(serve(listener, responder.clone(), stopped));
    let solver = TlsAlpn01Solver::new(responder.clone());
    let ka = "Tls_Alpn_Token_0123456789.thumbprint";
    let challenge = PendingChallenge {
        kind: ChallengeKind::TlsAlpn01,
        identifier: "alpn.example.test".into(),
        token: "Tls_Alpn_Token_0123456789".into(),
        key_authorization: Secret::new(ka),
        certificate: "alpn".into(),
        wildcard: false,
    };
    solver
        .present(std::slice::from_ref(&challenge))
        .await
        .unwrap();

    let der = handshake(addr, "alpn.example.test", &[ACME_TLS_ALPN])
        .await
        .unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let ext = cert
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
        .expect("acmeIdentifier extension");
    assert!(ext.critical, "RFC 8737 §3: the extension is critical");
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, ka.as_bytes());
    let mut expected = vec![0x04, 0x20];
    expected.extend_from_slice(digest.as_ref());
    assert_eq!(
        ext.value,
        expected.as_slice(),
        "OCTET STRING of SHA-256(key authorization)"
    );
    let san = cert.subject_alternative_name().unwrap().unwrap();
    assert_eq!(
        format!("{:?}", san.value.general_names),
        "[DNSName(\"alpn.example.test\")]"
    );

    assert!(
        handshake(addr, "alpn.example.test", &[]).await.is_err(),
        "no ALPN: refused"
    );
    assert!(
        handshake(addr, "alpn.example.test", &[b"h2", b"http/1.1"])
            .await
            .is_err(),
        "other ALPN: refused"
    );
    assert!(
        handshake(addr, "other.example.test", &[ACME_TLS_ALPN])
            .await
            .is_err(),
        "no challenge for the name"
    );
    solver.cleanup(&[challenge]).await.unwrap();
    assert!(
        handshake(addr, "alpn.example.test", &[ACME_TLS_ALPN])
            .await
            .is_err(),
        "withdrawn"
    );
    assert!(responder.is_empty());
}
