//! What HAProxy cannot do, found before it is signalled: a reload that
//! fails to bind still costs the serving worker a pause (about 2 s per
//! attempt was measured), so a config whose new listener cannot be bound
//! is refused here like one `haproxy -c` refuses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, Socket, Type};

/// Binds, briefly, each address `text` listens on that `running` (the
/// config HAProxy runs, if any) does not, as HAProxy binds it (with
/// SO_REUSEADDR and SO_REUSEPORT): so HAProxy's own listeners, and those of
/// an HAProxy teal adopted, do not count as held. Only "address in use" is
/// a refusal: a port HAProxy may bind and teal may not (below 1024, as
/// another user) is HAProxy's to try.
pub fn check_binds(running: Option<&str>, text: &str) -> Result<(), String> {
    let current: Vec<SocketAddr> = running.map(binds).unwrap_or_default();
    for address in binds(text).into_iter().filter(|a| !current.contains(a)) {
        if let Err(error) = bind_like_haproxy(address) {
            if error.kind() == std::io::ErrorKind::AddrInUse {
                return Err(format!(
                    "port {} is held by another process (bind {address}: {error})",
                    address.port()
                ));
            }
        }
    }
    Ok(())
}

fn bind_like_haproxy(address: SocketAddr) -> std::io::Result<()> {
    let socket = Socket::new(Domain::for_address(address), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if address.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&address.into())
}

/// The TCP addresses of every `bind` line; unix sockets, port ranges and
/// names are left to HAProxy.
fn binds(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| line.trim_start().strip_prefix("bind "))
        .filter_map(|rest| rest.split_whitespace().next())
        .flat_map(|list| list.split(','))
        .filter_map(parse_address)
        .collect()
}

fn parse_address(word: &str) -> Option<SocketAddr> {
    let word = word
        .strip_prefix("ipv4@")
        .or_else(|| word.strip_prefix("ipv6@"))
        .unwrap_or(word);
    if word.starts_with('/') || word.contains('@') {
        return None;
    }
    let (host, port) = match word.strip_prefix('[') {
        Some(bracketed) => {
            let (host, port) = bracketed.split_once("]:")?;
            (host, port)
        }
        None => word.rsplit_once(':')?,
    };
    let port: u16 = port.parse().ok()?;
    let ip = match host {
        "" | "*" | "0.0.0.0" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        "::" => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => host.parse().ok()?,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_addresses_haproxy_binds() {
        let text = "frontend a\n    bind :80\n    bind 127.0.0.1:8443 ssl crt-list /x alpn h2\n\
            frontend b\n    bind [::1]:5432,*:5433\n    bind /run/x.sock\n    bind :7000-7010\n";
        let found: Vec<String> = binds(text).iter().map(|a| a.to_string()).collect();
        assert_eq!(found, ["0.0.0.0:80", "127.0.0.1:8443", "[::1]:5432", "0.0.0.0:5433"]);
    }

    #[test]
    fn a_new_listener_on_a_held_port_is_refused_and_a_running_one_is_not() {
        let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = holder.local_addr().unwrap().port();
        let text = format!("frontend teal_tcp_db\n    bind 127.0.0.1:{port}\n");
        let error = check_binds(None, &text).unwrap_err();
        assert!(
            error.starts_with(&format!("port {port} is held by another process")),
            "{error}"
        );
        // HAProxy itself holds it: its new worker takes the socket over.
        assert_eq!(check_binds(Some(&text), &text), Ok(()));
        drop(holder);
        assert_eq!(check_binds(None, &text), Ok(()));
    }

    #[test]
    fn a_listener_bound_as_haproxy_binds_is_not_held() {
        // An HAProxy teal adopted: it runs a config teal did not apply.
        let haproxy = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        haproxy.set_reuse_address(true).unwrap();
        haproxy.set_reuse_port(true).unwrap();
        haproxy
            .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        haproxy.listen(16).unwrap();
        let port = haproxy.local_addr().unwrap().as_socket().unwrap().port();
        let text = format!("frontend teal_http\n    bind 127.0.0.1:{port}\n");
        assert_eq!(check_binds(None, &text), Ok(()));
    }
}
