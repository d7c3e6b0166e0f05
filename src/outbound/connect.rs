//! Opening an outbound TCP connection from a chosen source address.
//!
//! The socket is bound to the source IP before connecting, with `IP_BIND_ADDRESS_NO_PORT` so the
//! kernel picks the port at connect time: many connections can then share one source address
//! towards different destinations without running out of ports. The kernel never chooses the
//! source address itself, except when the caller passes `None` (`ses-shared-pool` with no
//! configured addresses).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpSocket, TcpStream};

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The source address is not assigned to this host (EADDRNOTAVAIL).
    #[error("source address {0} is not assigned to this host")]
    AddressNotAvailable(IpAddr),
    #[error("cannot bind to source address {address}: {error}")]
    Bind { address: IpAddr, error: io::Error },
    #[error("connection to {0} timed out")]
    Timeout(SocketAddr),
    #[error("connection to {target} failed: {error}")]
    Connect {
        target: SocketAddr,
        error: io::Error,
    },
}

fn set_bind_address_no_port(socket: &Socket) -> io::Result<()> {
    let enable: libc::c_int = 1;
    // SAFETY: plain setsockopt on a socket we own, with a pointer to a live c_int and its size.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&enable as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Binds a socket to `source` (port chosen later) without connecting: the check that the
/// address is usable on this host.
fn bound_socket(source: IpAddr, family_of: SocketAddr) -> Result<Socket, ConnectError> {
    let bind_error = |error: io::Error| {
        if error.raw_os_error() == Some(libc::EADDRNOTAVAIL) {
            ConnectError::AddressNotAvailable(source)
        } else {
            ConnectError::Bind {
                address: source,
                error,
            }
        }
    };
    let socket = Socket::new(
        Domain::for_address(family_of),
        Type::STREAM,
        Some(Protocol::TCP),
    )
    .map_err(bind_error)?;
    socket.set_nonblocking(true).map_err(bind_error)?;
    socket.set_cloexec(true).map_err(bind_error)?;
    // Best effort: without it binding still works, ports are just not shared.
    let _ = set_bind_address_no_port(&socket);
    socket
        .bind(&SocketAddr::new(source, 0).into())
        .map_err(bind_error)?;
    Ok(socket)
}

/// True if `source` can be bound on this host right now.
pub fn source_available(source: IpAddr) -> Result<(), ConnectError> {
    bound_socket(source, SocketAddr::new(source, 25)).map(drop)
}

/// Connects to `target`, from `source` when given.
pub async fn connect_from(
    source: Option<IpAddr>,
    target: SocketAddr,
    timeout: Duration,
) -> Result<TcpStream, ConnectError> {
    let connect_error = |error: io::Error| ConnectError::Connect { target, error };
    let socket = match source {
        Some(source) => {
            let socket = bound_socket(source, target)?;
            TcpSocket::from_std_stream(std::net::TcpStream::from(socket))
        }
        None if target.is_ipv4() => TcpSocket::new_v4().map_err(connect_error)?,
        None => TcpSocket::new_v6().map_err(connect_error)?,
    };
    let _ = socket.set_nodelay(true);
    match tokio::time::timeout(timeout, socket.connect(target)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(error)) => Err(connect_error(error)),
        Err(_) => Err(ConnectError::Timeout(target)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn binds_the_chosen_loopback_source() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = listener.local_addr().unwrap();
        let source: IpAddr = "127.0.0.7".parse().unwrap();
        let stream = connect_from(Some(source), target, Duration::from_secs(5))
            .await
            .unwrap();
        let (_, peer) = listener.accept().await.unwrap();
        assert_eq!(peer.ip(), source);
        assert_eq!(stream.local_addr().unwrap().ip(), source);
    }

    #[tokio::test]
    async fn an_address_not_on_the_host_is_reported_not_replaced() {
        // A documentation address (RFC 5737) that this host does not have; some machines do
        // carry one, so the first that cannot be bound is used. Nothing is sent: bind fails first.
        let source: IpAddr = ["198.51.100.7", "203.0.113.7", "192.0.2.77"]
            .iter()
            .map(|a| a.parse().unwrap())
            .find(|&a| source_available(a).is_err())
            .expect("an unassigned documentation address");
        let error = connect_from(
            Some(source),
            "127.0.0.1:9".parse().unwrap(),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(error, ConnectError::AddressNotAvailable(ip) if ip == source),
            "{error}"
        );
        assert!(source_available("127.0.0.2".parse().unwrap()).is_ok());
    }
}
