//! A connection to a member: plain TCP, or TLS over it for a pool with `tls_enabled`
//! (Octavia's re-encryption to members; health checks in TLS go the same way). The TLS
//! client does not verify the member's certificate, as Octavia's HAProxy servers do not
//! (`ssl verify none`). It names the server the client asked for in its own TLS, if any
//! (Octavia's `sni ssl_fc_sni`), else none, since members are addressed by IP. It
//! resumes sessions with members it has met, so a new connection costs less than a full
//! handshake.

use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::tls;

#[derive(Debug)]
pub(crate) enum MemberIo {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl MemberIo {
    /// Opens TLS on `stream`, a connection to `member` (past any PROXY header), asking
    /// for server `sni` if given.
    pub async fn tls(stream: TcpStream, member: IpAddr, sni: Option<&str>) -> io::Result<MemberIo> {
        let connector = TlsConnector::from(tls::member_client_config());
        let name = sni
            .and_then(|sni| ServerName::try_from(sni.to_owned()).ok())
            .unwrap_or_else(|| ServerName::IpAddress(member.into()));
        let stream = connector.connect(name, stream).await?;
        Ok(MemberIo::Tls(Box::new(stream)))
    }
}

impl AsyncRead for MemberIo {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MemberIo::Plain(stream) => Pin::new(stream).poll_read(context, buffer),
            MemberIo::Tls(stream) => Pin::new(stream.as_mut()).poll_read(context, buffer),
        }
    }
}

impl AsyncWrite for MemberIo {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MemberIo::Plain(stream) => Pin::new(stream).poll_write(context, bytes),
            MemberIo::Tls(stream) => Pin::new(stream.as_mut()).poll_write(context, bytes),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MemberIo::Plain(stream) => Pin::new(stream).poll_write_vectored(context, buffers),
            MemberIo::Tls(stream) => {
                Pin::new(stream.as_mut()).poll_write_vectored(context, buffers)
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MemberIo::Plain(stream) => stream.is_write_vectored(),
            MemberIo::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MemberIo::Plain(stream) => Pin::new(stream).poll_flush(context),
            MemberIo::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(context),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MemberIo::Plain(stream) => Pin::new(stream).poll_shutdown(context),
            MemberIo::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(context),
        }
    }
}
