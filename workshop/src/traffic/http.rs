//! A small HTTP/1.1 client on a plain `TcpStream`: one connection, kept
//! alive, per client thread. It is all the load needs, and blocking calls
//! in a few threads cost a sixth of awc's CPU in a debug build (the one
//! `cargo workshop` is), so the traffic is never limited by its own client
//! (bench/README.md has the numbers).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Longest status or header line read, and most header lines: an answer
/// beyond them is not one this client understands.
const MAX_LINE: u64 = 8 * 1024;
const MAX_HEADERS: usize = 100;

/// Where requests go: `http://host:port`, resolved once.
#[derive(Clone)]
pub struct Address {
    /// As given, without a trailing `/`: for messages.
    pub url: String,
    /// `host:port`, the `Host` header.
    authority: String,
    /// What the host resolves to, IPv4 first: `localhost` is often `::1`
    /// first, and the services listen on 127.0.0.1.
    sockets: Vec<SocketAddr>,
}

impl Address {
    pub fn parse(url: &str) -> Result<Address, String> {
        let url = url.trim_end_matches('/');
        let authority = url.strip_prefix("http://").ok_or_else(|| {
            format!("{url}: give an http:// address (the workshop's services speak plain HTTP)")
        })?;
        if authority.is_empty() || authority.contains('/') {
            return Err(format!("{url}: give only http://host:port, without a path (--path)"));
        }
        let with_port =
            if authority.rsplit_once(':').is_some_and(|(_, port)| port.parse::<u16>().is_ok()) {
                authority.to_string()
            } else {
                format!("{authority}:80")
            };
        let mut sockets: Vec<SocketAddr> =
            with_port.to_socket_addrs().map(Iterator::collect).unwrap_or_default();
        if sockets.is_empty() {
            return Err(format!("{url}: no such host"));
        }
        sockets.sort_by_key(|socket| socket.is_ipv6());
        Ok(Address { url: url.to_string(), authority: authority.to_string(), sockets })
    }

    pub fn port(&self) -> u16 {
        self.sockets[0].port()
    }

    /// Another service on the same host (an instance the registry lists).
    pub fn at(host: &str, port: u16) -> Result<Address, String> {
        Address::parse(&format!("http://{host}:{port}"))
    }
}

pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// The gateway's API key, sent as `Authorization: Bearer <key>`.
    pub key: Option<&'a str>,
    /// A JSON body.
    pub body: Option<&'a str>,
}

impl Request<'_> {
    pub fn get(path: &str) -> Request<'_> {
        Request { method: "GET", path, key: None, body: None }
    }

    fn bytes(&self, authority: &str) -> Vec<u8> {
        let mut head = format!("{} {} HTTP/1.1\r\nHost: {authority}\r\n", self.method, self.path);
        if let Some(key) = self.key {
            head.push_str(&format!("Authorization: Bearer {key}\r\n"));
        }
        let body = self.body.unwrap_or("");
        if self.body.is_some() {
            head.push_str("Content-Type: application/json\r\n");
        }
        if self.body.is_some() || self.method != "GET" {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        head.push_str(body);
        head.into_bytes()
    }
}

pub struct Answer {
    pub status: u16,
    /// The body's first bytes, as many as were asked for.
    pub body: Vec<u8>,
}

/// Why there is no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Failure {
    /// Nothing listens there: the service is not running.
    Refused,
    /// No answer in time.
    TimedOut,
    /// The connection broke, or what came back is not HTTP.
    Broken,
}

/// What went wrong in one exchange, before it becomes a `Failure`.
enum Trouble {
    /// The server closed the connection before a byte of the answer: a
    /// kept-alive connection it had closed meanwhile.
    Closed,
    Io(io::Error),
    NotHttp,
}

impl From<io::Error> for Trouble {
    fn from(error: io::Error) -> Trouble {
        Trouble::Io(error)
    }
}

pub struct Connection {
    address: Address,
    timeout: Duration,
    stream: Option<BufReader<TcpStream>>,
}

impl Connection {
    pub fn new(address: Address, timeout: Duration) -> Connection {
        Connection { address, timeout, stream: None }
    }

    /// Sends the request and reads the whole answer, keeping at most `keep`
    /// bytes of its body.
    pub fn send(&mut self, request: &Request, keep: usize) -> Result<Answer, Failure> {
        let bytes = request.bytes(&self.address.authority);
        let reused = self.stream.is_some();
        let mut result = self.exchange(&bytes, keep);
        // As every HTTP client does: a kept-alive connection may have been
        // closed by the server in between; try once on a new one.
        if reused && matches!(result, Err(Trouble::Closed)) {
            result = self.exchange(&bytes, keep);
        }
        result.map_err(|trouble| {
            self.stream = None;
            match trouble {
                Trouble::Io(error) if error.kind() == io::ErrorKind::ConnectionRefused => {
                    Failure::Refused
                }
                Trouble::Io(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                    ) =>
                {
                    Failure::TimedOut
                }
                _ => Failure::Broken,
            }
        })
    }

    fn exchange(&mut self, bytes: &[u8], keep: usize) -> Result<Answer, Trouble> {
        let stream = match &mut self.stream {
            Some(stream) => stream,
            None => self.stream.insert(self.connect()?),
        };
        if let Err(error) = stream.get_mut().write_all(bytes) {
            self.stream = None;
            return Err(match error.kind() {
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => Trouble::Closed,
                _ => Trouble::Io(error),
            });
        }
        let read = read_answer(stream, keep);
        if !matches!(read, Ok((_, true))) {
            self.stream = None;
        }
        read.map(|(answer, _)| answer)
    }

    /// Connects to the first address that answers; fails as the first did.
    fn connect(&self) -> io::Result<BufReader<TcpStream>> {
        let mut first_error = None;
        for socket in &self.address.sockets {
            match TcpStream::connect_timeout(socket, self.timeout) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    stream.set_read_timeout(Some(self.timeout))?;
                    stream.set_write_timeout(Some(self.timeout))?;
                    return Ok(BufReader::new(stream));
                }
                Err(error) => _ = first_error.get_or_insert(error),
            }
        }
        Err(first_error.unwrap_or_else(|| io::ErrorKind::NotFound.into()))
    }
}

/// Reads a status line, headers and body; says whether the connection
/// can carry the next request.
fn read_answer(reader: &mut impl BufRead, keep: usize) -> Result<(Answer, bool), Trouble> {
    let status_line = match read_line(reader)? {
        Some(line) => line,
        None => return Err(Trouble::Closed),
    };
    let mut words = status_line.split_whitespace();
    let version = words.next().unwrap_or_default();
    let status = words.next().and_then(|code| code.parse::<u16>().ok()).ok_or(Trouble::NotHttp)?;
    let (mut length, mut chunked, mut keep_alive) = (None, false, version == "HTTP/1.1");
    for _ in 0..MAX_HEADERS {
        let line = read_line(reader)?.ok_or(Trouble::NotHttp)?;
        if line.is_empty() {
            let body = match (status, chunked, length) {
                (100..=199 | 204 | 304, _, _) => Vec::new(),
                (_, true, _) => read_chunked(reader, keep)?,
                (_, false, Some(length)) => read_some(reader, length, keep)?,
                (_, false, None) => {
                    keep_alive = false; // the body ends where the connection does
                    read_some(reader, u64::MAX, keep)?
                }
            };
            return Ok((Answer { status, body }, keep_alive));
        }
        let Some((name, value)) = line.split_once(':') else { return Err(Trouble::NotHttp) };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = Some(value.parse().map_err(|_| Trouble::NotHttp)?),
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "connection" => keep_alive = !value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    Err(Trouble::NotHttp)
}

/// A line without its CRLF; None at the end of the stream.
fn read_line(reader: &mut impl BufRead) -> Result<Option<String>, Trouble> {
    let mut line = Vec::new();
    let read = reader.by_ref().take(MAX_LINE).read_until(b'\n', &mut line)?;
    if read == 0 {
        return Ok(None);
    }
    if !line.ends_with(b"\n") {
        return Err(Trouble::NotHttp);
    }
    let text = String::from_utf8(line).map_err(|_| Trouble::NotHttp)?;
    Ok(Some(text.trim_end_matches(['\r', '\n']).to_string()))
}

/// Reads `length` bytes (or to the end), keeping the first `keep`.
fn read_some(reader: &mut impl BufRead, length: u64, keep: usize) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut limited = reader.by_ref().take(length);
    limited.by_ref().take(keep as u64).read_to_end(&mut body)?;
    io::copy(&mut limited, &mut io::sink())?;
    if length != u64::MAX && limited.limit() > 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(body)
}

/// `Transfer-Encoding: chunked`: a hexadecimal size line, that many bytes
/// and a CRLF, until a chunk of size 0 and the trailers.
fn read_chunked(reader: &mut impl BufRead, keep: usize) -> Result<Vec<u8>, Trouble> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader)?.ok_or(Trouble::NotHttp)?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = u64::from_str_radix(size, 16).map_err(|_| Trouble::NotHttp)?;
        if size == 0 {
            while !read_line(reader)?.ok_or(Trouble::NotHttp)?.is_empty() {}
            return Ok(body);
        }
        let room = keep.saturating_sub(body.len());
        body.extend(read_some(reader, size, room)?);
        if !read_line(reader)?.ok_or(Trouble::NotHttp)?.is_empty() {
            return Err(Trouble::NotHttp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(answer: &str, keep: usize) -> Option<(u16, String, bool)> {
        let (answer, keep_alive) = read_answer(&mut answer.as_bytes(), keep).ok()?;
        Some((answer.status, String::from_utf8(answer.body).unwrap(), keep_alive))
    }

    #[test]
    fn an_answer_is_framed_by_its_length_or_its_chunks() {
        let sized = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
        assert_eq!(read(sized, 100), Some((200, "hello".into(), true)));
        let chunked = "HTTP/1.1 502 Bad Gateway\r\nTransfer-Encoding: chunked\r\n\r\n\
                       3\r\nabc\r\n4;x=y\r\ndefg\r\n0\r\n\r\n";
        assert_eq!(read(chunked, 100), Some((502, "abcdefg".into(), true)));
        assert_eq!(read(chunked, 5), Some((502, "abcde".into(), true)), "kept: the first 5 bytes");
        let closing = "HTTP/1.1 200 OK\r\nConnection: close\r\ncontent-length: 2\r\n\r\nok";
        assert_eq!(read(closing, 100), Some((200, "ok".into(), false)));
        let to_the_end = "HTTP/1.0 200 OK\r\n\r\nall of it";
        assert_eq!(read(to_the_end, 100), Some((200, "all of it".into(), false)));
    }

    #[test]
    fn what_is_not_http_is_refused() {
        assert_eq!(read("SSH-2.0-OpenSSH\r\n\r\n", 100), None);
        assert_eq!(read("HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nshort", 100), None);
        assert_eq!(read("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 100), None);
        assert!(matches!(read_answer(&mut "".as_bytes(), 1), Err(Trouble::Closed)));
    }
}
