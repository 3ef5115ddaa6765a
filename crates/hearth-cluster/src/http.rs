//! A small HTTP/1.1 client (hyper's connection API, one connection per request) and
//! WebSocket helpers: enough to drive and watch gateways, every call bounded in time.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

use crate::error::ClusterError;

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

fn http_error(what: String) -> impl FnOnce(String) -> ClusterError {
    move |why| ClusterError::Http { what, why }
}

/// Sends one request; the whole exchange is bounded by `within`.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
    within: Duration,
) -> Result<Answer, ClusterError> {
    let what = format!("{method} http://{addr}{path}");
    let exchange = async {
        let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr.to_string())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let retry_after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok::<_, String>(Answer { status, retry_after, body })
    };
    match timeout(within, exchange).await {
        Ok(r) => r.map_err(http_error(what)),
        Err(_) => Err(ClusterError::Http { what, why: format!("no answer within {within:?}") }),
    }
}

pub async fn get(addr: SocketAddr, path: &str) -> Result<Answer, ClusterError> {
    request(addr, "GET", path, None, Duration::from_secs(10)).await
}

pub async fn post_json(
    addr: SocketAddr,
    path: &str,
    body: &serde_json::Value,
    within: Duration,
) -> Result<Answer, ClusterError> {
    let bytes = serde_json::to_vec(body).expect("a JSON value encodes");
    request(addr, "POST", path, Some(bytes), within).await
}

pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// Opens `ws://addr/v1/ws?{query}` within 10 s.
pub async fn ws_connect(addr: SocketAddr, query: &str) -> Result<Ws, ClusterError> {
    let url = format!("ws://{addr}/v1/ws?{query}");
    match timeout(Duration::from_secs(10), tokio_tungstenite::connect_async(url.as_str())).await {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(e)) => Err(ClusterError::Http { what: url, why: e.to_string() }),
        Err(_) => Err(ClusterError::Http { what: url, why: "no upgrade within 10 s".into() }),
    }
}

/// What came next on a WebSocket.
#[derive(Debug, Clone, PartialEq)]
pub enum WsNext {
    /// A JSON text frame.
    Event(serde_json::Value),
    /// A close frame, with its code.
    Closed(Option<u16>),
    /// The connection ended without a close frame (or with an error).
    Broken(String),
}

/// The next JSON frame, close or break, bounded by `within` (`None` on time-out).
pub async fn ws_next(ws: &mut Ws, within: Duration) -> Option<WsNext> {
    loop {
        let frame = timeout(within, ws.next()).await.ok()?;
        return Some(match frame {
            None => WsNext::Broken("end of stream".into()),
            Some(Ok(Message::Text(t))) => match serde_json::from_str(t.as_str()) {
                Ok(v) => WsNext::Event(v),
                Err(e) => WsNext::Broken(format!("a frame that is not JSON: {e}")),
            },
            Some(Ok(Message::Close(frame))) => WsNext::Closed(frame.map(|f| u16::from(f.code))),
            Some(Ok(_)) => continue,
            Some(Err(e)) => WsNext::Broken(e.to_string()),
        });
    }
}

/// The close code a gateway sends when it stops (the UI reconnects on it).
pub const SERVICE_RESTART: u16 = 1012;
