//! DlinkWM plugins as HTTP services.
//!
//! [`Server::from_directory`] loads every `.wasm` file of a folder for async calls, follows the
//! folder (a new file adds a plugin, a replaced file hot-swaps it with calls in flight finishing
//! on the old version, a removed file stops new calls, a bad file leaves the old version serving
//! and is reported), and [`Server::router`] is an axum [`Router`](axum::Router) over it that an
//! application can mount in its own axum app. [`serve`] runs it with graceful shutdown; the
//! `dlinkwm serve` command is a thin layer over both.
//!
//! Routes (see `docs/serve.md`):
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/plugins/{plugin}/{entry}` | call an entry; `Content-Type` picks the format (`application/json`, `application/postcard`, else raw) and the answer comes back in it |
//! | `GET /v1/plugins`, `GET /v1/plugins/{plugin}` | name, kind, version, content hash, entries, live instances, memory, last refusal |
//! | `POST /v1/plugins/{plugin}/rollback`, `.../reload` | admin, with `Authorization: Bearer <token>`; off without a token |
//! | `GET /healthz`, `/readyz`, `/metrics` | process up; every plugin of the folder at start loaded; Prometheus text |

#![deny(missing_docs)]

mod metrics;
mod routes;
mod server;
mod status;

pub use metrics::Metrics;
pub use server::{ServeError, ServeOptions, Server, serve};
pub use status::status_of;
