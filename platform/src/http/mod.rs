//! HTTP plumbing shared by the services.

#[cfg(all(feature = "auth", feature = "errors"))]
pub mod bearer;
#[cfg(feature = "errors")]
pub mod error;
#[cfg(feature = "errors")]
pub mod extract;
#[cfg(feature = "observe")]
pub mod observe;
#[cfg(feature = "proxies")]
pub mod proxies;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "testing")]
pub mod testing;
