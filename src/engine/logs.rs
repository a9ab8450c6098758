//! Logs of several containers merged into one stream, each line tagged with its service.

use super::Engine;
use crate::error::{Error, Result};
use bollard::query_parameters::LogsOptionsBuilder;
use futures_util::StreamExt;
use futures_util::stream::{BoxStream, SelectAll};

#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub follow: bool,
    /// Lines from the end of each log; None for all.
    pub tail: Option<u64>,
    /// Unix seconds.
    pub since: Option<i64>,
    pub timestamps: bool,
}

#[derive(Debug, Clone)]
pub struct LogLine {
    pub service: String,
    pub text: String,
}

/// One stream over every (service, container id) given; with `follow` it runs until all end.
/// Log lines of several containers, merged; owns its engine client.
pub type LogStream = BoxStream<'static, Result<LogLine>>;

pub fn stream_logs(engine: &Engine, containers: &[(String, String)], opts: &LogOptions) -> LogStream {
    let mut all: SelectAll<BoxStream<'static, Result<LogLine>>> = SelectAll::new();
    for (service, id) in containers {
        let mut b = LogsOptionsBuilder::new().stdout(true).stderr(true).follow(opts.follow).timestamps(opts.timestamps);
        if let Some(n) = opts.tail {
            b = b.tail(&n.to_string());
        }
        if let Some(s) = opts.since {
            b = b.since(i32::try_from(s).unwrap_or(i32::MAX));
        }
        let service = service.clone();
        let stream = engine
            .docker
            .logs(id, Some(b.build()))
            .map(move |item| {
                item.map(|out| LogLine { service: service.clone(), text: out.to_string() })
                    .map_err(|e| Error::engine(format!("logs of {service}"), e))
            })
            .boxed();
        all.push(stream);
    }
    all.boxed()
}
