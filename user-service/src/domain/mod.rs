//! Parse-don't-validate types: once a value of these types exists, it is valid.
mod email;
mod password;
mod role;
mod username;

pub use email::Email;
pub use password::Password;
pub use role::Role;
pub use username::Username;
