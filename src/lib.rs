//! FleetFlow: converge a whole stage from one KDL file. Local stages run on this machine's
//! Docker engine; the layers below are shaped so servers and DNS slot in beside containers.

pub mod build;
pub mod cli;
pub mod compose_import;
pub mod compose_limits;
pub mod compose_merge;
pub mod config;
pub mod diagnostic;
pub mod dns;
pub mod engine;
pub mod error;
pub mod error_output;
pub mod holder;
pub mod infra;
pub mod local_lock;
pub mod mcp;
pub mod mcp_shape;
pub mod mcp_wire;
pub mod model;
pub mod ops;
pub mod plan;
pub mod proxy;
pub mod report;
pub mod runtime_dir;
pub mod secrets;
#[cfg(test)]
mod shape_tests;
pub mod signal;
pub mod ssh;
pub mod stage;
pub mod transfer;
pub mod ui;
