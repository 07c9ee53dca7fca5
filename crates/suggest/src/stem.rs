//! The Porter stemmer (M. F. Porter, "An algorithm for suffix stripping", 1980), for lowercase
//! ASCII words.
//!
//! Clinical vocabulary is mostly Greek and Latin with English inflection on top, which is the
//! part Porter removes: "diabetes" and "diabetic" meet at "diabet", "hypertensive" and
//! "hypertension" at "hypertens", "fractures" and "fractured" at "fractur". Words with
//! characters outside a–z (numbers, "c3", "covid-19" parts) are returned unchanged.

/// The stem of a lowercase word.
///
/// One departure from Porter: an inflammation keeps its ending. Porter takes "-itis" off, so
/// "esophagitis" met "esophageal" and "gastritis" met "gastric"; a text about reflux would
/// then deny or assert an inflammation it never mentions. "Arthritis" and "arthritic" still
/// meet, at "arthritis".
pub fn stem(word: &str) -> String {
    if word.len() <= 2 || !word.bytes().all(|b| b.is_ascii_lowercase()) {
        return word.to_string();
    }
    for ending in ["itides", "itis", "itic"] {
        if let Some(root) = word.strip_suffix(ending).filter(|root| root.len() >= 3) {
            return format!("{root}itis");
        }
    }
    let mut stemmer = Stemmer { b: word.as_bytes().to_vec(), k: word.len() - 1, j: 0 };
    stemmer.step1ab();
    if stemmer.k > 0 {
        stemmer.step1c();
        stemmer.step2();
        stemmer.step3();
        stemmer.step4();
        stemmer.step5();
    }
    stemmer.b.truncate(stemmer.k + 1);
    // Only ASCII letters were ever written into the buffer.
    String::from_utf8(stemmer.b).unwrap_or_else(|_| word.to_string())
}

/// The word being stemmed: `b[..=k]` is the current word, and `j` marks the end of the stem
/// before the suffix under test (set by [`Stemmer::ends`]).
struct Stemmer {
    b: Vec<u8>,
    k: usize,
    j: usize,
}

impl Stemmer {
    /// Whether `b[i]` is a consonant; "y" is one at the start or after a vowel.
    fn cons(&self, i: usize) -> bool {
        match self.b[i] {
            b'a' | b'e' | b'i' | b'o' | b'u' => false,
            b'y' => i == 0 || !self.cons(i - 1),
            _ => true,
        }
    }

    /// The number of vowel-consonant sequences in `b[..=j]`: the "m" of the paper.
    fn measure(&self) -> usize {
        let end = self.j;
        let mut i = 0;
        loop {
            if i > end {
                return 0;
            }
            if !self.cons(i) {
                break;
            }
            i += 1;
        }
        i += 1;
        let mut n = 0;
        loop {
            loop {
                if i > end {
                    return n;
                }
                if self.cons(i) {
                    break;
                }
                i += 1;
            }
            i += 1;
            n += 1;
            loop {
                if i > end {
                    return n;
                }
                if !self.cons(i) {
                    break;
                }
                i += 1;
            }
            i += 1;
        }
    }

    fn vowel_in_stem(&self) -> bool {
        (0..=self.j).any(|i| !self.cons(i))
    }

    fn double_consonant(&self, i: usize) -> bool {
        i >= 1 && self.b[i] == self.b[i - 1] && self.cons(i)
    }

    /// Consonant-vowel-consonant ending at `i`, the last not w, x or y ("hop", not "snow").
    fn cvc(&self, i: usize) -> bool {
        if i < 2 || !self.cons(i) || self.cons(i - 1) || !self.cons(i - 2) {
            return false;
        }
        !matches!(self.b[i], b'w' | b'x' | b'y')
    }

    /// Whether the word ends with `suffix` (leaving a non-empty stem); sets `j` before it.
    fn ends(&mut self, suffix: &str) -> bool {
        let s = suffix.as_bytes();
        let len = s.len();
        if len > self.k {
            return false;
        }
        if &self.b[self.k + 1 - len..=self.k] != s {
            return false;
        }
        self.j = self.k - len;
        true
    }

    /// Replaces `b[j+1..=k]` with `s`.
    fn set_to(&mut self, s: &str) {
        self.b.truncate(self.j + 1);
        self.b.extend_from_slice(s.as_bytes());
        self.k = self.j + s.len();
    }

    fn replace_if_measured(&mut self, s: &str) {
        if self.measure() > 0 {
            self.set_to(s);
        }
    }

    fn step1ab(&mut self) {
        if self.b[self.k] == b's' {
            if self.ends("sses") {
                self.k -= 2;
            } else if self.ends("ies") {
                self.set_to("i");
            } else if self.k >= 1 && self.b[self.k - 1] != b's' {
                self.k -= 1;
            }
        }
        if self.ends("eed") {
            if self.measure() > 0 {
                self.k -= 1;
            }
        } else if (self.ends("ed") || self.ends("ing")) && self.vowel_in_stem() {
            self.k = self.j;
            if self.ends("at") {
                self.set_to("ate");
            } else if self.ends("bl") {
                self.set_to("ble");
            } else if self.ends("iz") {
                self.set_to("ize");
            } else if self.double_consonant(self.k) {
                if !matches!(self.b[self.k], b'l' | b's' | b'z') {
                    self.k -= 1;
                }
            } else {
                self.j = self.k;
                if self.measure() == 1 && self.cvc(self.k) {
                    self.set_to("e");
                }
            }
        }
    }

    fn step1c(&mut self) {
        if self.ends("y") && self.vowel_in_stem() {
            self.b[self.k] = b'i';
        }
    }

    fn step2(&mut self) {
        if self.k == 0 {
            return;
        }
        const RULES: &[(&str, &str)] = &[
            ("ational", "ate"),
            ("tional", "tion"),
            ("enci", "ence"),
            ("anci", "ance"),
            ("izer", "ize"),
            ("bli", "ble"),
            ("alli", "al"),
            ("entli", "ent"),
            ("eli", "e"),
            ("ousli", "ous"),
            ("ization", "ize"),
            ("ation", "ate"),
            ("ator", "ate"),
            ("alism", "al"),
            ("iveness", "ive"),
            ("fulness", "ful"),
            ("ousness", "ous"),
            ("aliti", "al"),
            ("iviti", "ive"),
            ("biliti", "ble"),
            ("logi", "log"),
        ];
        self.apply_first(RULES);
    }

    fn step3(&mut self) {
        const RULES: &[(&str, &str)] = &[
            ("icate", "ic"),
            ("ative", ""),
            ("alize", "al"),
            ("iciti", "ic"),
            ("ical", "ic"),
            ("ful", ""),
            ("ness", ""),
        ];
        self.apply_first(RULES);
    }

    /// Applies the first rule whose suffix matches, if the stem before it has m > 0.
    fn apply_first(&mut self, rules: &[(&str, &str)]) {
        for (suffix, replacement) in rules {
            if self.ends(suffix) {
                self.replace_if_measured(replacement);
                return;
            }
        }
    }

    fn step4(&mut self) {
        if self.k == 0 {
            return;
        }
        const SUFFIXES: &[&str] = &[
            "al", "ance", "ence", "er", "ic", "able", "ible", "ant", "ement", "ment", "ent", "ion", "ou",
            "ism", "ate", "iti", "ous", "ive", "ize",
        ];
        let mut matched = false;
        for suffix in SUFFIXES {
            if self.ends(suffix) {
                // "ion" only after s or t ("lesion" -> "lesi", not "infection" -> ...).
                if *suffix == "ion" && !matches!(self.b[self.j], b's' | b't') {
                    continue;
                }
                matched = true;
                break;
            }
        }
        if matched && self.measure() > 1 {
            self.k = self.j;
        }
    }

    fn step5(&mut self) {
        self.j = self.k;
        if self.b[self.k] == b'e' {
            self.j = self.k.saturating_sub(1);
            let m = self.measure();
            if m > 1 || (m == 1 && !self.cvc(self.k - 1)) {
                self.k -= 1;
            }
        }
        self.j = self.k;
        if self.b[self.k] == b'l' && self.double_consonant(self.k) && self.measure() > 1 {
            self.k -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::stem;

    #[test]
    fn porter_reference_words() {
        // From the examples of Porter's paper and its published vocabulary.
        for (word, expected) in [
            ("caresses", "caress"),
            ("ponies", "poni"),
            ("caress", "caress"),
            ("cats", "cat"),
            ("feed", "feed"),
            ("agreed", "agre"),
            ("plastered", "plaster"),
            ("motoring", "motor"),
            ("sing", "sing"),
            ("conflated", "conflat"),
            ("troubled", "troubl"),
            ("sized", "size"),
            ("hopping", "hop"),
            ("falling", "fall"),
            ("filing", "file"),
            ("happy", "happi"),
            ("relational", "relat"),
            ("conditional", "condit"),
            ("valenci", "valenc"),
            ("digitizer", "digit"),
            ("vietnamization", "vietnam"),
            ("predication", "predic"),
            ("operator", "oper"),
            ("feudalism", "feudal"),
            ("decisiveness", "decis"),
            ("hopefulness", "hope"),
            ("formaliti", "formal"),
            ("sensitiviti", "sensit"),
            ("triplicate", "triplic"),
            ("formative", "form"),
            ("electrical", "electr"),
            ("revival", "reviv"),
            ("allowance", "allow"),
            ("inference", "infer"),
            ("airliner", "airlin"),
            ("adjustable", "adjust"),
            ("defensible", "defens"),
            ("irritant", "irrit"),
            ("replacement", "replac"),
            ("adoption", "adopt"),
            ("homologou", "homolog"),
            ("communism", "commun"),
            ("activate", "activ"),
            ("angulariti", "angular"),
            ("homologous", "homolog"),
            ("effective", "effect"),
            ("bowdlerize", "bowdler"),
            ("probate", "probat"),
            ("rate", "rate"),
            ("cease", "ceas"),
            ("controll", "control"),
            ("roll", "roll"),
        ] {
            assert_eq!(stem(word), expected, "{word}");
        }
    }

    #[test]
    fn clinical_families_meet() {
        assert_eq!(stem("diabetes"), stem("diabetic"));
        assert_eq!(stem("hypertensive"), stem("hypertension"));
        assert_eq!(stem("fractures"), stem("fractured"));
        assert_eq!(stem("infarction"), stem("infarct"));
        assert_eq!(stem("complications"), stem("complication"));
        assert_eq!(stem("arthritic"), stem("arthritis"));
        assert_ne!(stem("esophagitis"), stem("esophageal"));
        assert_ne!(stem("gastritis"), stem("gastric"));
        assert_eq!(stem("c3"), "c3");
        assert_eq!(stem("ab"), "ab");
    }
}
