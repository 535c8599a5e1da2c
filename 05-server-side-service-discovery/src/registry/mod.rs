//! registry: the phone book of the system, a stand-in for a Consul agent.
//!
//! Services register themselves (name, address, port) with a health check,
//! keep that check passing while they live, and deregister when they stop;
//! clients ask the registry for the passing instances of a service instead
//! of knowing addresses. How a service does that is the lesson, in
//! `discovery.rs`; this folder is the other side, which a learner may skip.
//!
//! It speaks the part of Consul's HTTP API that the workshop's services
//! use, on Consul's port, so that a real Consul agent can stand in for it,
//! and Consul's clients can register and look up with it: the workshop
//! needs nothing installed but Rust, and what works against this registry
//! works against Consul. Its state is in memory: a restarted registry
//! starts empty, and the services register again by themselves. What a
//! real registry has and this one leaves out is in step 04's README.
//!
//! One job per file, in reading order:
//! - this file: the server, its options and its routes;
//! - `state.rs`: the catalog of instances and checks, and the clock that
//!   turns a silent instance critical and then removes it;
//! - `api.rs`: Consul's endpoints, as its clients call them;
//! - `registration.rs`: what a registration may say, within bounds;
//! - `acl.rs`: who may write;
//! - `dashboard.rs`: the page a class watches.

mod acl;
mod api;
mod dashboard;
mod registration;
mod state;

use std::io;
use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::web;

use acl::{AclToken, get, put};
use state::Registry;

pub use acl::choose_acl_token;
pub use registration::is_service_name;

pub const NAME: &str = "registry";

/// The registry's options; each can also be set in the environment.
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Port to listen on (8500 is Consul's: a real Consul agent can stand in)
    #[arg(long, env = "REGISTRY_PORT", default_value_t = 8500)]
    pub port: u16,

    /// The token every write (register, deregister, check report) must carry
    /// as "X-Consul-Token: <token>". Needed when listening on an address
    /// other machines can reach; on 127.0.0.1 writes need no token
    #[arg(long, env = "REGISTRY_ACL_TOKEN", hide_env_values = true)]
    pub acl_token: Option<String>,
}

/// The registry without an ACL token: on a loopback address only.
pub fn server(listener: TcpListener) -> io::Result<Server> {
    server_with_acl_token(listener, None)
}

/// The registry; with `acl_token`, only clients that send it can write.
pub fn server_with_acl_token(
    listener: TcpListener,
    acl_token: Option<String>,
) -> io::Result<Server> {
    let acl_token = web::Data::new(AclToken(choose_acl_token(&listener, acl_token)?));
    let registry = web::Data::new(Registry::new());
    actix_web::rt::spawn(state::keep_sweeping(registry.clone().into_inner()));
    crate::serve(listener, move |routes| {
        routes
            .app_data(registry.clone())
            .app_data(acl_token.clone())
            .service(get("/", dashboard::page))
            .service(get("/dashboard/instances", dashboard::instances))
            .service(put("/v1/agent/service/register", api::register))
            .service(put("/v1/agent/service/deregister/{id}", api::deregister))
            .service(put("/v1/agent/check/{status}/{check_id}", api::set_check))
            .service(get("/v1/health/service/{name}", api::health))
            .service(get("/v1/catalog/services", api::catalog_services))
            .default_service(web::to(api::no_such_endpoint));
    })
}
