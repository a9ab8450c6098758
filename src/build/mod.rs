//! Image builds on this machine's engine through the Engine API, and release versions.
//!
//! A built service's image is `{repository}:{version}`, where the version is the content hash of
//! its build input (`context::version`). The image carries labels naming the project, service and
//! release, so a server's releases can be listed (and pruned) without any state file.

pub mod context;
pub mod ignore;

use crate::engine::{Engine, is_not_found};
use crate::error::{Error, Result};
use crate::model::{BuildSpec, Service};
use bollard::query_parameters::BuildImageOptions;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;

/// Image and container label: the release version a container or image is.
pub const RELEASE_LABEL: &str = "fleetflow.release";
/// Image labels naming whose release it is.
pub const PROJECT_LABEL: &str = "fleetflow.project";
pub const SERVICE_LABEL: &str = "fleetflow.service";

/// One service to build: what, as which image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildJob {
    pub service: String,
    pub spec: BuildSpec,
    pub version: String,
    /// `{repository}:{version}`.
    pub image: String,
}

/// What a build tells the UI while it runs.
#[derive(Debug, Clone)]
pub enum BuildEvent {
    /// The image of this version is already on this machine: no build.
    Present {
        service: String,
        image: String,
    },
    Started {
        service: String,
        image: String,
    },
    /// A new step began (`Step 2/5 : COPY . /app`).
    Step {
        service: String,
        step: String,
    },
    /// One line of the builder's output (shown with `-v`).
    Output {
        service: String,
        line: String,
    },
    Built {
        service: String,
        image: String,
        secs: f64,
    },
}

pub type BuildEvents = Arc<dyn Fn(BuildEvent) + Send + Sync>;

/// The repository a built image goes to: `image` beside `build` (its tag dropped), else
/// `{project}-{service}`.
pub fn repository(project: &str, service: &Service, build: &BuildSpec) -> String {
    match &build.repository {
        Some(image) => strip_tag(image).to_string(),
        None => format!("{project}-{}", service.name),
    }
}

/// `reg:5000/a/b:1` → `reg:5000/a/b` (a colon before the last `/` is a registry port).
fn strip_tag(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => &image[..i],
        _ => image,
    }
}

/// The build job of a service with `build`: its version hashed from the context now.
pub fn job(project: &str, service: &Service) -> Result<Option<BuildJob>> {
    let Some(spec) = &service.build else { return Ok(None) };
    let entries = context::entries(spec)?;
    let version = context::version(spec, &entries)?;
    let image = format!("{}:{version}", repository(project, service, spec));
    Ok(Some(BuildJob { service: service.name.clone(), spec: spec.clone(), version, image }))
}

/// Whether the engine already has this release's image.
pub async fn present(engine: &Engine, image: &str) -> Result<bool> {
    match engine.docker.inspect_image(image).await {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(Error::engine(format!("image {image}"), e)),
    }
}

/// Builds one release on `engine` (classic builder: Engine 20.10 without buildx works).
/// A failure names the service and the step, with that step's whole output.
pub async fn build(engine: &Engine, project: &str, job: &BuildJob, no_cache: bool, events: &BuildEvents) -> Result<()> {
    let started = std::time::Instant::now();
    events(BuildEvent::Started { service: job.service.clone(), image: job.image.clone() });
    let entries = context::entries(&job.spec)?;
    let body = context::tar(&job.spec, &entries)?;
    let labels = HashMap::from([
        (PROJECT_LABEL.to_string(), project.to_string()),
        (SERVICE_LABEL.to_string(), job.service.clone()),
        (RELEASE_LABEL.to_string(), job.version.clone()),
    ]);
    let opts = BuildImageOptions {
        dockerfile: job.spec.dockerfile.clone(),
        t: Some(job.image.clone()),
        target: job.spec.target.clone().unwrap_or_default(),
        buildargs: Some(job.spec.args.clone().into_iter().collect()),
        labels: Some(labels),
        nocache: no_cache,
        rm: true,
        forcerm: true,
        ..Default::default()
    };
    let mut stream = engine.docker.build_image(opts, None, Some(bollard::body_full(body.into())));
    let mut step = String::from("(before the first step)");
    let mut step_output: Vec<String> = Vec::new();
    while let Some(item) = stream.next().await {
        let info = match item {
            Ok(info) => info,
            Err(e) => return Err(failed_step(job, &step, &step_output, &e.to_string())),
        };
        if let Some(detail) = info.error_detail.and_then(|d| d.message) {
            return Err(failed_step(job, &step, &step_output, &detail));
        }
        for line in info.stream.as_deref().unwrap_or("").lines().filter(|l| !l.trim().is_empty()) {
            if line.starts_with("Step ") {
                step = line.to_string();
                step_output.clear();
                events(BuildEvent::Step { service: job.service.clone(), step: step.clone() });
            } else {
                step_output.push(line.to_string());
            }
            events(BuildEvent::Output { service: job.service.clone(), line: line.to_string() });
        }
    }
    if !present(engine, &job.image).await? {
        return Err(failed_step(job, &step, &step_output, "the engine ended the build without an image"));
    }
    events(BuildEvent::Built {
        service: job.service.clone(),
        image: job.image.clone(),
        secs: started.elapsed().as_secs_f64(),
    });
    Ok(())
}

fn failed_step(job: &BuildJob, step: &str, output: &[String], error: &str) -> Error {
    let shown: String = output.iter().map(|l| format!("\n  | {l}")).collect();
    Error::failed_help(
        format!("service {}: build failed at {step}: {}{shown}", job.service, error.trim()),
        format!(
            "fix the build in {} (nothing was changed on any server); `fleet build <stage> {} -v` shows every line",
            job.spec.context.display(),
            job.service
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_comes_from_image_or_project_and_service() {
        let build = BuildSpec::default();
        let svc = Service { name: "api".into(), ..Service::default() };
        assert_eq!(repository("shop", &svc, &build), "shop-api");
        let named = BuildSpec { repository: Some("reg:5000/shop/api:latest".into()), ..BuildSpec::default() };
        assert_eq!(repository("shop", &svc, &named), "reg:5000/shop/api");
        let untagged = BuildSpec { repository: Some("reg:5000/api".into()), ..BuildSpec::default() };
        assert_eq!(repository("shop", &svc, &untagged), "reg:5000/api");
    }
}
