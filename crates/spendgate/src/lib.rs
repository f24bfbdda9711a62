//! The `spendgate` binary's library half: configuration and wiring, shared by the command line and the
//! integration tests (which start the real server in-process and talk to it over loopback HTTP).

pub mod admin_cli;
pub mod app;
pub mod config;
pub mod connections;
pub mod demo;
pub mod demo_history;
mod idle;
pub mod pricing_cli;
