//! FleetFlow: converge a whole stage (containers today; servers and DNS next) from one KDL file.

pub mod config;
pub mod error;
pub mod model;
pub mod plan;
