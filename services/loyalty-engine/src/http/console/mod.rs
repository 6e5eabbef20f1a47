//! The marketer console under `/console/`: server-rendered pages (maud) for the people who run
//! the programme. No script, nothing fetched from elsewhere: the stylesheet is compiled in and
//! served here, charts are SVG drawn on the server.
//!
//! - [`auth`]: login tokens, the session cookie, CSRF tokens;
//! - [`i18n`]: every word in English and Japanese, money and dates;
//! - [`snapshot`]: the overview's figures, counted in the background;
//! - pages: [`overview`], [`churn`] (queue and CSV), [`customer`] (the story and the override),
//!   [`programme`] (table and what-if), [`search`];
//! - [`points`]: the points sections of the customer and programme pages.

pub mod auth;
mod churn;
mod customer;
pub mod i18n;
mod overview;
pub mod page;
mod points;
mod programme;
mod search;
pub mod snapshot;
mod svg;
mod whatif;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};

pub use page::ConsoleState;
pub use snapshot::Snapshots;

const CSS: &str = include_str!("static/console.css");
const FAVICON: &str = include_str!("static/favicon.svg");

async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        CSS,
    )
}

async fn favicon() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        FAVICON,
    )
}

/// The console's routes.
pub fn router(state: ConsoleState) -> Router {
    Router::new()
        .route("/console", get(search::to_overview))
        .route("/console/", get(overview::overview))
        .route(
            "/console/login",
            get(search::login_page).post(search::login),
        )
        .route("/console/logout", post(search::logout))
        .route("/console/lang/{code}", get(search::language))
        .route("/console/search", get(search::search))
        .route("/console/churn", get(churn::queue))
        .route("/console/churn.csv", get(churn::csv))
        .route("/console/customers/{id}", get(customer::show))
        .route("/console/customers/{id}/override", post(customer::set))
        .route("/console/programme", get(programme::show))
        .route("/console/programme/what-if", post(programme::start))
        .route("/console/static/console.css", get(css))
        .route("/console/static/favicon.svg", get(favicon))
        .with_state(state)
}
