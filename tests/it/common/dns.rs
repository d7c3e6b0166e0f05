//! A tiny authoritative DNS server on 127.0.0.1 (UDP) for MX tests, built on hickory-proto's
//! message types. It answers from a fixed table; names it does not know get NXDOMAIN, known
//! names without a record of the asked type get an empty NOERROR.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use hickory_resolver::proto::op::{Message, MessageType, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, MX};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;

#[derive(Clone)]
pub enum Entry {
    Mx(u16, &'static str),
    A(Ipv4Addr),
}

pub struct DnsStub {
    pub addr: SocketAddr,
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

impl DnsStub {
    pub async fn start(zone: Vec<(&'static str, Entry)>) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind DNS stub");
        let addr = socket.local_addr().unwrap();
        let zone = Arc::new(zone);
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
                let mut known = false;
                for question in &query.queries {
                    response.add_query(question.clone());
                    let wanted = normalize(&question.name().to_ascii());
                    for (name, entry) in zone.iter() {
                        if normalize(name) != wanted {
                            continue;
                        }
                        known = true;
                        let rdata = match (entry, question.query_type()) {
                            (Entry::Mx(preference, exchange), RecordType::MX) => {
                                RData::MX(MX::new(*preference, Name::from_ascii(exchange).unwrap()))
                            }
                            (Entry::A(ip), RecordType::A) => RData::A(A(*ip)),
                            _ => continue,
                        };
                        response.add_answer(Record::from_rdata(question.name().clone(), 60, rdata));
                    }
                }
                if !known {
                    response.metadata.response_code = ResponseCode::NXDomain;
                }
                if let Ok(bytes) = response.to_vec() {
                    let _ = socket.send_to(&bytes, peer).await;
                }
            }
        });
        Self { addr, task }
    }
}
