//! Named emotion classes and the `--exclude` / `--merge` remapping of them.
//!
//! Labels are small integers; names travel with them (in a [`ClassSet`]) through the data,
//! the batcher and every saved model, so a label never loses its meaning.

use serde::{Deserialize, Serialize};

use crate::DataError;

/// FER2013's seven emotions, in label order (0 Angry … 6 Neutral).
pub const FER2013_CLASSES: [&str; 7] = [
    "angry", "disgust", "fear", "happy", "sad", "surprise", "neutral",
];

/// Ordered class names: index `i` is label `i`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassSet {
    names: Vec<String>,
}

impl ClassSet {
    pub fn new<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Self {
        Self {
            names: names.into_iter().map(Into::into).collect(),
        }
    }

    pub fn fer2013() -> Self {
        Self::new(FER2013_CLASSES)
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn name(&self, label: usize) -> &str {
        &self.names[label]
    }

    /// The label of `name`, ignoring case and accepting FER+'s spellings (anger, happiness, sadness).
    pub fn index_of(&self, name: &str) -> Result<usize, DataError> {
        let wanted = canonical(name);
        self.names
            .iter()
            .position(|n| canonical(n) == wanted)
            .ok_or_else(|| DataError::UnknownClass {
                name: name.to_string(),
                known: self.names.join(", "),
            })
    }

    /// "Angry" for "angry": how class names appear in tables and pictures.
    pub fn display_name(&self, label: usize) -> String {
        let mut chars = self.names[label].chars();
        match chars.next() {
            Some(first) => first.to_uppercase().chain(chars).collect(),
            None => String::new(),
        }
    }
}

fn canonical(name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    match lower.as_str() {
        "anger" => "angry".into(),
        "happiness" => "happy".into(),
        "sadness" => "sad".into(),
        "surprised" => "surprise".into(),
        "fearful" => "fear".into(),
        "disgusted" => "disgust".into(),
        _ => lower,
    }
}

/// A remapping of a source class set: some classes dropped, some folded into others,
/// the rest renumbered in their original order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassMap {
    source: ClassSet,
    target: ClassSet,
    map: Vec<Option<u8>>,
}

impl ClassMap {
    pub fn identity(source: &ClassSet) -> Self {
        Self {
            source: source.clone(),
            target: source.clone(),
            map: (0..source.len()).map(|i| Some(i as u8)).collect(),
        }
    }

    /// Builds the map from `--exclude a,b` names and `--merge from=into` pairs.
    pub fn new(source: &ClassSet, exclude: &[String], merge: &[String]) -> Result<Self, DataError> {
        // into[i] = the source class that i's images end up in (itself unless merged).
        let mut into: Vec<usize> = (0..source.len()).collect();
        for spec in merge {
            let (from, to) = spec.split_once('=').ok_or_else(|| DataError::ClassSpec {
                spec: spec.clone(),
                problem: "expected FROM=INTO, e.g. angry=sad".into(),
            })?;
            let (from, to) = (source.index_of(from)?, source.index_of(to)?);
            if from == to {
                return Err(DataError::ClassSpec {
                    spec: spec.clone(),
                    problem: "a class cannot be merged into itself".into(),
                });
            }
            into[from] = to;
        }
        // Follow chains (a=b, b=c sends a to c); a cycle is an error.
        for start in 0..into.len() {
            let mut at = start;
            for _ in 0..=into.len() {
                if into[at] == at {
                    break;
                }
                at = into[at];
            }
            if into[at] != at {
                return Err(DataError::ClassSpec {
                    spec: merge.join(","),
                    problem: "merges form a cycle".into(),
                });
            }
            into[start] = at;
        }
        let mut excluded = vec![false; source.len()];
        for name in exclude {
            excluded[source.index_of(name)?] = true;
        }
        for (class, &target) in into.iter().enumerate() {
            if class != target && excluded[target] && !excluded[class] {
                return Err(DataError::ClassSpec {
                    spec: source.name(class).into(),
                    problem: format!("merged into {}, which is excluded", source.name(target)),
                });
            }
        }
        let kept: Vec<usize> = (0..source.len())
            .filter(|&c| into[c] == c && !excluded[c])
            .collect();
        if kept.len() < 2 {
            return Err(DataError::ClassSpec {
                spec: exclude.join(","),
                problem: format!(
                    "{} class(es) would remain; a classifier needs at least 2",
                    kept.len()
                ),
            });
        }
        let target = ClassSet::new(kept.iter().map(|&c| source.name(c).to_string()));
        let map = (0..source.len())
            .map(|c| {
                if excluded[c] {
                    None
                } else {
                    kept.iter().position(|&k| k == into[c]).map(|p| p as u8)
                }
            })
            .collect();
        Ok(Self {
            source: source.clone(),
            target,
            map,
        })
    }

    /// The map from `source` onto a model's class set `target`: classes the target lacks are
    /// excluded (after `merge`), so data relabels to exactly the model's classes, or an error says why not.
    pub fn onto(source: &ClassSet, target: &ClassSet, merge: &[String]) -> Result<Self, DataError> {
        let exclude: Vec<String> = source
            .names()
            .iter()
            .filter(|n| target.index_of(n).is_err())
            .cloned()
            .collect();
        let map = Self::new(source, &exclude, merge)?;
        if map.target() != target {
            return Err(DataError::ClassSpec {
                spec: target.names().join(","),
                problem: format!(
                    "the data's classes ({}) do not map onto these",
                    source.names().join(", ")
                ),
            });
        }
        Ok(map)
    }

    /// Splits `"angry, disgust"` into names; empty items are ignored.
    pub fn parse_list(list: &str) -> Vec<String> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    }

    pub fn source(&self) -> &ClassSet {
        &self.source
    }

    pub fn target(&self) -> &ClassSet {
        &self.target
    }

    /// The new label of a source label, or `None` if its class is excluded.
    pub fn apply(&self, label: u8) -> Option<u8> {
        self.map.get(label as usize).copied().flatten()
    }

    pub fn is_identity(&self) -> bool {
        self.source == self.target
            && self
                .map
                .iter()
                .enumerate()
                .all(|(i, m)| *m == Some(i as u8))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &str) -> Vec<String> {
        ClassMap::parse_list(list)
    }

    #[test]
    fn exclude_drops_and_renumbers() {
        let map = ClassMap::new(&ClassSet::fer2013(), &names("angry, Disgust"), &[]).unwrap();
        assert_eq!(
            map.target().names(),
            ["fear", "happy", "sad", "surprise", "neutral"]
        );
        assert_eq!(map.apply(0), None);
        assert_eq!(map.apply(1), None);
        assert_eq!(map.apply(2), Some(0));
        assert_eq!(map.apply(6), Some(4));
        assert!(!map.is_identity());
    }

    #[test]
    fn merge_folds_into_target_and_follows_chains() {
        let map =
            ClassMap::new(&ClassSet::fer2013(), &[], &names("disgust=angry,angry=sad")).unwrap();
        assert_eq!(
            map.target().names(),
            ["fear", "happy", "sad", "surprise", "neutral"]
        );
        assert_eq!(map.apply(0), Some(2));
        assert_eq!(map.apply(1), Some(2));
        assert_eq!(map.apply(4), Some(2));
        assert_eq!(map.apply(3), Some(1));
    }

    #[test]
    fn ferplus_spellings_are_accepted() {
        let set = ClassSet::fer2013();
        assert_eq!(set.index_of("Anger").unwrap(), 0);
        assert_eq!(set.index_of("happiness").unwrap(), 3);
        assert_eq!(set.display_name(6), "Neutral");
    }

    #[test]
    fn bad_specs_are_errors() {
        let set = ClassSet::fer2013();
        let err = ClassMap::new(&set, &names("angri"), &[]).unwrap_err();
        assert!(
            err.to_string().contains("unknown emotion \"angri\""),
            "{err}"
        );
        assert!(ClassMap::new(&set, &[], &names("angry")).is_err());
        assert!(ClassMap::new(&set, &[], &names("angry=angry")).is_err());
        assert!(ClassMap::new(&set, &[], &names("angry=sad,sad=angry")).is_err());
        assert!(ClassMap::new(&set, &names("sad"), &names("angry=sad")).is_err());
        let all_but_one = names("angry,disgust,fear,happy,sad,surprise");
        assert!(ClassMap::new(&set, &all_but_one, &[]).is_err());
    }

    #[test]
    fn onto_a_models_classes() {
        let five = ClassSet::new(["fear", "happy", "sad", "surprise", "neutral"]);
        let map = ClassMap::onto(&ClassSet::fer2013(), &five, &[]).unwrap();
        assert_eq!(map.target(), &five);
        assert_eq!(map.apply(0), None);
        let renamed = ClassSet::new(["happy", "fear"]);
        assert!(
            ClassMap::onto(&ClassSet::fer2013(), &renamed, &[]).is_err(),
            "order differs"
        );
    }

    #[test]
    fn identity_is_identity() {
        let map = ClassMap::new(&ClassSet::fer2013(), &[], &[]).unwrap();
        assert!(map.is_identity());
        assert_eq!(map, ClassMap::identity(&ClassSet::fer2013()));
    }
}
