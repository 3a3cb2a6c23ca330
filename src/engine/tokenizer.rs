//! A word-level tokenizer for the built-in model's closed vocabulary.
//!
//! English text splits on whitespace and punctuation and is lower-cased.
//! Chinese text has no spaces, so it splits by greedy longest match against
//! the vocabulary's Chinese entries, one character at a time where nothing
//! matches. The vocabulary ships with the weights, so a model always reads
//! prompts the way it was trained.

use std::collections::HashMap;

/// Padding, also the token after the end of a prompt.
pub const PAD: u32 = 0;
/// Start of a prompt.
pub const BOS: u32 = 1;
/// End of a prompt.
pub const EOS: u32 = 2;
/// A word outside the vocabulary.
pub const UNK: u32 = 3;

const SPECIALS: [&str; 4] = ["<pad>", "<bos>", "<eos>", "<unk>"];

/// A prompt turned into token ids, and what did not fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoding {
    /// Exactly `max_len` ids: BOS, the prompt, EOS, then padding.
    pub ids: Vec<u32>,
    /// Words of the prompt that are not in the vocabulary.
    pub unknown: Vec<String>,
    /// Whether the prompt was cut to fit `max_len`.
    pub truncated: bool,
}

/// Maps prompts to token ids over a fixed vocabulary.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    vocab: Vec<String>,
    index: HashMap<String, u32>,
    max_len: usize,
    longest_entry: usize,
}

impl Tokenizer {
    /// Builds a tokenizer over `words` (special tokens are added first, and
    /// duplicates are ignored). `max_len` counts BOS and EOS.
    pub fn new<S: AsRef<str>>(words: &[S], max_len: usize) -> Self {
        let mut vocab: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).collect();
        let mut index: HashMap<String, u32> = HashMap::new();
        for (id, word) in vocab.iter().enumerate() {
            index.insert(word.clone(), id as u32);
        }
        for word in words {
            let word = word.as_ref().to_lowercase();
            if word.is_empty() || index.contains_key(&word) {
                continue;
            }
            index.insert(word.clone(), vocab.len() as u32);
            vocab.push(word);
        }
        let longest_entry = vocab.iter().map(|w| w.chars().count()).max().unwrap_or(1);
        Self {
            vocab,
            index,
            max_len: max_len.max(2),
            longest_entry,
        }
    }

    /// The vocabulary in id order, special tokens first.
    pub fn vocab(&self) -> &[String] {
        &self.vocab
    }

    /// Number of ids, special tokens included.
    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// Sequence length of every encoding, BOS and EOS included.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Encodes a prompt. The empty prompt (the unconditional input of
    /// classifier-free guidance) encodes as BOS, EOS and padding.
    pub fn encode(&self, text: &str) -> Encoding {
        let mut ids = vec![BOS];
        let mut unknown = Vec::new();
        for piece in self.pieces(text) {
            match self.index.get(&piece) {
                Some(&id) => ids.push(id),
                None => {
                    ids.push(UNK);
                    unknown.push(piece);
                }
            }
        }
        let truncated = ids.len() + 1 > self.max_len;
        ids.truncate(self.max_len - 1);
        ids.push(EOS);
        ids.resize(self.max_len, PAD);
        Encoding {
            ids,
            unknown,
            truncated,
        }
    }

    /// Splits text into the words that `encode` looks up, in order: word
    /// `i` becomes token `i + 1`, after BOS, unless the prompt is cut.
    pub fn words(&self, text: &str) -> Vec<String> {
        self.pieces(text)
    }

    /// Splits text into vocabulary-sized pieces.
    fn pieces(&self, text: &str) -> Vec<String> {
        let lower = text.to_lowercase();
        let chars: Vec<char> = lower.chars().collect();
        let mut pieces = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c.is_whitespace() {
                i += 1;
            } else if c.is_ascii_alphanumeric() || c == '\'' || c == '-' {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '\'' || chars[i] == '-')
                {
                    i += 1;
                }
                pieces.push(chars[start..i].iter().collect());
            } else if is_cjk(c) {
                let len = self.longest_match(&chars[i..]);
                pieces.push(chars[i..i + len].iter().collect());
                i += len;
            } else {
                // Punctuation and symbols: kept only if the vocabulary has them.
                let piece = c.to_string();
                if self.index.contains_key(&piece) {
                    pieces.push(piece);
                }
                i += 1;
            }
        }
        pieces
    }

    /// Length of the longest vocabulary entry that starts `chars`, at least 1.
    fn longest_match(&self, chars: &[char]) -> usize {
        let limit = self.longest_entry.min(chars.len());
        (2..=limit)
            .rev()
            .find(|&len| {
                let candidate: String = chars[..len].iter().collect();
                self.index.contains_key(&candidate)
            })
            .unwrap_or(1)
    }
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokenizer() -> Tokenizer {
        Tokenizer::new(
            &[
                "a", "red", "circle", "above", "一个", "红色", "的", "圆", "圆形", "在", "上方",
                ",",
            ],
            12,
        )
    }

    #[test]
    fn english_words_map_to_ids() {
        let t = tokenizer();
        let enc = t.encode("A red  circle, above");
        let words: Vec<&str> = enc
            .ids
            .iter()
            .map(|&id| t.vocab()[id as usize].as_str())
            .collect();
        assert_eq!(
            words[..7],
            ["<bos>", "a", "red", "circle", ",", "above", "<eos>"]
        );
        assert_eq!(enc.ids.len(), 12);
        assert!(enc.unknown.is_empty());
    }

    #[test]
    fn chinese_uses_longest_match() {
        let t = tokenizer();
        let enc = t.encode("一个红色的圆形在上方");
        let words: Vec<&str> = enc
            .ids
            .iter()
            .map(|&id| t.vocab()[id as usize].as_str())
            .collect();
        assert_eq!(
            words[..8],
            ["<bos>", "一个", "红色", "的", "圆形", "在", "上方", "<eos>"]
        );
    }

    #[test]
    fn unknown_words_are_reported() {
        let t = tokenizer();
        let enc = t.encode("a purple 猫");
        assert_eq!(enc.unknown, vec!["purple".to_string(), "猫".to_string()]);
        assert_eq!(enc.ids[2], UNK);
    }

    #[test]
    fn long_prompt_is_truncated_with_eos() {
        let t = tokenizer();
        let enc = t.encode(&"red ".repeat(30));
        assert!(enc.truncated);
        assert_eq!(enc.ids.len(), 12);
        assert_eq!(enc.ids[11], EOS);
    }

    #[test]
    fn empty_prompt_is_bos_eos() {
        let enc = tokenizer().encode("");
        assert_eq!(enc.ids[..3], [BOS, EOS, PAD]);
    }
}
