//! `<binary> --healthcheck`: asks the running HTTP service's own `/ready` and exits 0 when it answers
//! 200. Container runtimes use it as a probe that needs no curl in the image.
use std::{
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream},
    time::Duration,
};

/// True when `GET path` on the local service answers 200 within a few seconds.
pub fn probe(host: IpAddr, port: u16, path: &str) -> bool {
    let host = if host.is_unspecified() { IpAddr::V4(Ipv4Addr::LOCALHOST) } else { host };
    let Ok(mut stream) = TcpStream::connect_timeout(&SocketAddr::new(host, port), Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let mut status_line = [0u8; 12];
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_exact(&mut status_line).is_ok()
        && status_line.starts_with(b"HTTP/1.1 ")
        && &status_line[9..12] == b"200"
}
