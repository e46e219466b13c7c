//! Free-text search over the catalog: which items' search texts contain every word of a query.
//!
//! Scanning every entity's text for every word costs ~100 µs per query in a 5,000-entity home —
//! more than rendering and sending the answer — and most of it is memory traffic over texts that
//! cannot match. The index maps each byte bigram and trigram of the texts to the items containing
//! it, as [`RoaringBitmap`]s (dense sets cost a bit per item, sparse ones two bytes per member, and
//! intersections run a machine word at a time). A query intersects the sets of its words' trigrams
//! (the bigram of a two-byte word; a one-byte word does not narrow), then confirms the candidates
//! with `str::contains`, since having a word's n-grams does not mean having the word. The result
//! is exact: the same items a scan finds.
//!
//! An index belongs to one immutable catalog snapshot and is built on the first search of that
//! snapshot (a few ms for 5,000 entities), so snapshots nobody searches cost nothing.

use std::collections::HashMap;

use roaring::RoaringBitmap;

/// Bigrams and trigrams of a snapshot's search texts, with the items holding each.
#[derive(Debug, Default)]
pub(crate) struct SearchIndex {
    grams: HashMap<u32, RoaringBitmap>,
    items: u32,
}

/// Items matching a query, for constant-time membership tests while walking a sort order.
#[derive(Debug)]
pub(crate) struct Matches {
    bits: Vec<u64>,
}

impl Matches {
    /// Whether item `i` matches.
    pub(crate) fn contains(&self, i: usize) -> bool {
        self.bits
            .get(i / 64)
            .is_some_and(|word| word & (1 << (i % 64)) != 0)
    }

    fn insert(&mut self, i: usize) {
        if let Some(word) = self.bits.get_mut(i / 64) {
            *word |= 1 << (i % 64);
        }
    }
}

/// A two- or three-byte window as a key (its length in the top byte keeps bigrams apart from
/// trigrams ending in a zero byte).
fn gram(window: &[u8]) -> u32 {
    window
        .iter()
        .enumerate()
        .fold((window.len() as u32) << 24, |key, (k, &b)| {
            key | u32::from(b) << (8 * k)
        })
}

impl SearchIndex {
    /// Indexes `texts` (already lowercased); item `i` is the `i`-th text.
    pub(crate) fn build<'a>(texts: impl IntoIterator<Item = &'a str>) -> Self {
        let mut grams: HashMap<u32, RoaringBitmap> = HashMap::new();
        let mut items = 0u32;
        for (i, text) in texts.into_iter().enumerate() {
            let i = i as u32;
            let bytes = text.as_bytes();
            for window in bytes.windows(2).chain(bytes.windows(3)) {
                // items arrive in increasing order: `try_push` appends, and refuses a repeat
                grams.entry(gram(window)).or_default().try_push(i).ok();
            }
            items = i + 1;
        }
        SearchIndex { grams, items }
    }

    /// Items whose text (`text(i)`: the texts indexed) contains every word of `words`
    /// (lowercased); `None` when there are no words (everything matches).
    pub(crate) fn matching<'t>(
        &self,
        words: &[String],
        text: impl Fn(usize) -> &'t str,
    ) -> Option<Matches> {
        if words.is_empty() {
            return None;
        }
        let mut found = Matches {
            bits: vec![0; (self.items as usize).div_ceil(64)],
        };
        let confirmed = |i: usize| {
            let t = text(i);
            words.iter().all(|w| t.contains(w.as_str()))
        };
        match self.candidates(words) {
            Some(candidates) => {
                for i in candidates {
                    if confirmed(i as usize) {
                        found.insert(i as usize);
                    }
                }
            }
            None => {
                for i in 0..self.items as usize {
                    if confirmed(i) {
                        found.insert(i);
                    }
                }
            }
        }
        Some(found)
    }

    /// Items holding every n-gram of every word; `None` when no word narrows the search.
    fn candidates(&self, words: &[String]) -> Option<RoaringBitmap> {
        let mut candidates: Option<RoaringBitmap> = None;
        for word in words {
            let bytes = word.as_bytes();
            let n = if bytes.len() >= 3 { 3 } else { bytes.len() };
            if n < 2 {
                continue;
            }
            for window in bytes.windows(n) {
                let Some(items) = self.grams.get(&gram(window)) else {
                    return Some(RoaringBitmap::new());
                };
                match candidates.as_mut() {
                    Some(c) => *c &= items,
                    None => candidates = Some(items.clone()),
                }
            }
        }
        candidates
    }

    /// Bytes the index holds (approximate), for sizing.
    #[cfg(test)]
    fn heap_bytes(&self) -> usize {
        self.grams.values().map(|b| b.serialized_size() + 16).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(texts: &[String], words: &[String]) -> Vec<usize> {
        (0..texts.len())
            .filter(|&i| words.iter().all(|w| texts[i].contains(w.as_str())))
            .collect()
    }

    fn found(index: &SearchIndex, texts: &[String], words: &[String]) -> Vec<usize> {
        let m = index.matching(words, |i| &texts[i]).expect("words given");
        (0..texts.len()).filter(|&i| m.contains(i)).collect()
    }

    fn words(q: &str) -> Vec<String> {
        q.split_whitespace().map(str::to_lowercase).collect()
    }

    #[test]
    fn finds_exactly_what_a_scan_finds() {
        let texts: Vec<String> = [
            "light.kitchen\u{1f}kitchen light",
            "sensor.bench_42_power\u{1f}bench 42 power",
            "sensor.bench_142\u{1f}bench 142",
            "switch.x\u{1f}x",
            "lock.front_door\u{1f}front door lock\u{1f}vördertür",
            "",
        ]
        .map(String::from)
        .to_vec();
        let index = SearchIndex::build(texts.iter().map(String::as_str));
        for q in [
            "bench 42",
            "42",
            "4",
            "kitchen",
            "KITCHEN light",
            "light kitchen",
            "x",
            "door tür",
            "ür",
            "ö",
            "nope",
            "bench 4242",
            "ench",
            "h_4",
            "\u{1f}",
        ] {
            assert_eq!(
                found(&index, &texts, &words(q)),
                scan(&texts, &words(q)),
                "query {q:?}"
            );
        }
        // n-grams present but not adjacent: "kitchen" has "kit" and "hen", "kithen" does not match
        assert!(found(&index, &texts, &words("kithen")).is_empty());
        assert!(index.matching(&[], |i| &texts[i]).is_none());
    }

    proptest::proptest! {
        /// Any texts and queries over a small alphabet (so n-grams collide often, multi-byte
        /// characters included): the index finds exactly what a scan finds.
        #[test]
        fn random_texts_and_queries_agree_with_a_scan(
            texts in proptest::collection::vec("[abc12_é]{0,12}", 0..80),
            q in "[abc12_é ]{0,9}",
        ) {
            let index = SearchIndex::build(texts.iter().map(String::as_str));
            let words = words(&q);
            if words.is_empty() {
                proptest::prop_assert!(index.matching(&words, |i| &texts[i]).is_none());
            } else {
                proptest::prop_assert_eq!(found(&index, &texts, &words), scan(&texts, &words));
            }
        }
    }

    #[test]
    fn an_index_of_five_thousand_entities_stays_small() {
        let texts: Vec<String> = (0..5000)
            .map(|i| {
                format!(
                    "sensor.bench_{i}_power\u{1f}bench {i} power\u{1f}living room plug {i} power"
                )
            })
            .collect();
        let index = SearchIndex::build(texts.iter().map(String::as_str));
        assert!(
            index.heap_bytes() < 2_000_000,
            "{} bytes",
            index.heap_bytes()
        );
        assert_eq!(found(&index, &texts, &words("bench 4242")), vec![4242]);
    }
}
