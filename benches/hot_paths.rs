//! Microbenchmarks of the pure hot paths: command parsing, header classification, the DATA
//! reader, dot-stuffing, source IP selection, and DKIM signing (the `From:` lookup, and a whole
//! signature with Ed25519 and RSA-2048 against the bare private-key operation).
//! `cargo bench --bench hot_paths`.

use std::collections::HashMap;
use std::hint::black_box;
use std::net::IpAddr;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use poolrelay::inbound::HeaderFilter;
use poolrelay::load::sample_message;
use poolrelay::outbound::select::select_source_ip;
use poolrelay::settings::BareNewline;
use poolrelay::smtp::data::DataReader;
use poolrelay::smtp::dot_stuff::dot_stuff;
use poolrelay::smtp::line::{Framed, frame_command};

fn command_parsing(c: &mut Criterion) {
    let input = b"MAIL FROM:<sender@example.test> SIZE=2048 BODY=8BITMIME\r\nRCPT TO:<user@example.test>\r\n";
    c.bench_function("frame and parse MAIL + RCPT", |b| {
        b.iter(|| {
            let mut rest = &input[..];
            while let Framed::Line(line, used) = frame_command(rest) {
                let mut framed = line.to_vec();
                framed.extend_from_slice(b"\r\n");
                black_box(smtp_proto::Request::parse(&mut framed.iter()).ok());
                rest = &rest[used..];
            }
        })
    });
}

fn header_classification(c: &mut Criterion) {
    let message = sample_message(1, 2048, Some("promo"), "example.test");
    let mut group = c.benchmark_group("header classification");
    group.throughput(Throughput::Bytes(message.len() as u64));
    group.bench_function("2 KB message", |b| {
        let mut out = Vec::with_capacity(4096);
        b.iter(|| {
            out.clear();
            let mut filter = HeaderFilter::new();
            filter.feed(black_box(&message), &mut out);
            filter.finish(&mut out);
            black_box(filter.configuration_set().map(str::len));
        })
    });
    group.finish();
}

fn data_reader(c: &mut Criterion) {
    let mut wire = sample_message(1, 100 * 1024, Some("promo"), "example.test");
    wire.extend_from_slice(b".\r\n");
    let mut group = c.benchmark_group("DATA reader");
    group.throughput(Throughput::Bytes(wire.len() as u64));
    group.bench_function("100 KB", |b| {
        let mut out = Vec::with_capacity(wire.len());
        b.iter(|| {
            out.clear();
            let mut reader = DataReader::new(BareNewline::Reject, u64::MAX);
            black_box(reader.feed(black_box(&wire), &mut out));
        })
    });
    group.finish();
}

fn dot_stuffing(c: &mut Criterion) {
    let mut content = sample_message(1, 100 * 1024, None, "example.test");
    content.extend_from_slice(b".leading dot\r\n..two\r\n");
    let mut group = c.benchmark_group("dot-stuffing");
    group.throughput(Throughput::Bytes(content.len() as u64));
    group.bench_function("100 KB", |b| {
        b.iter(|| black_box(dot_stuff(black_box(&content))))
    });
    group.finish();
}

fn ip_selection(c: &mut Criterion) {
    let candidates: Vec<(IpAddr, u32)> = (2..=5)
        .map(|last| (IpAddr::from([127, 0, 0, last]), u32::from(last)))
        .collect();
    c.bench_function("select source IP (4 weighted IPs)", |b| {
        let mut state = HashMap::new();
        b.iter(|| black_box(select_source_ip(black_box(&candidates), &mut state, None)))
    });
}

fn dkim_signing(c: &mut Criterion) {
    use poolrelay::identity::key::{DkimKey, KeyAlgorithm};
    use poolrelay::identity::sign::Signer;
    use std::borrow::Cow;
    use std::sync::Arc;
    let message = sample_message(1, 2048, None, "example.test");
    let split = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(message.len(), |at| at + 4);
    let (head, body) = message.split_at(split);
    c.bench_function("From: address of a 2 KB message", |b| {
        b.iter(|| black_box(poolrelay::identity::from::from_address(black_box(head))))
    });
    for algorithm in [KeyAlgorithm::Ed25519, KeyAlgorithm::Rsa2048] {
        let pem = DkimKey::generate(algorithm).expect("a key");
        let signer = Signer {
            identity: "example.test".into(),
            domain: "example.test".into(),
            selector: "bench".into(),
            key: Arc::new(DkimKey::from_pem(pem.as_bytes()).expect("the key reads back")),
        };
        c.bench_function(
            &format!("DKIM-sign a 2 KB message ({})", algorithm.as_str()),
            |b| {
                b.iter(|| {
                    let mut pieces = [Cow::Borrowed(head), Cow::Borrowed(body)]
                        .into_iter()
                        .map(Ok);
                    black_box(signer.sign(Signer::fields_to_sign(head), &mut pieces))
                })
            },
        );
    }
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
        .expect("a key");
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("the key");
    c.bench_function("bare Ed25519 signature of 32 bytes (ring)", |b| {
        b.iter(|| black_box(pair.sign(black_box(&[7u8; 32]))))
    });
}

criterion_group!(
    benches,
    dkim_signing,
    command_parsing,
    header_classification,
    data_reader,
    dot_stuffing,
    ip_selection
);
criterion_main!(benches);
