//! A connection to a member: plain TCP, or TLS over it for a pool with `tls_enabled`
//! (Octavia's re-encryption to members; health checks in TLS go the same way), with the
//! pool's client configuration (`tls/member.rs`: by default the member's certificate is
//! not verified, as Octavia's HAProxy servers' `ssl verify none`). It names the server
//! the client asked for in its own TLS, if any (Octavia's `sni ssl_fc_sni`), else none,
//! since members are addressed by IP. It resumes sessions with members it has met, so a
//! new connection costs less than a full handshake.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::either::Either;

/// A member connection: `Left` in the clear, `Right` in TLS.
pub(crate) type MemberIo = Either<TcpStream, Box<TlsStream<TcpStream>>>;

/// A member connection in the clear.
pub(crate) fn plain(stream: TcpStream) -> MemberIo {
    Either::Left(stream)
}

/// Opens TLS with `config` on `stream`, a connection to `member` (past any PROXY
/// header), asking for server `sni` if given.
pub(crate) async fn tls(
    stream: TcpStream,
    member: IpAddr,
    sni: Option<&str>,
    config: Arc<rustls::ClientConfig>,
) -> io::Result<MemberIo> {
    let connector = TlsConnector::from(config);
    let name = sni
        .and_then(|sni| ServerName::try_from(sni.to_owned()).ok())
        .unwrap_or_else(|| ServerName::IpAddress(member.into()));
    let stream = connector.connect(name, stream).await?;
    Ok(Either::Right(Box::new(stream)))
}
