//! Network grants: the `host:port` entries of `allow.net`, resolved when the step starts, and
//! the socket check that lets a plugin connect to exactly those addresses over TCP.
//!
//! Without grants a step gets no TCP, no UDP and no name lookups. With grants it may resolve
//! names (wasi:sockets cannot filter lookups by name) and open TCP connections to the resolved
//! addresses on the granted ports; it may not listen, accept, bind a chosen port, or use UDP.

use std::collections::HashSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::sockets::SocketAddrUse;

/// The addresses a step may connect to.
#[derive(Debug, Clone, Default)]
pub(crate) struct NetAllowList {
    addrs: HashSet<SocketAddr>,
}

impl NetAllowList {
    /// Resolve every `host:port` entry (blocking: run it off the async threads).
    pub(crate) fn resolve(entries: &[String]) -> Result<Self, String> {
        let mut addrs = HashSet::new();
        for entry in entries {
            let resolved = entry.to_socket_addrs().map_err(|e| {
                format!("cannot resolve the network grant `{entry}`: {e}; write it as `host:port`")
            })?;
            addrs.extend(resolved.map(canonical));
        }
        Ok(NetAllowList { addrs })
    }

    pub(crate) fn allows(&self, addr: SocketAddr) -> bool {
        self.addrs.contains(&canonical(addr))
    }

    /// Configure the WASI sockets of a step: TCP connections to these addresses only.
    pub(crate) fn apply(self, wasi: &mut WasiCtxBuilder) {
        let allow = Arc::new(self);
        wasi.allow_tcp(true)
            .allow_udp(false)
            .allow_ip_name_lookup(true)
            .socket_addr_check(move |addr, use_| {
                let ok = match use_ {
                    SocketAddrUse::TcpConnect => allow.allows(addr),
                    // `connect` first binds implicitly to the wildcard address and port 0.
                    SocketAddrUse::TcpBind => addr.ip().is_unspecified() && addr.port() == 0,
                    _ => false,
                };
                if !ok {
                    tracing::debug!(%addr, ?use_, "denied a socket address");
                }
                Box::pin(async move { ok })
            });
    }

    /// No network at all (the default of a step).
    pub(crate) fn deny_all(wasi: &mut WasiCtxBuilder) {
        wasi.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }));
    }
}

/// IPv4-mapped IPv6 addresses compare equal to their IPv4 form.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_resolve_to_exact_addresses_and_ports() {
        let list =
            NetAllowList::resolve(&["127.0.0.1:8080".to_owned(), "localhost:9000".to_owned()])
                .expect("resolves");
        assert!(list.allows("127.0.0.1:8080".parse().expect("addr")));
        assert!(list.allows("[::ffff:127.0.0.1]:8080".parse().expect("addr")));
        assert!(list.allows("127.0.0.1:9000".parse().expect("addr")));
        assert!(!list.allows("127.0.0.1:8081".parse().expect("addr")));
        assert!(!list.allows("127.0.0.2:8080".parse().expect("addr")));
    }

    #[test]
    fn a_grant_without_a_port_is_an_error() {
        let err = NetAllowList::resolve(&["example.com".to_owned()]).expect_err("no port");
        assert!(err.contains("`example.com`"), "{err}");
    }
}
