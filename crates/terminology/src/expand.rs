//! Value set semantics: which codes a compose selects (enumeration, for `$expand`) and whether
//! it selects one given code (membership, for `$validate-code`), with the same rules for both.
//!
//! Rules that the specification leaves to the server, chosen to agree with the expansions HL7
//! published with R4:
//! - codes selected by a filter or by including a whole code system leave out abstract
//!   (`notSelectable`) concepts unless the client asks for them, and deprecated concepts unless
//!   the compose sets `inactive` true; retired concepts stay, marked inactive;
//! - codes listed by name are in the value set whatever their status;
//! - a code system that is unknown, or only partly represented (`content` other than
//!   `complete`), cannot be enumerated, and membership in it cannot be decided unless the
//!   codes are listed.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::LazyLock;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::Error;
use crate::icd10cm::Icd10Cm;
use crate::r4::{Compose, ConceptSet, Filter};
use crate::registry::{Engine, System, split_version};

/// Choices of the caller that change which concepts a compose selects.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Policy {
    /// Keep abstract (`notSelectable`) concepts that filters or whole-system includes select.
    pub abstract_ok: bool,
    /// Leave out inactive concepts, even listed ones.
    pub active_only: bool,
}

/// One code of an expansion.
#[derive(Clone, Debug)]
pub(crate) struct Member {
    /// Index into the expander's systems.
    pub sys: u16,
    pub code: MemberCode,
    /// The display the value set gives the code, if any.
    pub display: Option<Rc<str>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum MemberCode {
    /// A concept of a known code system.
    Known(u32),
    /// A listed code of a code system this server does not have.
    Listed(Rc<str>),
}

/// Whether a compose selects a code.
#[derive(Debug)]
pub(crate) enum Membership {
    /// Selected; with the display the value set gives the code, if any.
    Member {
        display: Option<String>,
    },
    NotMember,
    /// Cannot be decided here (unknown or partial code system); the reason.
    Undecided(String),
}

/// Value set imports nested deeper than this are taken for a cycle.
const MAX_DEPTH: u32 = 24;

/// Evaluates composes for one operation.
pub(crate) struct Expander<'e, 'r> {
    pub engine: &'e Engine<'r>,
    pub policy: Policy,
    text: Option<TextFilter>,
    systems: RefCell<Vec<(String, Option<System>)>>,
    depth: Cell<u32>,
}

impl<'e, 'r> Expander<'e, 'r> {
    pub fn new(engine: &'e Engine<'r>, policy: Policy, text: Option<TextFilter>) -> Self {
        Expander { engine, policy, text, systems: RefCell::default(), depth: Cell::new(0) }
    }

    /// The index of a code system in this expansion's list of systems.
    pub fn sys_index(&self, url: &str) -> u16 {
        let (url, _) = split_version(url);
        let mut systems = self.systems.borrow_mut();
        if let Some(i) = systems.iter().position(|(u, _)| u == url) {
            return i as u16;
        }
        systems.push((url.to_owned(), self.engine.system(url)));
        (systems.len() - 1) as u16
    }

    pub fn system_at(&self, sys: u16) -> (String, Option<System>) {
        self.systems.borrow()[sys as usize].clone()
    }

    /// The code of a member, as text.
    pub fn member_code(&self, member: &Member) -> String {
        match &member.code {
            MemberCode::Listed(code) => code.to_string(),
            MemberCode::Known(id) => {
                let systems = self.systems.borrow();
                systems[member.sys as usize].1.as_ref().map_or_else(String::new, |s| s.code(*id).to_owned())
            }
        }
    }

    fn nested<T>(&self, run: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
        let depth = self.depth.get();
        if depth >= MAX_DEPTH {
            return Err(Error::Invalid("value set imports nest too deeply (is there a cycle?)".into()));
        }
        self.depth.set(depth + 1);
        let result = run();
        self.depth.set(depth);
        result
    }

    /// Every code the compose selects, in include order, each code once.
    pub fn expand(&self, compose: &Compose) -> Result<Vec<Member>, Error> {
        self.nested(|| {
            let mut parts = Vec::with_capacity(compose.include.len());
            for set in &compose.include {
                parts.push(self.include(compose, set)?);
            }
            // One include cannot repeat a code; several can.
            let mut members = if parts.len() == 1 {
                parts.pop().unwrap_or_default()
            } else {
                let mut seen = FxHashSet::default();
                parts.into_iter().flatten().filter(|m| seen.insert((m.sys, m.code.clone()))).collect()
            };
            if !compose.exclude.is_empty() {
                let mut kept = Vec::with_capacity(members.len());
                for member in members {
                    if !self.excluded(compose, &member)? {
                        kept.push(member);
                    }
                }
                members = kept;
            }
            Ok(members)
        })
    }

    fn excluded(&self, compose: &Compose, member: &Member) -> Result<bool, Error> {
        let url = self.systems.borrow()[member.sys as usize].0.clone();
        let code = self.member_code(member);
        for set in &compose.exclude {
            match self.set_contains(compose, set, &url, &code, true)? {
                Membership::Member { .. } => return Ok(true),
                Membership::NotMember => {}
                Membership::Undecided(why) => return Err(Error::NotFound(why)),
            }
        }
        Ok(false)
    }

    fn include(&self, compose: &Compose, set: &ConceptSet) -> Result<Vec<Member>, Error> {
        let mut members = match &set.system {
            Some(system) => Some(self.enumerate_system(compose, set, system)?),
            None => None,
        };
        for url in &set.value_sets {
            let vs = self.engine.value_set(url)?;
            let imported = self.expand(&vs.compose)?;
            members = Some(match members {
                None => imported,
                Some(current) => {
                    let keep: FxHashSet<(u16, MemberCode)> =
                        imported.into_iter().map(|m| (m.sys, m.code)).collect();
                    current.into_iter().filter(|m| keep.contains(&(m.sys, m.code.clone()))).collect()
                }
            });
        }
        Ok(members.unwrap_or_default())
    }

    fn enumerate_system(&self, compose: &Compose, set: &ConceptSet, url: &str) -> Result<Vec<Member>, Error> {
        let sys_index = self.sys_index(url);
        let (_, system) = self.system_at(sys_index);
        let listed = |code: &str, display: &Option<String>| Member {
            sys: sys_index,
            code: MemberCode::Listed(Rc::from(code)),
            display: display.as_deref().map(|d| Rc::from(d.trim())),
        };
        let Some(system) = system else {
            if !set.concepts.is_empty() && set.filters.is_empty() {
                let text = self.text.as_ref();
                let mut seen = FxHashSet::default();
                return Ok(set
                    .concepts
                    .iter()
                    .filter(|(code, _)| seen.insert(code))
                    .filter(|(code, display)| text.is_none_or(|t| t.matches(display.as_deref(), code)))
                    .map(|(code, display)| listed(code, display))
                    .collect());
            }
            return Err(Error::NotFound(format!(
                "the code system {url} is not known, so the value set cannot be expanded"
            )));
        };
        if !set.concepts.is_empty() {
            let mut out = Vec::with_capacity(set.concepts.len());
            let mut seen = FxHashSet::default();
            for (code, display) in &set.concepts {
                if !seen.insert(code) {
                    continue;
                }
                let shown =
                    display.as_deref().or_else(|| system.find(code).and_then(|id| system.display(id)));
                if self.text.as_ref().is_some_and(|t| !t.matches(shown, code)) {
                    continue;
                }
                match system.find(code) {
                    Some(id) => {
                        if self.policy.active_only && (system.is_inactive(id) || system.is_deprecated(id)) {
                            continue;
                        }
                        if passes_filters(&system, id, &set.filters) {
                            out.push(Member {
                                sys: sys_index,
                                code: MemberCode::Known(id),
                                display: display.as_deref().map(|d| Rc::from(d.trim())),
                            });
                        }
                    }
                    None if !system.is_complete() => out.push(listed(code, display)),
                    None => {}
                }
            }
            return Ok(out);
        }
        if !system.is_complete() {
            return Err(Error::NotFound(format!(
                "the code system {url} is only partly known here, so the value set cannot be expanded"
            )));
        }
        let (candidates, used) = self.candidates(&system, &set.filters);
        let tests: Vec<FilterTest<'_>> = set
            .filters
            .iter()
            .enumerate()
            .filter(|&(i, _)| Some(i) != used)
            .map(|(_, f)| FilterTest::new(&system, f, candidates.len() > 1))
            .collect();
        let mut out = Vec::new();
        for id in candidates {
            let passes = tests.iter().all(|t| t.matches(&system, id));
            if passes && self.selectable(&system, id, compose) {
                out.push(Member { sys: sys_index, code: MemberCode::Known(id), display: None });
            }
        }
        Ok(out)
    }

    /// The concepts worth testing against the filters and the text filter, in definition
    /// order, and which filter (if any) they already satisfy.
    fn candidates(&self, system: &System, filters: &[Filter]) -> (Vec<u32>, Option<usize>) {
        let narrowing = filters.iter().position(|f| {
            is_concept_property(&f.property)
                && matches!(f.op.as_str(), "is-a" | "descendent-of" | "descendant-of" | "=")
        });
        let text_ids = match (&self.text, system) {
            (Some(text), System::Icd(icd)) => Some(icd_text_index(icd).search(text)),
            _ => None,
        };
        let mut ids: Vec<u32> = match (narrowing, &text_ids) {
            (Some(i), _) => {
                let filter = &filters[i];
                let Some(root) = system.find(&filter.value) else { return (Vec::new(), Some(i)) };
                match filter.op.as_str() {
                    "=" => vec![root],
                    _ => {
                        let strict = filter.op != "is-a";
                        match &text_ids {
                            Some(found) => found
                                .iter()
                                .copied()
                                .filter(|&id| {
                                    (!strict || id != root) && system.is_self_or_descendant(id, root)
                                })
                                .collect(),
                            None => {
                                let mut below = system.descendants(root);
                                if !strict {
                                    below.insert(0, root);
                                }
                                below
                            }
                        }
                    }
                }
            }
            (None, Some(found)) => found.clone(),
            (None, None) => (0..system.len()).collect(),
        };
        if let (Some(text), None) = (&self.text, &text_ids) {
            ids.retain(|&id| text.matches(system.display(id), system.code(id)));
        }
        (ids, narrowing)
    }

    /// Whether a concept that a filter or a whole-system include reaches belongs to the value
    /// set, given its status and the caller's policy.
    fn selectable(&self, system: &System, id: u32, compose: &Compose) -> bool {
        if system.is_abstract(id) && !self.policy.abstract_ok {
            return false;
        }
        if system.is_deprecated(id) && (compose.inactive != Some(true) || self.policy.active_only) {
            return false;
        }
        if system.is_inactive(id) && (compose.inactive == Some(false) || self.policy.active_only) {
            return false;
        }
        true
    }

    /// Whether the compose selects `code` of `system` (a canonical URL).
    pub fn contains(&self, compose: &Compose, system: &str, code: &str) -> Result<Membership, Error> {
        self.nested(|| {
            let mut undecided = None;
            let mut found = None;
            for set in &compose.include {
                match self.set_contains(compose, set, system, code, false)? {
                    Membership::Member { display } => {
                        found = Some(display);
                        break;
                    }
                    Membership::NotMember => {}
                    Membership::Undecided(why) => undecided = undecided.or(Some(why)),
                }
            }
            let Some(display) = found else {
                return Ok(undecided.map_or(Membership::NotMember, Membership::Undecided));
            };
            for set in &compose.exclude {
                match self.set_contains(compose, set, system, code, true)? {
                    Membership::Member { .. } => return Ok(Membership::NotMember),
                    Membership::NotMember => {}
                    Membership::Undecided(why) => return Ok(Membership::Undecided(why)),
                }
            }
            Ok(Membership::Member { display })
        })
    }

    /// Whether one include (or exclude, which ignores status rules) selects the code.
    fn set_contains(
        &self,
        compose: &Compose,
        set: &ConceptSet,
        system_url: &str,
        code: &str,
        excluding: bool,
    ) -> Result<Membership, Error> {
        let (system_url, _) = split_version(system_url);
        let mut display = None;
        if let Some(set_system) = &set.system {
            if split_version(set_system).0 != system_url {
                return Ok(Membership::NotMember);
            }
            match self.engine.system(system_url) {
                None => {
                    if set.concepts.is_empty() || !set.filters.is_empty() {
                        return Ok(Membership::Undecided(format!(
                            "the code system {system_url} is not known"
                        )));
                    }
                    match set.concepts.iter().find(|(c, _)| c == code) {
                        Some((_, d)) => display = d.clone(),
                        None => return Ok(Membership::NotMember),
                    }
                }
                Some(system) => {
                    let id = system.find(code);
                    if !set.concepts.is_empty() {
                        let listed = set.concepts.iter().find(|(c, _)| match id {
                            Some(id) => system.find(c) == Some(id),
                            None => c == code,
                        });
                        let Some((_, d)) = listed else { return Ok(Membership::NotMember) };
                        match id {
                            Some(id) => {
                                if !excluding
                                    && self.policy.active_only
                                    && (system.is_inactive(id) || system.is_deprecated(id))
                                {
                                    return Ok(Membership::NotMember);
                                }
                                if !passes_filters(&system, id, &set.filters) {
                                    return Ok(Membership::NotMember);
                                }
                            }
                            None if system.is_complete() => return Ok(Membership::NotMember),
                            None => {}
                        }
                        display = d.clone();
                    } else {
                        let Some(id) = id else {
                            return Ok(if system.is_complete() {
                                Membership::NotMember
                            } else {
                                Membership::Undecided(format!(
                                    "the code system {system_url} is only partly known here"
                                ))
                            });
                        };
                        if !passes_filters(&system, id, &set.filters) {
                            return Ok(Membership::NotMember);
                        }
                        if !excluding && !self.selectable(&system, id, compose) {
                            return Ok(Membership::NotMember);
                        }
                    }
                }
            }
        }
        for url in &set.value_sets {
            let vs = self.engine.value_set(url)?;
            match self.contains(&vs.compose, system_url, code)? {
                Membership::Member { display: d } => display = display.or(d),
                other => return Ok(other),
            }
        }
        if set.system.is_none() && set.value_sets.is_empty() {
            return Ok(Membership::NotMember);
        }
        Ok(Membership::Member { display })
    }
}

fn is_concept_property(property: &str) -> bool {
    matches!(property, "concept" | "code")
}

/// One compose filter, ready to test concepts: the code it names is looked up once, and for
/// tests of many concepts the subtree it names is marked once and a pattern compiled once.
pub(crate) struct FilterTest<'f> {
    filter: &'f Filter,
    root: Option<u32>,
    /// `root` and every concept below it, for hierarchy filters over a table code system.
    subtree: Option<Vec<bool>>,
    listed: Vec<u32>,
    pattern: Option<regex::Regex>,
}

impl<'f> FilterTest<'f> {
    /// `many`: the test will run over many concepts, so precomputing pays.
    pub fn new(system: &System, filter: &'f Filter, many: bool) -> FilterTest<'f> {
        let concept = is_concept_property(&filter.property);
        let root = if concept { system.find(&filter.value) } else { None };
        let hierarchy = matches!(filter.op.as_str(), "is-a" | "descendent-of" | "descendant-of" | "is-not-a");
        let subtree = match (root, system) {
            (Some(root), System::Table(_) | System::Runtime(_)) if many && concept && hierarchy => {
                let mut marks = vec![false; system.len() as usize];
                marks[root as usize] = true;
                for id in system.descendants(root) {
                    marks[id as usize] = true;
                }
                Some(marks)
            }
            _ => None,
        };
        let listed = if concept && matches!(filter.op.as_str(), "in" | "not-in") {
            filter.value.split(',').map(str::trim).filter_map(|c| system.find(c)).collect()
        } else {
            Vec::new()
        };
        let pattern = if filter.op == "regex" { regex::Regex::new(&filter.value) } else { None };
        FilterTest { filter, root, subtree, listed, pattern }
    }

    fn within(&self, system: &System, id: u32, root: u32) -> bool {
        match &self.subtree {
            Some(marks) => marks[id as usize],
            None => system.is_self_or_descendant(id, root),
        }
    }

    pub fn matches(&self, system: &System, id: u32) -> bool {
        let filter = self.filter;
        let value = filter.value.as_str();
        if is_concept_property(&filter.property) {
            return match (filter.op.as_str(), self.root) {
                ("=", root) => root == Some(id),
                ("is-a", Some(root)) => self.within(system, id, root),
                ("descendent-of" | "descendant-of", Some(root)) => {
                    id != root && self.within(system, id, root)
                }
                ("is-not-a", Some(root)) => !self.within(system, id, root),
                ("is-not-a", None) => true,
                ("generalizes", Some(root)) => system.is_self_or_descendant(root, id),
                ("in", _) => self.listed.contains(&id),
                ("not-in", _) => !self.listed.contains(&id),
                ("regex", _) => self.pattern.as_ref().is_some_and(|p| p.is_match(system.code(id))),
                _ => false,
            };
        }
        let values = system.property_values(id, &filter.property);
        let list = || value.split(',').map(str::trim).filter(|c| !c.is_empty());
        match filter.op.as_str() {
            "=" => values.iter().any(|v| v.as_text() == value),
            "in" => values.iter().any(|v| list().any(|c| v.as_text() == c)),
            "not-in" => !values.iter().any(|v| list().any(|c| v.as_text() == c)),
            "exists" => values.is_empty() == (value == "false"),
            "regex" => self.pattern.as_ref().is_some_and(|p| values.iter().any(|v| p.is_match(&v.as_text()))),
            _ => false,
        }
    }
}

/// Whether a concept passes every filter of an include (a single test, nothing precomputed).
fn passes_filters(system: &System, id: u32, filters: &[Filter]) -> bool {
    filters.iter().all(|f| FilterTest::new(system, f, false).matches(system, id))
}

/// The `$expand` text filter: every word of the filter must begin a word of the display
/// (case-insensitive); a filter shaped like a code (one token with a digit) also matches codes
/// that begin with it, dots ignored.
#[derive(Clone, Debug)]
pub(crate) struct TextFilter {
    words: Vec<String>,
    code_prefix: Option<String>,
}

/// Lowercase words of a text: runs of letters and digits.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase)
}

fn normalize_code(code: &str) -> String {
    code.chars().filter(|&c| c != '.').flat_map(char::to_lowercase).collect()
}

impl TextFilter {
    pub fn new(filter: &str) -> Option<TextFilter> {
        let trimmed = filter.trim();
        let words: Vec<String> = words(trimmed).collect();
        let looks_like_code = !trimmed.is_empty()
            && !trimmed.contains(char::is_whitespace)
            && trimmed.contains(|c: char| c.is_ascii_digit());
        let code_prefix = looks_like_code.then(|| normalize_code(trimmed));
        (!words.is_empty() || code_prefix.is_some()).then_some(TextFilter { words, code_prefix })
    }

    pub fn matches(&self, display: Option<&str>, code: &str) -> bool {
        if self.code_prefix.as_ref().is_some_and(|p| normalize_code(code).starts_with(p.as_str())) {
            return true;
        }
        if self.words.is_empty() {
            return false;
        }
        let display: Vec<String> = display.map(|d| words(d).collect()).unwrap_or_default();
        self.words.iter().all(|w| display.iter().any(|d| d.starts_with(w.as_str())))
    }
}

/// A word index over ICD-10-CM displays and codes, so that a text filter over the whole
/// classification costs a few posting-list scans rather than a pass over every display.
struct IcdTextIndex {
    /// Every display word, sorted, so that the words with a prefix form one range.
    words: Vec<Box<str>>,
    /// For word `w`, its concepts are `postings[posting_starts[w]..posting_starts[w + 1]]`.
    posting_starts: Vec<u32>,
    postings: Vec<u32>,
    /// For concept `c`, its word numbers are `concept_words[word_starts[c]..word_starts[c + 1]]`.
    word_starts: Vec<u32>,
    concept_words: Vec<u32>,
    /// Codes normalized (lowercase, no dot), sorted, with their concept.
    codes: Vec<(Box<str>, u32)>,
}

static ICD_TEXT_INDEX: LazyLock<IcdTextIndex> = LazyLock::new(|| IcdTextIndex::build(Icd10Cm::get()));

fn icd_text_index(icd: &'static Icd10Cm) -> &'static IcdTextIndex {
    debug_assert!(std::ptr::eq(icd, Icd10Cm::get()));
    &ICD_TEXT_INDEX
}

pub(crate) fn preload_icd_index() {
    LazyLock::force(&ICD_TEXT_INDEX);
}

impl IcdTextIndex {
    fn build(icd: &Icd10Cm) -> IcdTextIndex {
        let mut numbering: FxHashMap<String, u32> = FxHashMap::default();
        let mut per_concept: Vec<Vec<u32>> = Vec::with_capacity(icd.len());
        for concept in icd.concepts() {
            let mut ids: Vec<u32> = words(concept.display())
                .map(|w| {
                    let next = numbering.len() as u32;
                    *numbering.entry(w).or_insert(next)
                })
                .collect();
            ids.sort_unstable();
            ids.dedup();
            per_concept.push(ids);
        }
        let mut vocabulary: Vec<(String, u32)> = numbering.into_iter().collect();
        vocabulary.sort_unstable();
        let mut renumber = vec![0u32; vocabulary.len()];
        for (sorted, (_, first)) in vocabulary.iter().enumerate() {
            renumber[*first as usize] = sorted as u32;
        }
        let mut counts = vec![0u32; vocabulary.len() + 1];
        let mut word_starts = Vec::with_capacity(per_concept.len() + 1);
        let mut concept_words = Vec::new();
        for ids in &mut per_concept {
            word_starts.push(concept_words.len() as u32);
            for id in ids.iter_mut() {
                *id = renumber[*id as usize];
                counts[*id as usize + 1] += 1;
            }
            concept_words.extend_from_slice(ids);
        }
        word_starts.push(concept_words.len() as u32);
        for i in 1..counts.len() {
            counts[i] += counts[i - 1];
        }
        let posting_starts = counts.clone();
        let mut fill = counts;
        let mut postings = vec![0u32; concept_words.len()];
        for (concept, ids) in per_concept.iter().enumerate() {
            for &id in ids {
                postings[fill[id as usize] as usize] = concept as u32;
                fill[id as usize] += 1;
            }
        }
        let mut codes: Vec<(Box<str>, u32)> =
            icd.concepts().map(|c| (normalize_code(c.code()).into_boxed_str(), c.index() as u32)).collect();
        codes.sort_unstable();
        IcdTextIndex {
            words: vocabulary.into_iter().map(|(w, _)| w.into_boxed_str()).collect(),
            posting_starts,
            postings,
            word_starts,
            concept_words,
            codes,
        }
    }

    /// The word numbers that begin with `prefix`.
    fn word_range(&self, prefix: &str) -> (u32, u32) {
        let low = self.words.partition_point(|w| &**w < prefix);
        let high = low + self.words[low..].partition_point(|w| w.starts_with(prefix));
        (low as u32, high as u32)
    }

    /// The concepts the filter matches, in tabular order.
    fn search(&self, filter: &TextFilter) -> Vec<u32> {
        let mut found = Vec::new();
        if !filter.words.is_empty() {
            let ranges: Vec<(u32, u32)> = filter.words.iter().map(|w| self.word_range(w)).collect();
            let postings = |(low, high): (u32, u32)| {
                &self.postings
                    [self.posting_starts[low as usize] as usize..self.posting_starts[high as usize] as usize]
            };
            if let Some(rarest) = (0..ranges.len()).min_by_key(|&i| postings(ranges[i]).len()) {
                let mut candidates = postings(ranges[rarest]).to_vec();
                candidates.sort_unstable();
                candidates.dedup();
                candidates.retain(|&c| {
                    let own = &self.concept_words
                        [self.word_starts[c as usize] as usize..self.word_starts[c as usize + 1] as usize];
                    ranges
                        .iter()
                        .enumerate()
                        .all(|(i, &(low, high))| i == rarest || own.iter().any(|&w| w >= low && w < high))
                });
                found = candidates;
            }
        }
        if let Some(prefix) = &filter.code_prefix {
            let low = self.codes.partition_point(|(c, _)| &**c < prefix.as_str());
            let by_code = self.codes[low..]
                .iter()
                .take_while(|(c, _)| c.starts_with(prefix.as_str()))
                .map(|&(_, id)| id);
            found.extend(by_code);
            found.sort_unstable();
            found.dedup();
        }
        found
    }
}

/// A small regular expression engine for `regex` filters: literals, `.`, classes (`[a-z]`,
/// `[^0-9]`, `\d`, `\w`, `\s`), groups, alternation, and the quantifiers `* + ? {n} {n,}
/// {n,m}`. The whole value must match, as in XML Schema patterns.
mod regex {
    #[derive(Debug)]
    enum Atom {
        Char(char),
        Any,
        Class { ranges: Vec<(char, char)>, negated: bool },
        Group(Box<Alternation>),
    }

    #[derive(Debug)]
    struct Piece {
        atom: Atom,
        min: u32,
        max: u32,
    }

    #[derive(Debug)]
    struct Alternation(Vec<Vec<Piece>>);

    pub struct Regex(Alternation);

    /// Backtracking is bounded so that a pathological pattern fails instead of hanging.
    const MAX_STEPS: u32 = 100_000;

    impl Regex {
        pub fn new(pattern: &str) -> Option<Regex> {
            let chars: Vec<char> = pattern.chars().collect();
            let mut at = 0;
            let alternation = parse_alternation(&chars, &mut at)?;
            (at == chars.len()).then_some(Regex(alternation))
        }

        pub fn is_match(&self, text: &str) -> bool {
            let chars: Vec<char> = text.chars().collect();
            let mut steps = 0;
            match_alternation(&self.0, &chars, 0, &mut steps, &mut |end, _| end == chars.len())
        }
    }

    fn parse_alternation(p: &[char], at: &mut usize) -> Option<Alternation> {
        let mut branches = vec![Vec::new()];
        while *at < p.len() && p[*at] != ')' {
            if p[*at] == '|' {
                *at += 1;
                branches.push(Vec::new());
                continue;
            }
            let atom = parse_atom(p, at)?;
            let (min, max) = parse_quantifier(p, at)?;
            branches.last_mut()?.push(Piece { atom, min, max });
        }
        Some(Alternation(branches))
    }

    fn parse_atom(p: &[char], at: &mut usize) -> Option<Atom> {
        let ch = p[*at];
        *at += 1;
        Some(match ch {
            '.' => Atom::Any,
            '^' | '$' => Atom::Group(Box::new(Alternation(vec![Vec::new()]))),
            '(' => {
                if p.get(*at) == Some(&'?') && p.get(*at + 1) == Some(&':') {
                    *at += 2;
                }
                let inner = parse_alternation(p, at)?;
                if p.get(*at) != Some(&')') {
                    return None;
                }
                *at += 1;
                Atom::Group(Box::new(inner))
            }
            '[' => parse_class(p, at)?,
            '\\' => {
                let escaped = *p.get(*at)?;
                *at += 1;
                shorthand(escaped).unwrap_or(Atom::Char(escaped))
            }
            '*' | '+' | '?' | '{' | ')' => return None,
            other => Atom::Char(other),
        })
    }

    fn shorthand(ch: char) -> Option<Atom> {
        let (ranges, negated) = match ch {
            'd' => (vec![('0', '9')], false),
            'D' => (vec![('0', '9')], true),
            'w' => (vec![('a', 'z'), ('A', 'Z'), ('0', '9'), ('_', '_')], false),
            'W' => (vec![('a', 'z'), ('A', 'Z'), ('0', '9'), ('_', '_')], true),
            's' => (vec![(' ', ' '), ('\t', '\t'), ('\n', '\n'), ('\r', '\r')], false),
            'S' => (vec![(' ', ' '), ('\t', '\t'), ('\n', '\n'), ('\r', '\r')], true),
            _ => return None,
        };
        Some(Atom::Class { ranges, negated })
    }

    fn parse_class(p: &[char], at: &mut usize) -> Option<Atom> {
        let negated = p.get(*at) == Some(&'^');
        if negated {
            *at += 1;
        }
        let mut ranges = Vec::new();
        let mut first = true;
        loop {
            let ch = *p.get(*at)?;
            *at += 1;
            if ch == ']' && !first {
                break;
            }
            first = false;
            let low = if ch == '\\' {
                let escaped = *p.get(*at)?;
                *at += 1;
                if let Some(Atom::Class { ranges: more, negated: false }) = shorthand(escaped) {
                    ranges.extend(more);
                    continue;
                }
                escaped
            } else {
                ch
            };
            if p.get(*at) == Some(&'-') && p.get(*at + 1).is_some_and(|&c| c != ']') {
                let high = p[*at + 1];
                *at += 2;
                ranges.push((low, high));
            } else {
                ranges.push((low, low));
            }
        }
        Some(Atom::Class { ranges, negated })
    }

    fn parse_quantifier(p: &[char], at: &mut usize) -> Option<(u32, u32)> {
        let bounds = match p.get(*at) {
            Some('*') => (0, u32::MAX),
            Some('+') => (1, u32::MAX),
            Some('?') => (0, 1),
            Some('{') => {
                let close = p[*at..].iter().position(|&c| c == '}')? + *at;
                let inner: String = p[*at + 1..close].iter().collect();
                *at = close;
                match inner.split_once(',') {
                    None => {
                        let n = inner.trim().parse().ok()?;
                        (n, n)
                    }
                    Some((low, "")) => (low.trim().parse().ok()?, u32::MAX),
                    Some((low, high)) => (low.trim().parse().ok()?, high.trim().parse().ok()?),
                }
            }
            _ => return Some((1, 1)),
        };
        *at += 1;
        Some(bounds)
    }

    /// A continuation: what must match after a position, sharing the step budget.
    type Rest<'a> = &'a mut dyn FnMut(usize, &mut u32) -> bool;

    fn match_alternation(
        alternation: &Alternation,
        text: &[char],
        at: usize,
        steps: &mut u32,
        rest: Rest,
    ) -> bool {
        for branch in &alternation.0 {
            if match_pieces(branch, text, at, steps, rest) {
                return true;
            }
        }
        false
    }

    fn match_pieces(pieces: &[Piece], text: &[char], at: usize, steps: &mut u32, rest: Rest) -> bool {
        *steps += 1;
        if *steps > MAX_STEPS {
            return false;
        }
        let Some((piece, others)) = pieces.split_first() else { return rest(at, steps) };
        match_repeat(piece, 0, text, at, steps, &mut |end, steps| {
            match_pieces(others, text, end, steps, rest)
        })
    }

    /// Matches `piece` again (greedily, up to its maximum), or stops once its minimum is met
    /// and lets the continuation match.
    fn match_repeat(
        piece: &Piece,
        count: u32,
        text: &[char],
        at: usize,
        steps: &mut u32,
        rest: Rest,
    ) -> bool {
        *steps += 1;
        if *steps > MAX_STEPS {
            return false;
        }
        if count < piece.max {
            let matched = match_atom(&piece.atom, text, at, steps, &mut |end, steps| {
                if end == at {
                    // Repeating an empty match would loop forever; it can only complete the
                    // minimum (an anchor, an optional group).
                    count + 1 >= piece.min && rest(end, steps)
                } else {
                    match_repeat(piece, count + 1, text, end, steps, rest)
                }
            });
            if matched {
                return true;
            }
        }
        count >= piece.min && rest(at, steps)
    }

    fn match_atom(atom: &Atom, text: &[char], at: usize, steps: &mut u32, rest: Rest) -> bool {
        let hit = match atom {
            Atom::Group(inner) => return match_alternation(inner, text, at, steps, rest),
            Atom::Char(c) => text.get(at) == Some(c),
            Atom::Any => at < text.len(),
            Atom::Class { ranges, negated } => {
                text.get(at).is_some_and(|c| ranges.iter().any(|&(l, h)| l <= *c && *c <= h) != *negated)
            }
        };
        hit && rest(at + 1, steps)
    }

    #[cfg(test)]
    mod tests {
        use super::Regex;

        #[test]
        fn matches_whole_values() {
            let three_digits = Regex::new("[0-9]{3}").expect("pattern");
            assert!(three_digits.is_match("840"));
            assert!(!three_digits.is_match("84"));
            assert!(!three_digits.is_match("8400"));
            let letters = Regex::new("[A-Z]{3}").expect("pattern");
            assert!(letters.is_match("USA") && !letters.is_match("US1"));
            let alternation = Regex::new("(ab|c)+d?").expect("pattern");
            assert!(
                alternation.is_match("abcab") && alternation.is_match("ccd") && !alternation.is_match("abx")
            );
            assert!(Regex::new("E1[01]\\..*").expect("pattern").is_match("E11.9"));
            assert!(Regex::new("a{2,}").expect("pattern").is_match("aaa"));
            assert!(Regex::new("(a").is_none());
        }
    }
}
