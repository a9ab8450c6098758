//! YAML merge keys (`<<`) for `fleet import compose`, applied at every depth as compose does:
//! a merge source that itself merges (`x-base: &base { <<: [*restart, *pull] }`) is resolved
//! before its keys are merged, so a service merging `*base` gets what `*restart` carried.
//! Keys already in a mapping win over merged ones, and earlier merge sources over later ones.

use serde_yaml_ng::Value;

/// Deeper than this is not a compose file (and would recurse without end).
const MAX_DEPTH: usize = 128;

#[derive(Debug, PartialEq, Eq)]
pub enum MergeError {
    /// `<<: 1`, or a list holding something other than mappings.
    NotAMapping,
    TooDeep,
}

impl std::fmt::Display for MergeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotAMapping => f.write_str("`<<` takes a mapping or a list of mappings"),
            Self::TooDeep => write!(f, "merges nest more than {MAX_DEPTH} levels deep"),
        }
    }
}

/// Applies every merge in `value`, innermost sources first.
pub fn apply(value: &mut Value) -> Result<(), MergeError> {
    apply_at(value, 0)
}

fn apply_at(value: &mut Value, depth: usize) -> Result<(), MergeError> {
    if depth > MAX_DEPTH {
        return Err(MergeError::TooDeep);
    }
    match value {
        Value::Mapping(mapping) => {
            if let Some(merge) = mapping.remove("<<") {
                let sources = match merge {
                    Value::Mapping(m) => vec![Value::Mapping(m)],
                    Value::Sequence(items) => items,
                    Value::Tagged(t) => vec![t.value],
                    _ => return Err(MergeError::NotAMapping),
                };
                for mut source in sources {
                    apply_at(&mut source, depth + 1)?;
                    let Value::Mapping(source) = source else { return Err(MergeError::NotAMapping) };
                    for (k, v) in source {
                        mapping.entry(k).or_insert(v);
                    }
                }
            }
            mapping.values_mut().try_for_each(|v| apply_at(v, depth + 1))
        }
        Value::Sequence(items) => items.iter_mut().try_for_each(|v| apply_at(v, depth + 1)),
        Value::Tagged(t) => apply_at(&mut t.value, depth + 1),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merged(yaml: &str) -> Value {
        let mut v: Value = serde_yaml_ng::from_str(yaml).unwrap();
        apply(&mut v).unwrap();
        v
    }

    #[test]
    fn a_merge_inside_an_anchor_reaches_every_service() {
        let v = merged(
            "x-restart: &restart { restart: always }\nx-pull: &pull { pull_policy: missing, restart: 'no' }\n\
             x-base: &base { <<: [*restart, *pull], labels: { a: b } }\n\
             services:\n  web: { <<: *base, image: x }\n  db: { <<: *base, image: y, restart: unless-stopped }\n",
        );
        let web = &v["services"]["web"];
        assert_eq!(web["restart"], Value::from("always"), "the first source wins: {web:?}");
        assert_eq!(web["pull_policy"], Value::from("missing"));
        assert_eq!(web["labels"]["a"], Value::from("b"));
        assert!(web.get("<<").is_none(), "no merge key is left: {web:?}");
        assert_eq!(v["services"]["db"]["restart"], Value::from("unless-stopped"), "the service's own key wins");
    }

    #[test]
    fn bad_merges_are_errors() {
        let mut v: Value = serde_yaml_ng::from_str("a: { <<: 1 }").unwrap();
        assert_eq!(apply(&mut v), Err(MergeError::NotAMapping));
        let mut deep = Value::Null;
        for _ in 0..200 {
            let mut m = serde_yaml_ng::Mapping::new();
            m.insert("<<".into(), deep);
            deep = Value::Mapping(m);
        }
        assert_eq!(apply(&mut deep), Err(MergeError::TooDeep));
    }
}
