//! Sending spooled content that needs no dot-stuffing straight from its segment file to the
//! socket with `sendfile(2)`: the bytes never pass through the relay's memory. Only for plain
//! TCP (TLS encrypts in user space) and content the spool marked as sendable as it is (see
//! `smtp::dot_stuff::AsIsCheck`).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpStream;

use super::ClientError;

/// Spooled content to send as it is: `size` bytes of `file` from `offset`.
#[derive(Debug)]
pub struct SpooledContent {
    pub file: File,
    pub offset: u64,
    pub size: u64,
}

/// Most bytes asked of one `sendfile` call (the kernel's own limit is about 2 GiB).
const MAX_CALL: usize = 1 << 30;

/// Sends the whole content; each wait for the socket to take more is bounded by `timeout`.
pub async fn send_file(
    socket: &TcpStream,
    content: &SpooledContent,
    timeout: Duration,
) -> Result<(), ClientError> {
    let mut offset = libc::off_t::try_from(content.offset).map_err(io::Error::other)?;
    let mut left = content.size;
    while left > 0 {
        match tokio::time::timeout(timeout, socket.writable()).await {
            Ok(ready) => ready?,
            Err(_) => return Err(ClientError::Timeout("content")),
        }
        let sent = socket.try_io(Interest::WRITABLE, || {
            let want = usize::try_from(left).unwrap_or(MAX_CALL).min(MAX_CALL);
            // SAFETY: both descriptors are open for the duration of the call, and `offset`
            // is a valid pointer to an off_t the kernel advances.
            let sent = unsafe {
                libc::sendfile(
                    socket.as_raw_fd(),
                    content.file.as_raw_fd(),
                    &mut offset,
                    want,
                )
            };
            if sent < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(sent as u64)
            }
        });
        match sent {
            // The file ended before the content did: the spool is damaged, not the peer.
            Ok(0) => {
                return Err(ClientError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the spooled content is shorter than its envelope says",
                )));
            }
            Ok(sent) => left = left.saturating_sub(sent),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}
