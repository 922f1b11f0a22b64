//! `pingora-baseline LISTEN UPSTREAM THREADS`: forward every request to UPSTREAM over pooled
//! HTTP/1.1 connections, nothing else. The floor under Portcullis' per-request cost.

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::{Opt, ServerConf};

struct Baseline {
    upstream: String,
}

#[async_trait]
impl ProxyHttp for Baseline {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream.as_str(), false, String::new())))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, upstream, threads] = args.as_slice() else {
        eprintln!("usage: pingora-baseline LISTEN UPSTREAM THREADS");
        std::process::exit(2);
    };
    let Ok(threads) = threads.parse() else {
        eprintln!("THREADS must be a number");
        std::process::exit(2);
    };
    // The gateway's settings that matter here: threads per service, work stealing on (default).
    let conf = ServerConf {
        threads,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let mut proxy = pingora::proxy::http_proxy_service(
        &server.configuration,
        Baseline {
            upstream: upstream.clone(),
        },
    );
    proxy.add_tcp(listen);
    server.add_service(proxy);
    server.run_forever();
}
