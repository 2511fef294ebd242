//! The HTTP server: `POST /graphql` and `/admin/…` on one listener.

use std::net::SocketAddr;

use anyhow::Context;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::schema::{SimSchema, build_schema};
use crate::sim::Sim;
use crate::{admin, graphql};

/// Shared state of the GraphQL route.
#[derive(Clone)]
pub(crate) struct AppState {
    pub sim: Sim,
    pub schema: SimSchema,
}

/// A running server. Dropping it stops the server; [`SimServer::shutdown`] stops it gracefully.
pub struct SimServer {
    /// e.g. `http://127.0.0.1:8080/graphql`
    pub graphql_url: String,
    /// e.g. `http://127.0.0.1:8080/admin`
    pub admin_url: String,
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl SimServer {
    pub(crate) async fn start(sim: Sim, addr: SocketAddr) -> anyhow::Result<SimServer> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let addr = listener.local_addr().context("no local address")?;
        let app = router(sim);
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                // Either an explicit shutdown or the handle being dropped stops the server.
                let _ = stop.await;
            });
            if let Err(e) = serve.await {
                log::error!("server stopped: {e}");
            }
        });
        log::info!("serving GraphQL on http://{addr}/graphql");
        Ok(SimServer {
            graphql_url: format!("http://{addr}/graphql"),
            admin_url: format!("http://{addr}/admin"),
            addr,
            shutdown: Some(shutdown),
            task: Some(task),
        })
    }

    /// Stops accepting connections and waits for open ones to finish.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn router(sim: Sim) -> Router {
    let state = AppState {
        schema: build_schema(sim.clone()),
        sim: sim.clone(),
    };
    Router::new()
        .route("/graphql", post(graphql::handle))
        .with_state(state)
        .nest("/admin", admin::router().with_state(sim))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                axum::Json(json!({ "error": "not found; the API is POST /graphql" })),
            )
        })
}
