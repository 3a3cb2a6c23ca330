//! The words of the label in each supported language.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::LabelKind;

/// A language the label can be written in. The translations are mmgen's
/// own: each pairs the language's usual acronym for artificial
/// intelligence with the past participle, in capitals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// English: AI GENERATED, AI MODIFIED.
    En,
    /// German: KI GENERIERT, KI VERÄNDERT.
    De,
    /// French: IA GÉNÉRÉ, IA MODIFIÉ.
    Fr,
    /// Spanish: IA GENERADO, IA MODIFICADO.
    Es,
    /// Italian: IA GENERATO, IA MODIFICATO.
    It,
    /// Dutch: AI GEGENEREERD, AI GEWIJZIGD.
    Nl,
    /// Portuguese: IA GERADO, IA MODIFICADO.
    Pt,
    /// Polish: AI WYGENEROWANE, AI ZMODYFIKOWANE.
    Pl,
}

/// Every language, in the order the help text lists them.
const ALL: [Language; 8] = [
    Language::En,
    Language::De,
    Language::Fr,
    Language::Es,
    Language::It,
    Language::Nl,
    Language::Pt,
    Language::Pl,
];

/// Error of parsing a language code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported label language {code:?}; use one of: {}", Language::codes().join(", "))]
pub struct UnknownLanguage {
    /// The code as given.
    pub code: String,
}

impl Language {
    /// Returns the ISO 639-1 code, such as `de`.
    pub fn code(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::De => "de",
            Language::Fr => "fr",
            Language::Es => "es",
            Language::It => "it",
            Language::Nl => "nl",
            Language::Pt => "pt",
            Language::Pl => "pl",
        }
    }

    /// Returns every supported code.
    pub fn codes() -> Vec<&'static str> {
        ALL.iter().map(|language| language.code()).collect()
    }

    /// Returns the acronym for artificial intelligence, drawn in the
    /// label's first box.
    pub fn acronym(self) -> &'static str {
        match self {
            Language::En | Language::Nl | Language::Pl => "AI",
            Language::De => "KI",
            Language::Fr | Language::Es | Language::It | Language::Pt => "IA",
        }
    }

    /// Returns the word for `kind`, drawn in the label's second box.
    pub fn word(self, kind: LabelKind) -> &'static str {
        match (self, kind) {
            (Language::En, LabelKind::Generated) => "GENERATED",
            (Language::En, LabelKind::Modified) => "MODIFIED",
            (Language::De, LabelKind::Generated) => "GENERIERT",
            (Language::De, LabelKind::Modified) => "VERÄNDERT",
            (Language::Fr, LabelKind::Generated) => "GÉNÉRÉ",
            (Language::Fr, LabelKind::Modified) => "MODIFIÉ",
            (Language::Es, LabelKind::Generated) => "GENERADO",
            (Language::Es, LabelKind::Modified) => "MODIFICADO",
            (Language::It, LabelKind::Generated) => "GENERATO",
            (Language::It, LabelKind::Modified) => "MODIFICATO",
            (Language::Nl, LabelKind::Generated) => "GEGENEREERD",
            (Language::Nl, LabelKind::Modified) => "GEWIJZIGD",
            (Language::Pt, LabelKind::Generated) => "GERADO",
            (Language::Pt, LabelKind::Modified) => "MODIFICADO",
            (Language::Pl, LabelKind::Generated) => "WYGENEROWANE",
            (Language::Pl, LabelKind::Modified) => "ZMODYFIKOWANE",
        }
    }
}

impl FromStr for Language {
    type Err = UnknownLanguage;

    fn from_str(code: &str) -> Result<Self, Self::Err> {
        let lower = code.to_ascii_lowercase();
        ALL.iter()
            .find(|language| language.code() == lower)
            .copied()
            .ok_or_else(|| UnknownLanguage {
                code: code.to_string(),
            })
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for code in Language::codes() {
            let language: Language = code.parse().unwrap();
            assert_eq!(language.code(), code);
        }
        assert_eq!("DE".parse::<Language>().unwrap(), Language::De);
    }

    #[test]
    fn unknown_code_lists_the_choices() {
        let err = "xx".parse::<Language>().unwrap_err();
        assert!(err.to_string().contains("en, de, fr"), "{err}");
    }

    #[test]
    fn every_word_is_upper_case() {
        for language in ALL {
            for kind in [LabelKind::Generated, LabelKind::Modified] {
                let word = language.word(kind);
                assert_eq!(word, word.to_uppercase(), "{language} {kind:?}");
                assert!(!word.is_empty());
            }
        }
    }
}
