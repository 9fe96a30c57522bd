//! Raw-socket probes of a running HTTP server, for the tests of what a well-behaved client (reqwest)
//! cannot do: send a request's head slowly, stall in the middle of a body, or write a whole
//! oversized body before reading the answer.
use std::{io, net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

/// One HTTP/1.1 response as read off the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawResponse {
    pub status: u16,
    /// The status line and headers, as sent.
    pub head: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What a server did with a client that stopped sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stalled {
    /// It closed the connection without answering.
    Closed,
    /// It answered (and may have closed the connection after the answer).
    Answered(RawResponse),
    /// Neither, within the time the probe waited.
    StillOpen,
}

/// Connects to `address`, writes `bytes` (half a request line, or a head and part of its body),
/// then sends nothing more and waits up to `within` to see what the server does.
pub async fn stall_after(address: SocketAddr, bytes: &[u8], within: Duration) -> io::Result<Stalled> {
    let mut stream = TcpStream::connect(address).await?;
    stream.write_all(bytes).await?;
    match read_response(&mut stream, within).await {
        Ok(Some(response)) => Ok(Stalled::Answered(response)),
        Ok(None) => Ok(Stalled::Closed),
        Err(error) if error.kind() == io::ErrorKind::TimedOut => Ok(Stalled::StillOpen),
        Err(error) => Err(error),
    }
}

/// Reads one response from `stream`: until its `Content-Length` is complete, or the server closes.
/// `Ok(None)` when the server closed (or reset) the connection before sending anything;
/// `Err(TimedOut)` when nothing complete arrived within `within`.
pub async fn read_response(stream: &mut TcpStream, within: Duration) -> io::Result<Option<RawResponse>> {
    let mut received = Vec::new();
    let reading = async {
        let mut buffer = [0u8; 8192];
        loop {
            if let Some(response) = complete_response(&received) {
                return Ok(Some(response));
            }
            let read = match stream.read(&mut buffer).await {
                Ok(read) => read,
                // A reset before any byte is the server hanging up too; after some, the answer is cut short.
                Err(error) if error.kind() == io::ErrorKind::ConnectionReset && received.is_empty() => 0,
                Err(error) => return Err(error),
            };
            if read == 0 {
                return match parse_head(&received) {
                    None if received.is_empty() => Ok(None),
                    None => Err(io::Error::new(io::ErrorKind::InvalidData, "the connection closed mid-head")),
                    // Closed before Content-Length was reached, or without one: the body is what came.
                    Some((status, head, body_start)) => {
                        Ok(Some(RawResponse { status, head, body: received[body_start..].to_vec() }))
                    }
                };
            }
            received.extend_from_slice(&buffer[..read]);
        }
    };
    tokio::time::timeout(within, reading)
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "no complete response in time")))
}

/// `(status, head, offset of the body)` once the head is complete.
fn parse_head(received: &[u8]) -> Option<(u16, String, usize)> {
    let end = received.windows(4).position(|window| window == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&received[..end]).into_owned();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, head, end + 4))
}

fn complete_response(received: &[u8]) -> Option<RawResponse> {
    let (status, head, body_start) = parse_head(received)?;
    let response = RawResponse { status, head, body: Vec::new() };
    let length: usize = response.header("content-length")?.parse().ok()?;
    let body = received.get(body_start..body_start + length)?;
    Some(RawResponse { body: body.to_vec(), ..response })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_is_complete_once_its_content_length_has_arrived() {
        let head = b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: 5\r\n\r\n";
        let mut bytes = head.to_vec();
        bytes.extend_from_slice(b"{\"a\"");
        assert_eq!(complete_response(&bytes), None, "one byte short");
        bytes.push(b'}');
        let response = complete_response(&bytes).expect("complete");
        assert_eq!(response.status, 408);
        assert_eq!(response.header("Content-Type"), Some("application/json"));
        assert_eq!(response.body_text(), "{\"a\"}");
    }
}
