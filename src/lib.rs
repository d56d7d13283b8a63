//! teal: a label-driven HAProxy sidecar for zero-downtime Docker deploys.
//!
//! # Layout
//!
//! One task owns each step of the flow; they talk over channels:
//!
//! ```text
//!  dockerd ──list+events──▶ docker ──ContainerUpdate──▶ model owner ──Snapshot (watch)──▶ slots,
//!                                                                                  drained │ routed
//!  --template, --certs ──watch────────────────────────────────────────────────▶ reconcile driver
//!                                                        decide: Unchanged | Runtime | Reload │
//!                                                                                          ▼
//!                                                     apply (executor) ──▶ haproxy.cfg + reload /
//!                                                                          runtime API ──▶ status
//! ```
//!
//! - [`docker`]: connects (API version negotiated), lists, follows events from
//!   the listing time, reconnects with backoff. The one user of the Docker
//!   API client ([`docker::Client`]); converts its types into
//!   [`model::ContainerFacts`] at the edge. On a Swarm manager,
//!   [`docker::swarm`] reports the running tasks of labelled services the
//!   same way.
//! - [`model`]: labels validated into trusted types; the inventory of
//!   containers turned into a [`model::Snapshot`] of services and servers.
//!   Plain data, no I/O.
//! - [`model_owner`]: the task that owns the inventory and publishes snapshots.
//! - [`state_file`]: the operator's choices in `--state-dir`, routed onto
//!   the snapshot between the model and render/apply/status: [`slots`],
//!   blue/green, the live slot of each service (`slots.json`), and
//!   [`drained`], containers out of rotation on purpose (`drained.json`),
//!   and [`weights`], the new containers' share during a canary
//!   (`weights.json`).
//! - [`render`]: snapshot -> template context -> haproxy.cfg text. Pure.
//! - [`reconcile`]: what was last applied, and the pure decision of what to
//!   do next (nothing, runtime API commands, or a reload); its driver is the
//!   loop with the spacing of reloads, template and certificate edits.
//! - [`apply`]: the executor: runtime API commands, atomic write, `haproxy
//!   -c`, reloads, and the supervised HAProxy master.
//! - [`status`]: `/healthz`, `/status`, `/metrics` and `teal status`.
//! - [`isolate`]: when HAProxy refuses a config, the services responsible.
//! - [`tls`]: the `--certs` directory: each file checked, and the files with
//!   their digests for the template context.
//! - [`acme`]: automatic HTTPS: certificates from an ACME server for the
//!   `teal.tls=acme` names, renewed, and loaded through the runtime API.
//! - `backoff`: the one retry backoff, for Docker reconnects and HAProxy
//!   restarts.
//! - [`watch`]: one debounced file watch for `--template`, `--certs` and
//!   the state files; [`signal`]: SIGTERM and SIGINT.
//! - [`rollout`], [`switch`], [`drain`]: `teal rollout`, `teal switch` and
//!   `teal drain`, clients of Docker and of a running daemon's `/status`;
//!   [`deploy`]: the report of what a rollout or switch cost, from
//!   HAProxy's per-server counters, kept for `/status`.
//! - [`app`]: wires the tasks together for `teal run`; [`oneshot`]: `teal
//!   render`, `check` and `status`.
//! - [`cli`] -> [`settings`]: the flags of each subcommand, validated into
//!   its config before anything starts; [`duration`]: how durations are written.

pub mod acme;
pub mod app;
pub mod apply;
pub(crate) mod backoff;
pub mod cli;
pub mod controls;
pub mod deploy;
pub mod docker;
pub mod drain;
pub mod drained;
pub mod duration;
pub mod isolate;
pub mod model;
pub mod model_owner;
pub mod oneshot;
pub mod reconcile;
pub mod render;
pub mod rollout;
pub mod settings;
pub mod signal;
pub mod slots;
pub mod state_file;
pub mod status;
pub mod switch;
pub mod tls;
pub mod watch;
pub mod weights;
