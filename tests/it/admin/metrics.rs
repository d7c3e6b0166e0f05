//! Prometheus metrics on the socket.

use crate::common::*;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_outcomes_by_pool_and_source_ip() {
    let sink = start_sink().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let relay = TestRelay::start(&admin_config(sink.addr(), "").replace(
        "[admin]",
        &format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n[admin]"),
    ))
    .await;
    send_with_set(&relay, "sa", "counted").await;
    sink.wait_for(1, WAIT).await;
    let spool = relay.spool_dir();
    eventually(|| spool_files(&spool, "queue").is_empty().then_some(()))
        .await
        .expect("delivered");
    let fetch = |request: &'static [u8], over_tcp: bool| {
        let sock = socket(relay.dir.path());
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut response = Vec::new();
            if over_tcp {
                let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .unwrap();
                stream.write_all(request).await.unwrap();
                stream.read_to_end(&mut response).await.unwrap();
            } else {
                let mut stream = tokio::net::UnixStream::connect(sock).await.unwrap();
                stream.write_all(request).await.unwrap();
                stream.read_to_end(&mut response).await.unwrap();
            }
            String::from_utf8_lossy(&response).into_owned()
        }
    };
    let request: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    for over_tcp in [false, true] {
        let text = fetch(request, over_tcp).await;
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(
            text.contains(
                "poolrelay_recipients_delivered_total{pool=\"a\",source_ip=\"127.0.0.2\"}"
            ),
            "{text}"
        );
        assert!(text.contains("poolrelay_messages_accepted_total"), "{text}");
        assert!(text.contains("poolrelay_queue_messages "), "{text}");
        assert!(text.contains("poolrelay_delivery_seconds_bucket"), "{text}");
    }
    relay.stop().await;
}

/// Idle connections to the metrics listener are capped (64): the rest are closed at once, and
/// SMTP clients are still greeted. Failed before: every idle connection was kept, without limit
/// or timeout, until the relay ran out of file descriptors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_metrics_connections_are_capped() {
    use tokio::io::AsyncReadExt;
    let sink = start_sink().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let relay = TestRelay::start(&admin_config(sink.addr(), "").replace(
        "[admin]",
        &format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n[admin]"),
    ))
    .await;
    let mut idle = Vec::new();
    for _ in 0..100 {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        idle.push(stream);
    }
    // All at once, well within the 10 s the relay gives a client to send its headers.
    let mut reads = tokio::task::JoinSet::new();
    for mut stream in idle {
        reads.spawn(async move {
            let mut byte = [0u8; 1];
            let wait = std::time::Duration::from_secs(1);
            let read = tokio::time::timeout(wait, stream.read(&mut byte)).await;
            matches!(read, Ok(Ok(0)) | Ok(Err(_)))
        });
    }
    let mut closed = 0;
    while let Some(was_closed) = reads.join_next().await {
        closed += usize::from(was_closed.expect("read task"));
    }
    assert_eq!(
        closed, 36,
        "everything past 64 open connections is closed at once"
    );
    let (_, greeting) = RawClient::connect(relay.addr).await;
    assert!(greeting.starts_with("220"), "{greeting}");
    relay.stop().await;
}
