//! A tiny authoritative DNS server on 127.0.0.1 (UDP and TCP are not needed: answers are small)
//! built on hickory-proto's message types. It answers from a table that a test can change while
//! it runs; names it does not know get NXDOMAIN, known names without a record of the asked type
//! get an empty NOERROR, and a name marked `ServFail` gets SERVFAIL.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use hickory_resolver::proto::op::{Message, MessageType, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, AAAA, MX, PTR, TXT};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use parking_lot::Mutex;
use tokio::net::UdpSocket;

#[derive(Clone, Debug)]
pub enum Entry {
    Mx(u16, &'static str),
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Txt(String),
    Ptr(String),
    /// Every query for the name fails with SERVFAIL.
    ServFail,
}

type Zone = Arc<Mutex<Vec<(String, Entry)>>>;

pub struct DnsStub {
    pub addr: SocketAddr,
    zone: Zone,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DnsStub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The answer records for one question, and whether the name is known at all.
fn answer(zone: &[(String, Entry)], name: &Name, kind: RecordType) -> (Vec<Record>, bool, bool) {
    let wanted = normalize(&name.to_ascii());
    let (mut records, mut known, mut failed) = (Vec::new(), false, false);
    for (entry_name, entry) in zone {
        if normalize(entry_name) != wanted {
            continue;
        }
        known = true;
        let rdata = match (entry, kind) {
            (Entry::Mx(preference, exchange), RecordType::MX) => {
                RData::MX(MX::new(*preference, Name::from_ascii(exchange).unwrap()))
            }
            (Entry::A(ip), RecordType::A) => RData::A(A(*ip)),
            (Entry::Aaaa(ip), RecordType::AAAA) => RData::AAAA(AAAA(*ip)),
            (Entry::Txt(text), RecordType::TXT) => {
                // Long values are split in 255-byte strings, as DNS requires.
                let parts = text
                    .as_bytes()
                    .chunks(255)
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .collect();
                RData::TXT(TXT::new(parts))
            }
            (Entry::Ptr(target), RecordType::PTR) => {
                RData::PTR(PTR(
                    Name::from_ascii(format!("{}.", normalize(target))).unwrap()
                ))
            }
            (Entry::ServFail, _) => {
                failed = true;
                continue;
            }
            _ => continue,
        };
        records.push(Record::from_rdata(name.clone(), 0, rdata));
    }
    (records, known, failed)
}

impl DnsStub {
    pub async fn start(zone: Vec<(&'static str, Entry)>) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind DNS stub");
        let addr = socket.local_addr().unwrap();
        let zone: Zone = Arc::new(Mutex::new(
            zone.into_iter().map(|(n, e)| (n.to_string(), e)).collect(),
        ));
        let table = zone.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(query) = Message::from_vec(&buf[..len]) else {
                    continue;
                };
                let mut response = Message::response(query.metadata.id, query.metadata.op_code);
                response.metadata.message_type = MessageType::Response;
                response.metadata.authoritative = true;
                response.metadata.recursion_desired = query.metadata.recursion_desired;
                response.metadata.recursion_available = true;
                let (mut known, mut failed) = (false, false);
                for question in &query.queries {
                    response.add_query(question.clone());
                    let (records, found, fail) =
                        answer(&table.lock(), question.name(), question.query_type());
                    known |= found;
                    failed |= fail;
                    for record in records {
                        response.add_answer(record);
                    }
                }
                if failed {
                    response.metadata.response_code = ResponseCode::ServFail;
                } else if !known {
                    response.metadata.response_code = ResponseCode::NXDomain;
                }
                if let Ok(bytes) = response.to_vec() {
                    let _ = socket.send_to(&bytes, peer).await;
                }
            }
        });
        Self { addr, zone, task }
    }

    /// Adds a record while the server runs.
    pub fn add(&self, name: &str, entry: Entry) {
        self.zone.lock().push((name.to_string(), entry));
    }
}
