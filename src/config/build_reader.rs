//! `build "./api"` and `build { context; dockerfile; target; args { … } }` in a service.
//!
//! The context and its Dockerfile are checked here, against the file's spans, so a missing
//! one is a config error at file:line:col before anything is touched.

use super::ConfigError;
use super::reader::{Reader, children, normalize, unknown_node};
use crate::model::BuildSpec;
use kdl::KdlNode;
use miette::SourceSpan;

const BUILD_NODES: &[&str] = &["context", "dockerfile", "target", "args"];
const DEFAULT_DOCKERFILE: &str = "Dockerfile";

impl Reader<'_> {
    /// The build spec, or `None` after recording what is wrong with it.
    pub(super) fn build_spec(&mut self, node: &KdlNode) -> Option<BuildSpec> {
        self.check_props(node, &[]);
        let args = self.args(node);
        let mut spec = BuildSpec { dockerfile: DEFAULT_DOCKERFILE.into(), ..BuildSpec::default() };
        let mut context: Option<(String, SourceSpan)> = None;
        let mut dockerfile_at = node.span();
        match (args.as_slice(), node.children()) {
            ([entry], None) => context = self.string(entry).map(|c| (c, entry.span())),
            ([], Some(_)) => {
                for child in children(node) {
                    match child.name().value() {
                        "context" => context = self.one_string(child).map(|c| (c, child.span())),
                        "dockerfile" => {
                            if let Some(d) = self.one_string(child) {
                                spec.dockerfile = d;
                                dockerfile_at = child.span();
                            }
                        }
                        "target" => spec.target = self.one_string(child),
                        "args" => spec.args = self.key_values(child, true).into_iter().collect(),
                        _ => self.push(unknown_node(self.src, child, "in `build`", BUILD_NODES)),
                    }
                }
            }
            _ => {
                self.push(
                    ConfigError::new(self.src, node.span(), "`build` takes a context directory or a block")
                        .help("write build \"./api\", or build { context \"./api\"; dockerfile \"Dockerfile\" }"),
                );
                return None;
            }
        }
        let Some((context, context_at)) = context else {
            self.error(node.span(), "`build` needs a `context` directory");
            return None;
        };
        spec.context = normalize(&self.dir.join(&context));
        if !spec.context.is_dir() {
            self.push(
                ConfigError::new(self.src, context_at, format!("build context {} is not a directory", context))
                    .label("no such directory")
                    .help(format!("looked for {}", spec.context.display())),
            );
            return None;
        }
        if !spec.context.join(&spec.dockerfile).is_file() {
            self.push(
                ConfigError::new(
                    self.src,
                    dockerfile_at,
                    format!(
                        "build context {context} has no {} (the Dockerfile is relative to the context)",
                        spec.dockerfile
                    ),
                )
                .label("no Dockerfile")
                .help("add the Dockerfile, or name it with `dockerfile \"…\"` in a build block"),
            );
            return None;
        }
        Some(spec)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::error::Error;

    fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (rel, text) in files {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        dir
    }

    fn stage(dir: &std::path::Path, kdl: &str) -> crate::error::Result<crate::model::StageSpec> {
        Config::from_text(&dir.join("fleet.kdl"), kdl.to_string())?.stage("local")
    }

    fn only_error(r: crate::error::Result<crate::model::StageSpec>) -> (String, String) {
        match r {
            Err(Error::Config(errs)) => {
                assert_eq!(errs.errors.len(), 1);
                (errs.errors[0].message.clone(), errs.errors[0].location())
            }
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn short_and_block_forms_read_with_image_as_repository() {
        let dir = project(&[("api/Dockerfile", "FROM scratch\n"), ("web/Dockerfile.prod", "FROM scratch\n")]);
        let spec = stage(
            dir.path(),
            r#"
service "api" { build "./api" }
service "web" {
    image "shop/web"
    build { context "web"; dockerfile "Dockerfile.prod"; target "runtime"; args { VERSION "${V:-dev}" } }
}
stage "local" { service "api" "web" }
"#,
        )
        .unwrap();
        let api = spec.services[0].build.as_ref().unwrap();
        assert_eq!(api.context, dir.path().join("api"));
        assert_eq!((api.dockerfile.as_str(), api.repository.as_ref()), ("Dockerfile", None));
        let web = spec.services[1].build.as_ref().unwrap();
        assert_eq!(web.dockerfile, "Dockerfile.prod");
        assert_eq!(web.target.as_deref(), Some("runtime"));
        assert_eq!(web.args["VERSION"], "dev");
        assert_eq!(web.repository.as_deref(), Some("shop/web"));
    }

    #[test]
    fn missing_context_or_dockerfile_is_a_config_error_at_its_place() {
        let dir = project(&[("api/Dockerfile", "FROM scratch\n"), ("empty/.keep", "")]);
        let (msg, loc) =
            only_error(stage(dir.path(), "service \"api\" { build \"./nope\" }\nstage \"local\" { service \"api\" }"));
        assert!(msg.contains("build context ./nope is not a directory"), "{msg}");
        assert!(loc.ends_with("fleet.kdl:1:23"), "{loc}");
        let (msg, loc) = only_error(stage(
            dir.path(),
            "service \"api\" {\n    build {\n        context \"empty\"\n    }\n}\nstage \"local\" { service \"api\" }",
        ));
        assert!(msg.contains("has no Dockerfile"), "{msg}");
        assert!(loc.ends_with("fleet.kdl:2:5"), "{loc}");
        let (msg, _) = only_error(stage(
            dir.path(),
            "service \"api\" { build { context \"api\"; dockerfile \"Nope\" } }\nstage \"local\" { service \"api\" }",
        ));
        assert!(msg.contains("has no Nope"), "{msg}");
    }
}
