//! agentd's HTTP faces. Only this crate knows axum, status codes and wire JSON: it parses a request,
//! checks the caller's scope (in the extractor's type), calls a service and renders the result.
//!
//! [`router`] builds the whole application; [`serve`] runs it until a shutdown signal, finishing
//! in-flight requests.

use std::future::Future;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

pub mod audit;
pub mod auth;
pub mod extract;
pub mod form;
pub mod listing;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod problem;
pub mod routes;
pub mod sse;
pub mod state;

pub use state::AppState;

/// The application: every route, the OpenAPI document at `/openapi.json`, the interactive docs at
/// `/docs` (bundled, no network needed), and the middleware around them.
pub fn router(state: AppState) -> Router {
    let (api_routes, mut document) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(routes::api())
        .split_for_parts();
    openapi::add_standard_errors(&mut document);
    let max_body = state.config.max_body_bytes;
    api_routes
        .merge(SwaggerUi::new("/docs").url("/openapi.json", document))
        .fallback(middleware::route_not_found)
        .layer(
            ServiceBuilder::new()
                .layer(axum::middleware::from_fn_with_state(
                    state.metrics.clone(),
                    middleware::observe,
                ))
                .layer(axum::middleware::from_fn_with_state(
                    state.audit.clone(),
                    audit::record_requests,
                ))
                .layer(axum::middleware::from_fn(middleware::face_errors_and_rates))
                .layer(axum::middleware::from_fn(
                    middleware::problem_for_bare_errors,
                ))
                .layer(CatchPanicLayer::custom(middleware::panic_to_problem))
                .layer(DefaultBodyLimit::max(max_body)),
        )
        .with_state(state)
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting connections and waits up
/// to `grace` for in-flight requests to finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Streams write many small frames: without TCP_NODELAY, Nagle's algorithm holds each one back
    // until the previous is acknowledged (up to 40 ms with delayed ACKs).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
    });
    // The peer address reaches handlers and the audit log as `ConnectInfo`.
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!("shutting down: finishing in-flight requests");
        let _ = stop_tx.send(true);
    });
    let mut stop = stop_rx;
    let deadline = async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = server => result,
        () = deadline => {
            tracing::warn!(?grace, "shutdown grace period over; dropping remaining connections");
            Ok(())
        }
    }
}
