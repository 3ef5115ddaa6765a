//! A client of hearth as any program would be one: HTTP/1.1 over kept-alive connections
//! (hyper's connection API) and WebSockets (tokio-tungstenite), with an optional bearer
//! token. Every exchange is under a timeout.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use crate::error::BenchError;

/// Where hearth is and how to talk to it.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http://host:port` as given.
    pub url: String,
    pub addr: SocketAddr,
    /// `host:port`, for the Host header.
    pub authority: String,
    /// Sent as `Authorization: Bearer <token>` on every request and socket.
    pub token: Option<String>,
}

impl Target {
    /// Parses `http://host[:port]` (no path) and resolves the host.
    pub async fn resolve(url: &str, token: Option<String>) -> Result<Target, BenchError> {
        let bad = |why: &str| BenchError::Url { url: url.to_string(), why: why.to_string() };
        let rest = url.strip_prefix("http://").ok_or_else(|| bad("only http:// URLs are supported"))?;
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            return Err(bad("give the service's root, like http://127.0.0.1:8080"));
        }
        let with_port = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let addr = tokio::net::lookup_host(&with_port)
            .await
            .map_err(|e| bad(&e.to_string()))?
            .next()
            .ok_or_else(|| bad("the host resolves to no address"))?;
        Ok(Target { url: url.trim_end_matches('/').to_string(), addr, authority: authority.to_string(), token })
    }
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Result<serde_json::Value, BenchError> {
        serde_json::from_slice(&self.body).map_err(|e| BenchError::Protocol(format!("answer is not JSON: {e}")))
    }
}

/// One kept-alive HTTP/1.1 connection; reconnects when the server closed it.
pub struct Http {
    target: Target,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Http {
    pub fn new(target: &Target) -> Http {
        Http { target: target.clone(), sender: None }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, BenchError> {
        let stream = TcpStream::connect(self.target.addr).await.map_err(|e| BenchError::Connect(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| BenchError::Connect(e.to_string()))?;
        tokio::spawn(conn);
        Ok(sender)
    }

    /// Sends one request; the whole exchange is bounded by `within`.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Bytes>,
        within: Duration,
    ) -> Result<Answer, BenchError> {
        let exchange = async {
            let mut sender = match self.sender.take() {
                Some(s) if !s.is_closed() => s,
                _ => self.connect().await?,
            };
            sender.ready().await.map_err(|e| BenchError::Connect(e.to_string()))?;
            let mut req = hyper::Request::builder()
                .method(method)
                .uri(path)
                .header("host", &self.target.authority)
                .header("content-type", "application/json");
            if let Some(t) = &self.target.token {
                req = req.header("authorization", format!("Bearer {t}"));
            }
            let req = req.body(Full::new(body.unwrap_or_default())).map_err(|e| BenchError::Protocol(e.to_string()))?;
            let resp = sender.send_request(req).await.map_err(|e| BenchError::Http(e.to_string()))?;
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.map_err(|e| BenchError::Http(e.to_string()))?.to_bytes();
            self.sender = Some(sender);
            Ok(Answer { status, body })
        };
        timeout(within, exchange).await.map_err(|_| BenchError::Timeout(format!("{method} {path}")))?
    }

    pub async fn get(&mut self, path: &str) -> Result<Answer, BenchError> {
        self.request("GET", path, None, Duration::from_secs(10)).await
    }
}

pub type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

/// A small client-side socket: an idle socket should cost the bench little too.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(4 << 10).write_buffer_size(0).max_write_buffer_size(1 << 20)
}

/// Opens `/v1/ws?{query}`.
pub async fn ws_connect(target: &Target, query: &str) -> Result<Ws, BenchError> {
    let open = async {
        let url = format!("ws://{}/v1/ws?{query}", target.authority);
        let mut req = url.into_client_request().map_err(|e| BenchError::Protocol(e.to_string()))?;
        if let Some(t) = &target.token {
            let value = format!("Bearer {t}").parse().map_err(|_| BenchError::Protocol("bad token".into()))?;
            req.headers_mut().insert("authorization", value);
        }
        let stream = TcpStream::connect(target.addr).await.map_err(|e| BenchError::Connect(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let (ws, _) = tokio_tungstenite::client_async_with_config(req, stream, Some(ws_config()))
            .await
            .map_err(|e| BenchError::Connect(format!("websocket: {e}")))?;
        Ok(ws)
    };
    timeout(Duration::from_secs(30), open).await.map_err(|_| BenchError::Timeout("opening a websocket".into()))?
}

/// The next JSON text frame; `None` when the socket closed.
pub async fn ws_next(ws: &mut Ws, within: Duration) -> Result<Option<serde_json::Value>, BenchError> {
    loop {
        let frame = timeout(within, ws.next()).await.map_err(|_| BenchError::Timeout("a websocket frame".into()))?;
        match frame {
            None | Some(Ok(Message::Close(_))) => return Ok(None),
            Some(Ok(Message::Text(t))) => {
                return serde_json::from_str(t.as_str())
                    .map(Some)
                    .map_err(|e| BenchError::Protocol(format!("frame is not JSON: {e}")))
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(BenchError::Http(format!("websocket: {e}"))),
        }
    }
}

/// The Prometheus samples of `/metrics` without labels, by name.
pub async fn metrics(http: &mut Http) -> Result<std::collections::HashMap<String, f64>, BenchError> {
    let a = http.get("/metrics").await?;
    if a.status != 200 {
        return Err(BenchError::Status { what: "GET /metrics".into(), status: a.status });
    }
    let text = String::from_utf8_lossy(&a.body);
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .filter(|(name, _)| !name.contains('{'))
        .filter_map(|(name, v)| Some((name.to_string(), v.trim().parse().ok()?)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn urls_are_parsed_or_refused_clearly() {
        let t = Target::resolve("http://127.0.0.1:8080/", None).await.unwrap();
        assert_eq!(
            (t.addr.port(), t.authority.as_str(), t.url.as_str()),
            (8080, "127.0.0.1:8080", "http://127.0.0.1:8080")
        );
        assert_eq!(Target::resolve("http://127.0.0.1", None).await.unwrap().addr.port(), 80);
        assert!(Target::resolve("https://x", None).await.is_err());
        assert!(Target::resolve("http://127.0.0.1:8080/v1", None).await.is_err());
    }
}
