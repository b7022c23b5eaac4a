//! What a participant tells a neighbour of its routes or interest: the
//! whole list on a new stream, and after that only what changed.
//!
//! A full list per change costs every neighbour the whole list (it grows
//! with the group) each time one entry moves; while a large group forms,
//! entries move all the time. A neighbour whose Hello carried
//! [`FEATURE_CHANGES`](crate::control::FEATURE_CHANGES) is told the
//! entries that are new or different and the names that are gone; one
//! that predates it gets the whole list, as before. Both lists are kept
//! sorted by name, so the difference is one merge.

use std::cmp::Ordering;

/// What to send a neighbour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Advert<T> {
    /// The whole list, replacing what it was told before.
    Full(Vec<T>),
    /// The entries new or different since it was last told, and the
    /// names of those gone.
    Changes {
        /// New or different entries.
        set: Vec<T>,
        /// Names no longer in the list.
        removed: Vec<String>,
    },
}

impl<T> Advert<T> {
    /// The advert of `now` for a neighbour last told `told` (both sorted
    /// by `name`): the changes when it takes them and was told a list
    /// before, else the whole list.
    pub(crate) fn between(
        told: Option<&[T]>,
        now: &[T],
        takes_changes: bool,
        name: impl Fn(&T) -> &str,
    ) -> Advert<T>
    where
        T: Clone + PartialEq,
    {
        let Some(told) = told.filter(|_| takes_changes) else {
            return Advert::Full(now.to_vec());
        };
        let (mut set, mut removed) = (Vec::new(), Vec::new());
        let (mut i, mut j) = (0, 0);
        while i < told.len() || j < now.len() {
            let order = match (told.get(i), now.get(j)) {
                (Some(a), Some(b)) => name(a).cmp(name(b)),
                (Some(_), None) => Ordering::Less,
                _ => Ordering::Greater,
            };
            match order {
                Ordering::Less => {
                    removed.push(name(&told[i]).to_owned());
                    i += 1;
                }
                Ordering::Greater => {
                    set.push(now[j].clone());
                    j += 1;
                }
                Ordering::Equal => {
                    if told[i] != now[j] {
                        set.push(now[j].clone());
                    }
                    i += 1;
                    j += 1;
                }
            }
        }
        Advert::Changes { set, removed }
    }

    /// Whether it tells nothing new.
    pub(crate) fn is_empty_change(&self) -> bool {
        matches!(self, Advert::Changes { set, removed } if set.is_empty() && removed.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(e: &(String, u8)) -> &str {
        &e.0
    }

    fn list(entries: &[(&str, u8)]) -> Vec<(String, u8)> {
        entries.iter().map(|(n, h)| ((*n).to_owned(), *h)).collect()
    }

    #[test]
    fn only_what_changed_is_told_and_the_whole_list_without_a_past_or_the_feature() {
        let told = list(&[("a", 1), ("b", 2), ("d", 1)]);
        let now = list(&[("b", 3), ("c", 1), ("d", 1)]);
        assert_eq!(
            Advert::between(Some(&told), &now, true, name),
            Advert::Changes {
                set: list(&[("b", 3), ("c", 1)]),
                removed: vec!["a".to_owned()],
            }
        );
        assert_eq!(
            Advert::between(Some(&told), &now, false, name),
            Advert::Full(now.clone())
        );
        assert_eq!(
            Advert::between(None, &now, true, name),
            Advert::Full(now.clone())
        );
        assert!(Advert::between(Some(&now), &now, true, name).is_empty_change());
        let gone = Advert::between(Some(&now), &[], true, name);
        assert_eq!(
            gone,
            Advert::Changes {
                set: vec![],
                removed: vec!["b".into(), "c".into(), "d".into()],
            }
        );
    }
}
