//! Shared by the test fixtures: a TCP connect through `wasi:sockets` directly (Debian's
//! wasi-libc predates WASI 0.2 sockets, so `std::net` cannot be used for this).

use wasi::sockets::{instance_network, ip_name_lookup, network, tcp_create_socket};

/// Connect to `host:port` (an IPv4 literal or a name) and close; the error text says what failed.
pub fn tcp_connect(addr: &str) -> Result<(), String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("`{addr}` is not host:port"))?;
    let port: u16 = port.parse().map_err(|_| format!("bad port in `{addr}`"))?;
    let net = instance_network::instance_network();
    let ip = match host.parse::<std::net::Ipv4Addr>() {
        Ok(ip) => ip.octets(),
        Err(_) => {
            let stream = ip_name_lookup::resolve_addresses(&net, host)
                .map_err(|e| format!("resolve {host}: {e:?}"))?;
            loop {
                match stream.resolve_next_address() {
                    Ok(Some(network::IpAddress::Ipv4(a))) => break [a.0, a.1, a.2, a.3],
                    Ok(Some(_)) => continue,
                    Ok(None) => return Err(format!("resolve {host}: no IPv4 address")),
                    Err(network::ErrorCode::WouldBlock) => stream.subscribe().block(),
                    Err(e) => return Err(format!("resolve {host}: {e:?}")),
                }
            }
        }
    };
    let socket = tcp_create_socket::create_tcp_socket(network::IpAddressFamily::Ipv4)
        .map_err(|e| format!("create socket: {e:?}"))?;
    let remote = network::IpSocketAddress::Ipv4(network::Ipv4SocketAddress {
        port,
        address: (ip[0], ip[1], ip[2], ip[3]),
    });
    socket
        .start_connect(&net, remote)
        .map_err(|e| format!("connect {addr}: {e:?}"))?;
    loop {
        match socket.finish_connect() {
            Ok(_streams) => return Ok(()),
            Err(network::ErrorCode::WouldBlock) => socket.subscribe().block(),
            Err(e) => return Err(format!("connect {addr}: {e:?}")),
        }
    }
}
