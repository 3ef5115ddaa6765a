//! A small HTTP/1.1 client over hyper's connection API (one connection per request) and a
//! WebSocket client, for talking to the real gateway.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
}

/// Sends one request; the whole exchange is bounded by `within`.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
    within: Duration,
) -> anyhow::Result<Answer> {
    request_with(addr, method, path, &[], body, within).await
}

/// [`request`] with extra headers.
pub async fn request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
    within: Duration,
) -> anyhow::Result<Answer> {
    timeout(within, async {
        let stream = TcpStream::connect(addr).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr.to_string())
            .header("content-type", "application/json");
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        let resp = sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await?.to_bytes();
        anyhow::Ok(Answer { status, headers, body })
    })
    .await
    .with_context(|| format!("{method} {path} took over {within:?}"))?
}

pub async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<Answer> {
    request(addr, "GET", path, None, Duration::from_secs(10)).await
}

pub async fn post_json(
    addr: SocketAddr,
    path: &str,
    body: &serde_json::Value,
    within: Duration,
) -> anyhow::Result<Answer> {
    request(addr, "POST", path, Some(serde_json::to_vec(body)?), within).await
}

pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// Opens `/v1/ws?{query}`.
pub async fn ws_connect(addr: SocketAddr, query: &str) -> anyhow::Result<Ws> {
    ws_connect_with(addr, query, &[]).await
}

/// Opens `/v1/ws?{query}` with extra request headers.
pub async fn ws_connect_with(addr: SocketAddr, query: &str, headers: &[(&str, &str)]) -> anyhow::Result<Ws> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{addr}/v1/ws?{query}").into_client_request()?;
    for (name, value) in headers {
        req.headers_mut().insert(hyper::header::HeaderName::from_bytes(name.as_bytes())?, value.parse()?);
    }
    let (ws, _) = timeout(Duration::from_secs(10), tokio_tungstenite::connect_async(req)).await??;
    Ok(ws)
}

/// The HTTP status a refused WebSocket handshake got (`None` if it was accepted).
pub async fn ws_refused(addr: SocketAddr, query: &str, headers: &[(&str, &str)]) -> anyhow::Result<Option<u16>> {
    match ws_connect_with(addr, query, headers).await {
        Ok(_) => Ok(None),
        Err(e) => match e.downcast_ref::<tokio_tungstenite::tungstenite::Error>() {
            Some(tokio_tungstenite::tungstenite::Error::Http(resp)) => Ok(Some(resp.status().as_u16())),
            _ => Err(e),
        },
    }
}

/// The next JSON text frame, or `None` when the socket closed; bounded by `within`.
pub async fn ws_next(ws: &mut Ws, within: Duration) -> anyhow::Result<Option<serde_json::Value>> {
    loop {
        let frame = timeout(within, ws.next()).await.context("no WebSocket frame in time")?;
        match frame {
            None | Some(Ok(Message::Close(_))) => return Ok(None),
            Some(Ok(Message::Text(t))) => return Ok(Some(serde_json::from_str(t.as_str())?)),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
        }
    }
}
