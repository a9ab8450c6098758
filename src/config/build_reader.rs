//! `build "./api"` and `build { context; dockerfile; target; args { … } }` in a service.
//!
//! The context and its Dockerfile are checked here, against the file's spans, so a missing
//! one is a config error at file:line:col before anything is touched.

use super::diagnostic::ConfigError;
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
                    format!("build context {context} has no {} (the Dockerfile is relative to the context)", spec.dockerfile),
                )
                .label("no Dockerfile")
                .help("add the Dockerfile, or name it with `dockerfile \"…\"` in a build block"),
            );
            return None;
        }
        Some(spec)
    }
}
