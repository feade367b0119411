//! A real SMTP server for tests (feature `test-util`, never in the shipped binary): it binds
//! 127.0.0.1 on a free port, speaks enough ESMTP for a client (EHLO, AUTH PLAIN, MAIL, RCPT,
//! DATA, RSET, NOOP, QUIT) and records every message; recipients listed in `reject` get a
//! permanent `550`.

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One message the server accepted.
#[derive(Debug, Clone, Default)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// The message as sent (headers and body), dot-stuffing undone.
    pub data: String,
    /// `user:password` when the client authenticated.
    pub auth: Option<String>,
}

/// The running server; stops when dropped.
pub struct SmtpServer {
    pub addr: std::net::SocketAddr,
    mails: Arc<Mutex<Vec<Mail>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `<addr>` out of `MAIL FROM:<addr>` / `RCPT TO:<addr>`.
fn angle(line: &str) -> String {
    match (line.find('<'), line.rfind('>')) {
        (Some(a), Some(b)) if b > a => line[a + 1..b].to_string(),
        _ => String::new(),
    }
}

async fn session(
    stream: tokio::net::TcpStream,
    mails: Arc<Mutex<Vec<Mail>>>,
    reject: Arc<Vec<String>>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    write.write_all(b"220 hilo-test ESMTP\r\n").await?;
    let mut mail = Mail::default();
    let mut auth = None;
    while let Some(line) = lines.next_line().await? {
        let upper = line.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            b"250-hilo-test\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n"
        } else if upper.starts_with("AUTH PLAIN") {
            let b64 = line.get(11..).unwrap_or_default().trim();
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap_or_default();
            let parts: Vec<String> = raw
                .split(|b| *b == 0)
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect();
            auth = parts.get(1..).map(|p| p.join(":"));
            b"235 2.7.0 Authentication successful\r\n"
        } else if upper.starts_with("MAIL FROM") {
            mail = Mail {
                from: angle(&line),
                auth: auth.clone(),
                ..Mail::default()
            };
            b"250 OK\r\n"
        } else if upper.starts_with("RCPT TO") {
            let to = angle(&line);
            if reject.contains(&to) {
                b"550 5.1.1 No such user\r\n"
            } else {
                mail.to.push(to);
                b"250 OK\r\n"
            }
        } else if upper == "DATA" {
            write
                .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                .await?;
            let mut data = String::new();
            while let Some(l) = lines.next_line().await? {
                if l == "." {
                    break;
                }
                data.push_str(l.strip_prefix('.').unwrap_or(&l));
                data.push('\n');
            }
            mail.data = data;
            lock(&mails).push(std::mem::take(&mut mail));
            b"250 2.0.0 Ok: queued as 42\r\n"
        } else if upper == "QUIT" {
            write.write_all(b"221 Bye\r\n").await?;
            return Ok(());
        } else if upper == "RSET" || upper == "NOOP" {
            b"250 OK\r\n"
        } else {
            b"502 Command not implemented\r\n"
        };
        write.write_all(reply).await?;
    }
    Ok(())
}

impl SmtpServer {
    /// Starts the server; `reject` are recipients answered with a permanent failure.
    pub async fn start(reject: &[&str]) -> std::io::Result<SmtpServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mails = Arc::new(Mutex::new(Vec::new()));
        let reject = Arc::new(reject.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let m = mails.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(session(stream, m.clone(), reject.clone()));
            }
        });
        Ok(SmtpServer { addr, mails, task })
    }

    /// The messages accepted so far, in order.
    pub fn mails(&self) -> Vec<Mail> {
        lock(&self.mails).clone()
    }
}
