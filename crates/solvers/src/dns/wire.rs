//! DNS exchanges over UDP and TCP (RFC 1035 §4.2), with messages built and parsed by
//! hickory-proto: queries for the propagation check and zone discovery, and TSIG-signed
//! updates (RFC 2136, RFC 8945) for the `rfc2136` provider.
//!
//! Only the transport is ours: a datagram, or a message behind a two-byte length on TCP.
//! Every exchange is bounded by a timeout and checks that the answer carries our message id.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType, TSigner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::error::Error;

/// Largest UDP answer we accept (EDNS is not used; RFC 1035 says 512, servers may send more).
const UDP_BUFFER: usize = 4096;

/// `name` as an absolute DNS name; the error names the input.
pub fn fqdn(name: &str) -> Result<Name, Error> {
    let mut n = Name::from_ascii(name)
        .map_err(|e| Error::config("name", format!("{name:?} is not a DNS name: {e}")))?;
    n.set_fqdn(true);
    Ok(n)
}

/// `name` in presentation form without the final dot, lowercase.
pub fn text(name: &Name) -> String {
    name.to_ascii().trim_end_matches('.').to_ascii_lowercase()
}

fn dns_err(server: SocketAddr, message: impl Into<String>) -> Error {
    Error::Dns {
        server: server.to_string(),
        message: message.into(),
    }
}

/// A random message id from the system generator.
pub fn random_id() -> u16 {
    let mut b = [0u8; 2];
    // The id only has to be unpredictable enough to match answers; fall back to the clock.
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        return nanos as u16;
    }
    u16::from_be_bytes(b)
}

/// Ask `server` for `name`/`rtype`; `recursion` sets the RD bit (off for authoritative
/// servers). Over UDP, retried over TCP when the answer is truncated.
pub async fn query(
    server: SocketAddr,
    name: &Name,
    rtype: RecordType,
    recursion: bool,
    timeout: Duration,
) -> Result<Message, Error> {
    let mut msg = Message::new(random_id(), MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = recursion;
    msg.add_query(Query::query(name.clone(), rtype));
    let bytes = msg
        .to_vec()
        .map_err(|e| dns_err(server, format!("encoding the query: {e}")))?;
    let answer = exchange_udp(server, &bytes, timeout).await?;
    let parsed = parse(server, &answer, msg.metadata.id)?;
    if parsed.metadata.truncation {
        let answer = exchange_tcp(server, &bytes, timeout).await?;
        return parse(server, &answer, msg.metadata.id);
    }
    Ok(parsed)
}

/// Send a (TSIG-signed, when `signer` is given) update over TCP and return the server's
/// answer, whose signature is verified when the server accepted the update.
pub async fn update(
    server: SocketAddr,
    mut msg: Message,
    signer: Option<&TSigner>,
    timeout: Duration,
) -> Result<Message, Error> {
    let now = certfleet_core::time::now().max(0) as u64;
    let verifier = match signer {
        Some(s) => msg
            .finalize(s, now)
            .map_err(|e| dns_err(server, format!("signing the update: {e}")))?,
        None => None,
    };
    let bytes = msg
        .to_vec()
        .map_err(|e| dns_err(server, format!("encoding the update: {e}")))?;
    let answer = exchange_tcp(server, &bytes, timeout).await?;
    let parsed = parse(server, &answer, msg.metadata.id)?;
    if parsed.metadata.response_code == ResponseCode::NoError
        && let Some(mut verifier) = verifier
    {
        verifier.verify(&answer).map_err(|e| {
            dns_err(
                server,
                format!("the answer's TSIG signature does not verify ({e})"),
            )
        })?;
    }
    Ok(parsed)
}

fn parse(server: SocketAddr, bytes: &[u8], id: u16) -> Result<Message, Error> {
    let msg =
        Message::from_vec(bytes).map_err(|e| dns_err(server, format!("unreadable answer: {e}")))?;
    if msg.metadata.id != id || msg.metadata.message_type != MessageType::Response {
        return Err(dns_err(server, "the answer does not match the query"));
    }
    Ok(msg)
}

async fn exchange_udp(server: SocketAddr, msg: &[u8], timeout: Duration) -> Result<Vec<u8>, Error> {
    let local: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let work = async {
        let socket = UdpSocket::bind(local).await?;
        socket.connect(server).await?;
        socket.send(msg).await?;
        let mut buf = vec![0u8; UDP_BUFFER];
        let n = socket.recv(&mut buf).await?;
        buf.truncate(n);
        Ok::<_, std::io::Error>(buf)
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) => Err(dns_err(server, format!("UDP: {e}"))),
        Err(_) => Err(dns_err(
            server,
            format!("no answer over UDP within {} ms", timeout.as_millis()),
        )),
    }
}

async fn exchange_tcp(server: SocketAddr, msg: &[u8], timeout: Duration) -> Result<Vec<u8>, Error> {
    let len = u16::try_from(msg.len()).map_err(|_| dns_err(server, "message too long"))?;
    let work = async {
        let mut stream = TcpStream::connect(server).await?;
        stream.set_nodelay(true)?;
        let mut out = Vec::with_capacity(msg.len() + 2);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(msg);
        stream.write_all(&out).await?;
        let answer_len = stream.read_u16().await?;
        let mut buf = vec![0u8; usize::from(answer_len)];
        stream.read_exact(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) => Err(dns_err(server, format!("TCP: {e}"))),
        Err(_) => Err(dns_err(
            server,
            format!("no answer over TCP within {} ms", timeout.as_millis()),
        )),
    }
}

/// The strings of every TXT record owned by `name` in the answer section, each record's
/// character-strings joined (RFC 7208 §3.3 style).
pub fn txt_values(msg: &Message, name: &Name) -> Vec<String> {
    msg.answers
        .iter()
        .filter(|r| r.name == *name)
        .filter_map(|r| match &r.data {
            RData::TXT(txt) => Some(
                txt.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect::<String>(),
            ),
            _ => None,
        })
        .collect()
}

/// The CNAME target of `name` in the answer section, if any.
pub fn cname_target(msg: &Message, name: &Name) -> Option<Name> {
    msg.answers.iter().find_map(|r| match &r.data {
        RData::CNAME(c) if r.name == *name => Some(c.0.clone()),
        _ => None,
    })
}

/// The owner of the SOA record in the answer or authority section: the zone `name` is in.
pub fn soa_owner(msg: &Message) -> Option<Name> {
    let is_soa = |r: &&Record| matches!(r.data, RData::SOA(_));
    msg.answers
        .iter()
        .find(is_soa)
        .or_else(|| msg.authorities.iter().find(is_soa))
        .map(|r| r.name.clone())
}

/// The RFC mnemonic of a response code (`NOTAUTH`, `REFUSED`, ...).
pub fn rcode_name(code: ResponseCode) -> String {
    let n: u16 = code.into();
    let known = [
        (0, "NOERROR"),
        (1, "FORMERR"),
        (2, "SERVFAIL"),
        (3, "NXDOMAIN"),
        (4, "NOTIMP"),
        (5, "REFUSED"),
        (6, "YXDOMAIN"),
        (7, "YXRRSET"),
        (8, "NXRRSET"),
        (9, "NOTAUTH"),
        (10, "NOTZONE"),
    ];
    known
        .iter()
        .find(|(c, _)| *c == n)
        .map(|(_, s)| (*s).to_string())
        .unwrap_or_else(|| format!("RCODE {n}"))
}
