//! A loopback TCP proxy in front of the real database server. Taking it down resets
//! every open connection and refuses new ones, which is what Jarvis sees when the
//! database host dies or the network drops; bringing it up restores service.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub struct DbProxy {
    pub addr: SocketAddr,
    state: Arc<Mutex<ProxyState>>,
    stop: CancellationToken,
}

struct ProxyState {
    up: bool,
    /// Cancelled (and replaced) to cut every open connection.
    generation: CancellationToken,
}

impl DbProxy {
    pub async fn start(target: SocketAddr, up: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(ProxyState {
            up,
            generation: CancellationToken::new(),
        }));
        let stop = CancellationToken::new();
        let (st, stop2) = (state.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = stop2.cancelled() => return,
                    a = listener.accept() => a,
                };
                let Ok((client, _)) = accepted else { continue };
                let (up, generation) = {
                    let s = st.lock().unwrap();
                    (s.up, s.generation.clone())
                };
                if !up {
                    drop(client); // refused: closed at once
                    continue;
                }
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let mut client = client;
                    tokio::select! {
                        _ = generation.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    }
                });
            }
        });
        Self { addr, state, stop }
    }

    pub fn set_up(&self, up: bool) {
        let mut s = self.state.lock().unwrap();
        s.up = up;
        if !up {
            s.generation.cancel();
            s.generation = CancellationToken::new();
        }
    }

    /// `url` with its host and port pointed at this proxy.
    pub fn rewrite(&self, url: &str) -> String {
        let mut u = url::Url::parse(url).unwrap();
        u.set_host(Some("127.0.0.1")).unwrap();
        u.set_port(Some(self.addr.port())).unwrap();
        u.to_string()
    }
}

impl Drop for DbProxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.set_up(false);
    }
}

/// Where a database URL points.
pub async fn target_of(url: &str) -> SocketAddr {
    let u = url::Url::parse(url).unwrap();
    let host = u.host_str().unwrap().to_owned();
    let port = u.port().unwrap_or(5432);
    tokio::net::lookup_host((host.as_str(), port))
        .await
        .unwrap()
        .next()
        .unwrap()
}
