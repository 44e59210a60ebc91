//! Ports for tests that need an address before anything listens on it.

use std::net::SocketAddr;

/// A port on 127.0.0.1 kept for the test while this value lives.
///
/// The socket is bound with `SO_REUSEADDR` and never listens. So connections to the port are
/// refused (a "nothing listens here" address that stays so), the kernel hands the port to no
/// one binding port 0 meanwhile (a port merely picked and released may go to the next mock a
/// parallel test starts), and a server told to bind it, with `SO_REUSEADDR` as std, tokio,
/// Pingora and PostgreSQL do, can.
pub struct ReservedPort {
    socket: socket2::Socket,
    addr: SocketAddr,
}

impl ReservedPort {
    pub fn new() -> ReservedPort {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("a TCP socket");
        socket.set_reuse_address(true).expect("SO_REUSEADDR");
        let any: SocketAddr = ([127, 0, 0, 1], 0).into();
        socket.bind(&any.into()).expect("bind 127.0.0.1:0");
        let addr = socket
            .local_addr()
            .expect("the bound address")
            .as_socket()
            .expect("an IP address");
        ReservedPort { socket, addr }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Default for ReservedPort {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for ReservedPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReservedPort({}, fd {:?})", self.addr, &self.socket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserved_port_refuses_connections_and_is_not_handed_out_but_can_be_bound() {
        let reserved = ReservedPort::new();
        assert!(std::net::TcpStream::connect(reserved.addr()).is_err());
        for _ in 0..2000 {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            assert_ne!(l.local_addr().unwrap().port(), reserved.port());
        }
        let server = std::net::TcpListener::bind(reserved.addr()).unwrap();
        let _client = std::net::TcpStream::connect(reserved.addr()).unwrap();
        server.accept().unwrap();
    }
}
