//! A log collector for decision-log tests: a small HTTP/1.1 server on a fixed loopback port
//! that accepts POSTed batches (gzip or plain), keeps every request, and can be stopped and
//! started again on the same port to simulate an outage.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request the collector received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Request method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Lower-case headers.
    pub headers: Vec<(String, String)>,
    /// Body after gzip decoding.
    pub body: Vec<u8>,
}

impl Received {
    /// A header value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A running (or stopped) collector.
pub struct Collector {
    /// Its port (kept across restarts).
    pub port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Status to answer with (200 by default).
    pub status: Arc<std::sync::atomic::AtomicU16>,
}

impl Collector {
    /// Starts on a free port.
    pub fn start() -> Self {
        let mut c = Self {
            port: crate::free_port(),
            received: Arc::default(),
            stop: Arc::default(),
            thread: None,
            status: Arc::new(std::sync::atomic::AtomicU16::new(200)),
        };
        c.resume();
        c
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops listening and closes every connection (the port refuses connections).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("collector thread");
        }
    }

    /// Listens again on the same port.
    pub fn resume(&mut self) {
        self.stop.store(false, Ordering::SeqCst);
        let listener = TcpListener::bind(("127.0.0.1", self.port)).expect("bind collector port");
        listener.set_nonblocking(true).expect("nonblocking");
        let (received, stop, status) = (
            self.received.clone(),
            self.stop.clone(),
            self.status.clone(),
        );
        self.thread = Some(std::thread::spawn(move || {
            let mut conns = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let (received, stop, status) =
                            (received.clone(), stop.clone(), status.clone());
                        conns.push(std::thread::spawn(move || {
                            serve(s, &received, &stop, &status)
                        }));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            drop(listener);
            for c in conns {
                let _ = c.join();
            }
        }));
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    /// Every NDJSON record received, in arrival order (duplicates included).
    pub fn records(&self) -> Vec<serde_json::Value> {
        self.received()
            .iter()
            .flat_map(|r| {
                String::from_utf8_lossy(&r.body)
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(|l| serde_json::from_str(l).expect("NDJSON line"))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Records with duplicate ids removed (first arrival kept), in arrival order.
    pub fn unique_records(&self) -> Vec<serde_json::Value> {
        let mut seen = std::collections::HashSet::new();
        self.records()
            .into_iter()
            .filter(|r| seen.insert(r["id"].as_str().unwrap_or_default().to_string()))
            .collect()
    }

    /// Waits until `f` holds for the unique records.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        f: impl Fn(&[serde_json::Value]) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            let recs = self.unique_records();
            if f(&recs) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; have {} unique records",
                recs.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(
    s: TcpStream,
    received: &Mutex<Vec<Received>>,
    stop: &AtomicBool,
    status: &std::sync::atomic::AtomicU16,
) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
    let mut reader = BufReader::new(match s.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut w = s;
    loop {
        let mut line = String::new();
        // Wait for the next request line, giving up when stopped.
        loop {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            match reader.read_line(&mut line) {
                Ok(0) => return,
                Ok(_) => break,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return,
            }
        }
        let _ = reader
            .get_ref()
            .set_read_timeout(Some(Duration::from_secs(5)));
        let method = line.split(' ').next().unwrap_or("").to_string();
        let path = line.split(' ').nth(1).unwrap_or("").to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let _ = reader
            .get_ref()
            .set_read_timeout(Some(Duration::from_millis(50)));
        if headers
            .iter()
            .any(|(k, v)| k == "content-encoding" && v == "gzip")
        {
            let mut out = Vec::new();
            if flate2::read::GzDecoder::new(&body[..])
                .read_to_end(&mut out)
                .is_err()
            {
                let _ = w.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
                continue;
            }
            body = out;
        }
        let code = status.load(Ordering::SeqCst);
        if stop.load(Ordering::SeqCst) {
            return;
        }
        if code == 200 {
            received.lock().expect("lock").push(Received {
                method,
                path,
                headers,
                body,
            });
        }
        let resp = format!("HTTP/1.1 {code} X\r\ncontent-length: 0\r\n\r\n");
        if w.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}
