//! Text analysis for search: words, their normal form, weights and snippets.
//!
//! A word is a Unicode word (UAX #29 boundaries). Its term is the word in compatibility
//! decomposition with combining marks dropped ("Café" and "CAFE" agree), lower-cased, then
//! reduced by the Snowball English stemmer: "running", "runs" and "run" share the term `run`;
//! irregular forms do not ("ran" stays `ran`). Terms are never stored: the index holds keyed
//! tokens of them ([`messaging_platform::crypto::SearchKey`]).

use std::collections::{BTreeMap, HashSet};
use std::sync::LazyLock;

use rust_stemmers::{Algorithm, Stemmer};
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;
use unicode_segmentation::UnicodeSegmentation;

static ENGLISH: LazyLock<Stemmer> = LazyLock::new(|| Stemmer::create(Algorithm::English));

/// Longest word indexed, in characters; longer ones (hashes, URLs' tails) are skipped.
const MAX_WORD_CHARS: usize = 64;
/// Most distinct terms indexed per message.
pub const MAX_TERMS: usize = 1_024;
/// BM25's term-frequency saturation and length normalisation, with an assumed mean length.
const K1: f64 = 1.2;
const B: f64 = 0.75;
const MEAN_WORDS: f64 = 16.0;

/// Weight of a matched client token (as a word that occurs once in a short text).
pub const CLIENT_TOKEN_WEIGHT: i64 = 1_000;

/// A word of a text: its byte range and term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    /// Byte offset of its start.
    pub start: usize,
    /// Byte offset after its end.
    pub end: usize,
    /// Its normal form.
    pub term: String,
}

/// The normal form of one word, or `None` if it is not indexed.
pub fn term(word: &str) -> Option<String> {
    if word.chars().count() > MAX_WORD_CHARS {
        return None;
    }
    let folded: String = word
        .nfkd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect();
    if folded.is_empty() {
        return None;
    }
    Some(ENGLISH.stem(&folded).into_owned())
}

/// The words of `text`, in order.
pub fn words(text: &str) -> Vec<Word> {
    text.unicode_word_indices()
        .filter_map(|(start, word)| {
            term(word).map(|term| Word {
                start,
                end: start + word.len(),
                term,
            })
        })
        .collect()
}

/// The distinct terms of a query, in order of appearance.
pub fn query_terms(query: &str) -> Vec<String> {
    let mut seen = HashSet::new();
    words(query)
        .into_iter()
        .map(|word| word.term)
        .filter(|term| seen.insert(term.clone()))
        .collect()
}

/// Each distinct term of `text` with its weight: BM25's term-frequency part (every hit
/// contains every query word, so inverse document frequency would not reorder them) times
/// 1,000, as an integer so that both databases add and compare it exactly.
pub fn weighted_terms(text: &str) -> Vec<(String, i64)> {
    let words = words(text);
    let length = words.len() as f64;
    let mut frequencies: BTreeMap<String, u32> = BTreeMap::new();
    for word in words {
        if frequencies.len() < MAX_TERMS || frequencies.contains_key(&word.term) {
            *frequencies.entry(word.term).or_default() += 1;
        }
    }
    frequencies
        .into_iter()
        .map(|(term, frequency)| {
            let tf = f64::from(frequency);
            let weight = tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * length / MEAN_WORDS));
            (term, (weight * 1_000.0).round() as i64)
        })
        .collect()
}

/// Marks the start and end of a match in a snippet.
pub const MATCH_START: char = '\u{2}';
/// See [`MATCH_START`].
pub const MATCH_END: char = '\u{3}';
/// Words of context kept before the first match.
const CONTEXT_BEFORE: usize = 8;
/// Most words a snippet shows.
const SNIPPET_WORDS: usize = 32;

/// The part of `text` around its first word whose term is in `terms`, with every matching
/// word between [`MATCH_START`] and [`MATCH_END`], and "…" where text was cut.
pub fn snippet(text: &str, terms: &HashSet<String>) -> String {
    let words = words(text);
    let first = words
        .iter()
        .position(|word| terms.contains(&word.term))
        .unwrap_or(0);
    let from = first.saturating_sub(CONTEXT_BEFORE);
    let to = (from + SNIPPET_WORDS).min(words.len());
    let start = if from == 0 { 0 } else { words[from].start };
    let end = if to >= words.len() {
        text.len()
    } else {
        words[to - 1].end
    };
    let mut snippet = String::new();
    if start > 0 {
        snippet.push('…');
    }
    let mut cursor = start;
    for word in &words[from..to] {
        if terms.contains(&word.term) {
            snippet.push_str(&text[cursor..word.start]);
            snippet.push(MATCH_START);
            snippet.push_str(&text[word.start..word.end]);
            snippet.push(MATCH_END);
            cursor = word.end;
        }
    }
    snippet.push_str(&text[cursor..end]);
    if end < text.len() {
        snippet.push('…');
    }
    snippet
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_fold_case_accents_and_stem() {
        assert_eq!(term("Running").as_deref(), Some("run"));
        assert_eq!(term("runs").as_deref(), Some("run"));
        assert_eq!(term("CAFÉ"), term("cafe"));
        assert_eq!(term("naïve"), term("Naive"));
        assert_eq!(term(&"x".repeat(65)), None);
        assert_eq!(
            query_terms("Deploy, deploying; DEPLOYED tonight"),
            ["deploy", "tonight"]
        );
    }

    #[test]
    fn weights_prefer_frequent_words_in_short_texts() {
        let weight = |text: &str, wanted: &str| {
            weighted_terms(text)
                .into_iter()
                .find(|(term, _)| term == wanted)
                .map(|(_, weight)| weight)
        };
        let once = weight("the release is today", "releas").expect("indexed");
        let twice = weight("release the release today", "releas").expect("indexed");
        let long = weight(
            "the release is today and many other words follow it here to make this message much longer than the others",
            "releas",
        )
        .expect("indexed");
        assert!(twice > once, "{twice} > {once}");
        assert!(once > long, "{once} > {long}");
    }

    #[test]
    fn snippets_mark_matches_and_cut_long_texts() {
        let terms: HashSet<String> = query_terms("deploy").into_iter().collect();
        assert_eq!(
            snippet("We deployed it, Deploy again!", &terms),
            "We \u{2}deployed\u{3} it, \u{2}Deploy\u{3} again!"
        );
        let long = format!("{} deploy {}", "word ".repeat(40), "tail ".repeat(40));
        let cut = snippet(&long, &terms);
        assert!(cut.starts_with('…') && cut.ends_with('…'), "{cut}");
        assert!(cut.contains("\u{2}deploy\u{3}"));
        assert_eq!(snippet("", &terms), "");
    }
}
