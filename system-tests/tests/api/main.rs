//! The system-tests integration tests, one binary (one link, one process): a module per route group or
//! behaviour, and `support` for what they share.

mod edge;
mod faults;
mod grpcurl;
mod hostile_input;
mod journey;
mod metrics;
mod openapi;
mod orders;
mod payments;
mod postman;
mod products;
mod readme;
mod swagger_ui;
mod users;
