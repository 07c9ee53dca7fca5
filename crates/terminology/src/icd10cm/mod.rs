//! ICD-10-CM, the US clinical modification of ICD-10 (CDC/NCHS, FY2026 tabular list, April 1
//! 2026 update), as a tree of chapters, blocks, categories and codes in tabular order.
//!
//! The model is built once from the table embedded in the binary (see [`derive`] for how that
//! table is made). Nodes sit in an arena in pre-order, so a node's descendants are the
//! contiguous run after it: descendant listing and subsumption tests need no search.
//!
//! Seventh-character codes (S72.001A, T36.0X1A) are generated at load from the
//! seventh-character definitions, as the tabular list prescribes: a definition applies to every
//! leaf below the node declaring it unless a nearer node declares its own, and the leaf's code
//! is padded with the placeholder `X` to six characters before the seventh is appended.

pub mod demographics;
pub mod derive;
mod references;

use std::fmt;
use std::sync::OnceLock;

use rustc_hash::FxHashMap;

pub use references::{CodeRange, parse_references};

use crate::Error;

/// The FHIR code system URI of ICD-10-CM.
pub const SYSTEM: &str = "http://hl7.org/fhir/sid/icd-10-cm";

const EMBEDDED_TABLE: &str = include_str!("../../data/icd10cm-2026.tsv");

/// What level of the classification a concept is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// "1" to "22".
    Chapter,
    /// A range of categories ("A00-A09"); a few blocks hold a single category and carry its
    /// code ("B10").
    Block,
    /// A three-character code ("E11").
    Category,
    /// Any code below a category, including generated seventh-character codes.
    Code,
}

impl Kind {
    /// Whether this is a diagnosis code (a category or a subdivision) rather than a grouping.
    pub fn is_code(self) -> bool {
        matches!(self, Kind::Category | Kind::Code)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Chapter => "chapter",
            Kind::Block => "block",
            Kind::Category => "category",
            Kind::Code => "code",
        }
    }
}

/// The kinds of instructional note of the tabular list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoteKind {
    InclusionTerm,
    Includes,
    Excludes1,
    Excludes2,
    CodeFirst,
    UseAdditionalCode,
    CodeAlso,
    /// A plain note (`<notes>` in the source).
    Note,
    /// The statement that a seventh character is required ("The appropriate 7th character is
    /// to be added to ...").
    SevenCharacterNote,
}

impl NoteKind {
    pub const ALL: [NoteKind; 9] = [
        NoteKind::InclusionTerm,
        NoteKind::Includes,
        NoteKind::Excludes1,
        NoteKind::Excludes2,
        NoteKind::CodeFirst,
        NoteKind::UseAdditionalCode,
        NoteKind::CodeAlso,
        NoteKind::Note,
        NoteKind::SevenCharacterNote,
    ];

    /// The name of the source's XML element, which the embedded table also uses.
    pub fn source_name(self) -> &'static str {
        match self {
            NoteKind::InclusionTerm => "inclusionTerm",
            NoteKind::Includes => "includes",
            NoteKind::Excludes1 => "excludes1",
            NoteKind::Excludes2 => "excludes2",
            NoteKind::CodeFirst => "codeFirst",
            NoteKind::UseAdditionalCode => "useAdditionalCode",
            NoteKind::CodeAlso => "codeAlso",
            NoteKind::Note => "notes",
            NoteKind::SevenCharacterNote => "sevenChrNote",
        }
    }

    pub fn from_source_name(name: &str) -> Option<NoteKind> {
        NoteKind::ALL.into_iter().find(|kind| kind.source_name() == name)
    }
}

/// One instructional note, with the code references its text makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub kind: NoteKind,
    pub text: String,
    references: Vec<CodeRange>,
}

impl Note {
    pub fn new(kind: NoteKind, text: impl Into<String>) -> Note {
        let text = text.into();
        let references = parse_references(&text);
        Note { kind, text, references }
    }

    /// The codes the text refers to, such as E08.- and E13.- in "diabetes mellitus due to
    /// underlying condition (E08.-)"; qualifiers such as "with fifth character 2" are not kept.
    pub fn references(&self) -> &[CodeRange] {
        &self.references
    }
}

/// A slice of the model's text buffer.
#[derive(Clone, Copy)]
struct Span {
    start: u32,
    length: u32,
}

const NO_PARENT: u32 = u32::MAX;

struct Node {
    code: Span,
    display: Span,
    parent: u32,
    /// One past the last descendant, in the arena.
    end: u32,
    notes_start: u32,
    notes_end: u32,
    kind: Kind,
    /// For generated codes, their seventh character.
    seventh: Option<char>,
    billable: bool,
}

/// The ICD-10-CM classification.
pub struct Icd10Cm {
    version: String,
    text: String,
    nodes: Vec<Node>,
    notes: Vec<Note>,
    /// Codes without their dot, packed into a `u64`, to arena positions.
    index: FxHashMap<u64, u32>,
    billable_count: usize,
}

impl fmt::Debug for Icd10Cm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Icd10Cm")
            .field("version", &self.version)
            .field("concepts", &self.nodes.len())
            .field("billable", &self.billable_count)
            .finish()
    }
}

impl Icd10Cm {
    /// The classification embedded in the binary, loaded on first use.
    pub fn get() -> &'static Icd10Cm {
        static MODEL: OnceLock<Icd10Cm> = OnceLock::new();
        MODEL.get_or_init(|| {
            Icd10Cm::parse(EMBEDDED_TABLE)
                .expect("the embedded ICD-10-CM table is malformed: regenerate it with icd10gen")
        })
    }

    /// Builds the model from a table made by [`derive::derive_table`].
    pub fn parse(table: &str) -> Result<Icd10Cm, Error> {
        Loader::default().load(table)
    }

    /// The fiscal year of the release ("2026").
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The concept with this code: "S72.001A" or "S72001A" in any case, a chapter number
    /// ("19") or a block ("A00-A09"). A block holding a single category shares its code, and
    /// that code finds the category; the block is also found as "B10-B10".
    pub fn lookup(&self, code: &str) -> Option<Concept<'_>> {
        let key = lookup_key(code)?;
        self.index.get(&key).map(|&index| Concept { model: self, index })
    }

    /// The concept at a position in tabular order.
    pub fn concept(&self, index: usize) -> Option<Concept<'_>> {
        (index < self.nodes.len()).then_some(Concept { model: self, index: index as u32 })
    }

    /// Every concept in tabular (pre-)order: chapter, its blocks, each followed by its
    /// categories and their subtrees.
    pub fn concepts(&self) -> impl Iterator<Item = Concept<'_>> {
        (0..self.nodes.len() as u32).map(move |index| Concept { model: self, index })
    }

    pub fn chapters(&self) -> impl Iterator<Item = Concept<'_>> {
        let first = (!self.nodes.is_empty()).then_some(0);
        std::iter::successors(first, move |&index: &u32| {
            let next = self.nodes[index as usize].end;
            ((next as usize) < self.nodes.len()).then_some(next)
        })
        .map(move |index| Concept { model: self, index })
    }

    /// The number of concepts, chapters and blocks included.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The number of codes valid for submission.
    pub fn billable_count(&self) -> usize {
        self.billable_count
    }

    fn node(&self, index: u32) -> &Node {
        &self.nodes[index as usize]
    }

    fn slice(&self, span: Span) -> &str {
        &self.text[span.start as usize..(span.start + span.length) as usize]
    }
}

/// One node of the classification.
#[derive(Clone, Copy)]
pub struct Concept<'a> {
    model: &'a Icd10Cm,
    index: u32,
}

impl<'a> Concept<'a> {
    /// The code as written in the tabular list: "S72.001A", chapter "19", block "S70-S79".
    pub fn code(&self) -> &'a str {
        self.model.slice(self.node().code)
    }

    pub fn kind(&self) -> Kind {
        self.node().kind
    }

    /// The description; for a seventh-character code, the extended code's description, a
    /// comma and the character's definition.
    pub fn display(&self) -> &'a str {
        self.model.slice(self.node().display)
    }

    /// Whether the code is valid for submission: a category or code with no subdivision,
    /// counting generated seventh-character codes as subdivisions.
    pub fn billable(&self) -> bool {
        self.node().billable
    }

    /// The position in tabular order.
    pub fn index(&self) -> usize {
        self.index as usize
    }

    pub fn parent(&self) -> Option<Concept<'a>> {
        let parent = self.node().parent;
        (parent != NO_PARENT).then_some(Concept { model: self.model, index: parent })
    }

    pub fn children(&self) -> impl Iterator<Item = Concept<'a>> + use<'a> {
        let (model, end) = (self.model, self.node().end);
        let first = self.index + 1;
        std::iter::successors((first < end).then_some(first), move |&index: &u32| {
            let next = model.node(index).end;
            (next < end).then_some(next)
        })
        .map(move |index| Concept { model, index })
    }

    /// Parent, grandparent, ... up to the chapter.
    pub fn ancestors(&self) -> impl Iterator<Item = Concept<'a>> + use<'a> {
        std::iter::successors(self.parent(), Concept::parent)
    }

    /// Every concept below this one, in tabular order.
    pub fn descendants(&self) -> impl Iterator<Item = Concept<'a>> + use<'a> {
        let model = self.model;
        (self.index + 1..self.node().end).map(move |index| Concept { model, index })
    }

    /// Whether this concept lies strictly below `ancestor`.
    pub fn is_descendant_of(&self, ancestor: Concept<'_>) -> bool {
        let ancestor = if std::ptr::eq(self.model, ancestor.model) {
            ancestor.index
        } else {
            match self.model.lookup(ancestor.code()) {
                Some(found) if found.kind() == ancestor.kind() => found.index,
                // A single-category block shares its category's code.
                Some(found) if ancestor.kind() == Kind::Block => found.node().parent,
                _ => return false,
            }
        };
        ancestor < self.index && self.index < self.model.node(ancestor).end
    }

    /// The notes declared on this concept.
    pub fn own_notes(&self) -> &'a [Note] {
        let node = self.node();
        &self.model.notes[node.notes_start as usize..node.notes_end as usize]
    }

    /// The notes that apply to this concept: its own, then those of each ancestor, nearest
    /// first, each with the concept declaring it.
    pub fn notes(&self) -> impl Iterator<Item = (Concept<'a>, &'a Note)> + use<'a> {
        std::iter::once(*self)
            .chain(self.ancestors())
            .flat_map(|declaring| declaring.own_notes().iter().map(move |note| (declaring, note)))
    }

    /// The seventh character of a generated seventh-character code.
    pub fn seventh_character(&self) -> Option<char> {
        self.node().seventh
    }

    fn node(&self) -> &'a Node {
        self.model.node(self.index)
    }
}

impl fmt::Debug for Concept<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Concept")
            .field("code", &self.code())
            .field("kind", &self.kind())
            .field("display", &self.display())
            .finish()
    }
}

impl PartialEq for Concept<'_> {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.model, other.model) && self.index == other.index
    }
}

impl Eq for Concept<'_> {}

impl std::hash::Hash for Concept<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.index.hash(state);
    }
}

/// A code without its dot, upper-cased and packed into a `u64`; None when it cannot be one.
fn lookup_key(code: &str) -> Option<u64> {
    let code = code.trim().as_bytes();
    // The dot may only follow the category and must be followed by something.
    let dotted = code.len() > 4 && code[3] == b'.';
    let mut key = 0u64;
    let mut length = 0;
    for (position, &byte) in code.iter().enumerate() {
        if dotted && position == 3 {
            continue;
        }
        if !(byte.is_ascii_alphanumeric() || byte == b'-') || length == 8 {
            return None;
        }
        key = key << 8 | u64::from(byte.to_ascii_uppercase());
        length += 1;
    }
    (length > 0).then_some(key)
}

fn before_first_node() -> Error {
    Error::Format("a note or seventh character before the first node".into())
}

/// A seventh-character definition being read.
struct SeventhCharacter {
    character: char,
    definition: String,
    inclusions_start: u32,
    inclusions_end: u32,
}

/// A node whose subtree is still being read.
struct Open {
    index: u32,
    /// The seventh-character definition in force (the node's own or inherited).
    seventh: Option<usize>,
    declares_seventh: bool,
    /// Characters a leaf is restricted to.
    only: Option<String>,
}

#[derive(Default)]
struct Loader {
    version: Option<String>,
    text: String,
    nodes: Vec<Node>,
    notes: Vec<Note>,
    index: FxHashMap<u64, u32>,
    definitions: Vec<Vec<SeventhCharacter>>,
    open: Vec<Open>,
}

impl Loader {
    fn load(mut self, table: &str) -> Result<Icd10Cm, Error> {
        self.text.reserve(table.len() * 2);
        self.nodes.reserve(100_000);
        self.notes.reserve(30_000);
        self.index.reserve(100_000);
        for (number, line) in table.lines().enumerate() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            self.line(line).map_err(|e| match e {
                Error::Format(message) => {
                    Error::Format(format!("ICD-10-CM table line {}: {message}", number + 1))
                }
                other => other,
            })?;
        }
        self.close(0)?;
        let version =
            self.version.ok_or_else(|| Error::Format("ICD-10-CM table without a version".into()))?;
        let mut billable_count = 0;
        for (position, node) in self.nodes.iter_mut().enumerate() {
            node.billable = node.kind.is_code() && node.end as usize == position + 1;
            billable_count += usize::from(node.billable);
        }
        Ok(Icd10Cm {
            version,
            text: self.text,
            nodes: self.nodes,
            notes: self.notes,
            index: self.index,
            billable_count,
        })
    }

    fn line(&mut self, line: &str) -> Result<(), Error> {
        let (tag, rest) =
            line.split_once('\t').ok_or_else(|| Error::Format(format!("no tab in {line:?}")))?;
        if let Ok(depth) = tag.parse::<usize>() {
            let (code, display) = rest
                .split_once('\t')
                .ok_or_else(|| Error::Format(format!("node without a description: {line:?}")))?;
            return self.node(depth, code, display);
        }
        match tag {
            "version" => {
                self.version = Some(rest.to_owned());
                Ok(())
            }
            "sevenChrDef" => {
                let (character, definition) = rest.split_once('\t').ok_or_else(|| {
                    Error::Format(format!("seventh character without a definition: {line:?}"))
                })?;
                let mut characters = character.chars();
                let (Some(character), None) = (characters.next(), characters.next()) else {
                    return Err(Error::Format(format!("not a single seventh character: {character:?}")));
                };
                let open = self.open.last_mut().ok_or_else(before_first_node)?;
                if !open.declares_seventh {
                    open.declares_seventh = true;
                    open.seventh = Some(self.definitions.len());
                    self.definitions.push(Vec::new());
                }
                let position = self.notes.len() as u32;
                let definition = SeventhCharacter {
                    character,
                    definition: definition.to_owned(),
                    inclusions_start: position,
                    inclusions_end: position,
                };
                self.definitions
                    .last_mut()
                    .ok_or_else(|| Error::Format("no definition".into()))?
                    .push(definition);
                Ok(())
            }
            "sevenChrDefNote" => {
                let declares = self.current()?.declares_seventh;
                let character = self.definitions.last_mut().and_then(|d| d.last_mut()).filter(|_| declares);
                let Some(character) = character else {
                    return Err(Error::Format(
                        "a seventh-character inclusion term without its character".into(),
                    ));
                };
                if character.inclusions_end as usize != self.notes.len() {
                    return Err(Error::Format(
                        "seventh-character inclusion terms must follow their character".into(),
                    ));
                }
                character.inclusions_end += 1;
                self.notes.push(Note::new(NoteKind::InclusionTerm, rest));
                Ok(())
            }
            "sevenChrOnly" => {
                self.current()?.only = Some(rest.to_owned());
                Ok(())
            }
            tag => {
                let kind = NoteKind::from_source_name(tag)
                    .ok_or_else(|| Error::Format(format!("unknown line kind {tag:?}")))?;
                let index = self.current()?.index;
                let node = &mut self.nodes[index as usize];
                if node.notes_end as usize != self.notes.len() {
                    return Err(Error::Format("a node's notes must precede its seventh characters".into()));
                }
                node.notes_end += 1;
                self.notes.push(Note::new(kind, rest));
                Ok(())
            }
        }
    }

    fn current(&mut self) -> Result<&mut Open, Error> {
        self.open.last_mut().ok_or_else(before_first_node)
    }

    fn node(&mut self, depth: usize, code: &str, display: &str) -> Result<(), Error> {
        if self.version.is_none() {
            return Err(Error::Format("a node before the version line".into()));
        }
        if depth > self.open.len() {
            return Err(Error::Format(format!("{code} at depth {depth} has no parent")));
        }
        self.close(depth)?;
        let kind = match depth {
            0 => Kind::Chapter,
            1 => Kind::Block,
            2 => Kind::Category,
            _ => Kind::Code,
        };
        let parent = self.open.last();
        let seventh = parent.and_then(|p| p.seventh);
        let parent = parent.map_or(NO_PARENT, |p| p.index);
        let index = self.push_node(kind, code, display, parent, None)?;
        if kind == Kind::Block && !code.contains('-') {
            // The category of a single-category block takes the shared code; keep the block
            // reachable under an explicit range.
            let key = lookup_key(&format!("{code}-{code}"))
                .ok_or_else(|| Error::Format(format!("not a block code: {code}")))?;
            self.index.insert(key, index);
        }
        self.open.push(Open { index, seventh, declares_seventh: false, only: None });
        Ok(())
    }

    /// Ends the subtrees of open nodes at `depth` and below, generating the seventh-character
    /// codes of a leaf that has a definition in force.
    fn close(&mut self, depth: usize) -> Result<(), Error> {
        while self.open.len() > depth {
            let Some(open) = self.open.pop() else { break };
            let leaf = self.nodes.len() == open.index as usize + 1;
            if let (true, Some(definition)) = (leaf, open.seventh) {
                self.generate(&open, definition)?;
            }
            self.nodes[open.index as usize].end = self.nodes.len() as u32;
        }
        Ok(())
    }

    fn generate(&mut self, leaf: &Open, definition: usize) -> Result<(), Error> {
        let node = &self.nodes[leaf.index as usize];
        let (code_span, display_span) = (node.code, node.display);
        let span = |s: Span| s.start as usize..(s.start + s.length) as usize;
        let mut base: String = self.text[span(code_span)].chars().filter(|&c| c != '.').collect();
        if base.len() > 6 {
            return Err(Error::Format(format!("{base} has seven characters and cannot take a seventh")));
        }
        while base.len() < 6 {
            base.push('X');
        }
        let display = self.text[span(display_span)].to_owned();
        for position in 0..self.definitions[definition].len() {
            let seventh = &self.definitions[definition][position];
            if leaf.only.as_deref().is_some_and(|only| !only.contains(seventh.character)) {
                continue;
            }
            let code = format!("{}.{}{}", &base[..3], &base[3..], seventh.character);
            let display = format!("{display}, {}", seventh.definition);
            let notes = (seventh.inclusions_start, seventh.inclusions_end);
            let character = seventh.character;
            let index = self.push_node(Kind::Code, &code, &display, leaf.index, Some(character))?;
            let node = &mut self.nodes[index as usize];
            (node.notes_start, node.notes_end) = notes;
            node.end = index + 1;
        }
        Ok(())
    }

    fn push_node(
        &mut self,
        kind: Kind,
        code: &str,
        display: &str,
        parent: u32,
        seventh: Option<char>,
    ) -> Result<u32, Error> {
        let key = lookup_key(code).ok_or_else(|| Error::Format(format!("not a code: {code:?}")))?;
        let index = self.nodes.len() as u32;
        let code = self.push_text(code);
        let display = self.push_text(display);
        let notes = self.notes.len() as u32;
        self.nodes.push(Node {
            code,
            display,
            parent,
            end: index + 1,
            notes_start: notes,
            notes_end: notes,
            kind,
            seventh,
            billable: false,
        });
        self.index.insert(key, index);
        Ok(index)
    }

    fn push_text(&mut self, text: &str) -> Span {
        let start = self.text.len() as u32;
        self.text.push_str(text);
        Span { start, length: text.len() as u32 }
    }
}
