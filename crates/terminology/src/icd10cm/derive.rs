//! Derivation of the committed ICD-10-CM table (`data/icd10cm-2026.tsv`) from the CDC's
//! tabular list XML, so the project embeds a few MB of plain lines instead of the 10 MB XML
//! and never parses XML at run time.
//!
//! The table keeps the hierarchy (chapters, blocks, categories, subdivisions with their
//! descriptions), every instructional note, and the seventh-character definitions; it drops
//! the introduction, the chapters' section indexes (which repeat the blocks) and the visual
//! impairment grid of H54. Whitespace inside texts is collapsed to single spaces.
//!
//! Seventh-character codes are not listed: the loader generates them from the definitions, as
//! the tabular list itself does.

use std::fmt::Write as _;

use roxmltree::Node;

use super::NoteKind;
use crate::Error;

/// Seventh-character exceptions that the tabular list states only in prose. Each is checked
/// against the note that states it, so a source update that rewords or drops the note fails
/// the derivation instead of silently generating codes the CDC does not list.
struct SeventhCharacterException {
    category: &'static str,
    /// The sixth characters (of the code without its dot) of the leaves concerned.
    sixth_characters: &'static str,
    excluded: &'static str,
    stated_by: &'static str,
}

const SEVENTH_CHARACTER_EXCEPTIONS: &[SeventhCharacterException] = &[SeventhCharacterException {
    category: "S06",
    sixth_characters: "78",
    excluded: "DS",
    stated_by: "7th characters D and S do not apply to codes in category S06 with 6th character 7",
}];

/// Elements the table deliberately leaves out.
const DROPPED: &[&str] = &["sectionIndex", "visualImpairment"];

/// Derives the table from the text of the tabular list XML (`icd10cm-tabular-*.xml`).
pub fn derive_table(xml: &str) -> Result<String, Error> {
    let document =
        roxmltree::Document::parse(xml).map_err(|e| Error::Format(format!("ICD-10-CM tabular XML: {e}")))?;
    let root = document.root_element();
    if root.tag_name().name() != "ICD10CM.tabular" {
        return Err(Error::Format(format!(
            "expected an ICD10CM.tabular document, found <{}>",
            root.tag_name().name()
        )));
    }
    let version = text(child(root, "version")?)?;
    let mut writer = Writer { out: String::with_capacity(6 << 20), exceptions_seen: Vec::new() };
    writer.header(&version);
    for chapter in elements(root).filter(|e| e.tag_name().name() == "chapter") {
        writer.chapter(chapter)?;
    }
    for exception in SEVENTH_CHARACTER_EXCEPTIONS {
        if !writer.exceptions_seen.contains(&exception.category) {
            return Err(Error::Format(format!(
                "category {} with its seventh-character exception is missing",
                exception.category
            )));
        }
    }
    Ok(writer.out)
}

struct Writer {
    out: String,
    exceptions_seen: Vec<&'static str>,
}

impl Writer {
    fn header(&mut self, version: &str) {
        let lines = [
            format!(
                "ICD-10-CM tabular list, version {version} (CDC/NCHS, public domain), derived from \
                 its tabular XML; see PROVENANCE.md"
            ),
            "Regenerate with `cargo run -p chartroom-terminology --bin icd10gen [XML]`; do not edit"
                .to_owned(),
            "Lines, tab-separated, in tabular order:".to_owned(),
            "  version <version>".to_owned(),
            "  <depth> <code> <description>: a node; depth 0 chapter, 1 block, 2 category, 3+ \
             subdivision"
                .to_owned(),
            "  <note kind> <text>: a note declared on the node above (kinds named as the XML \
             elements)"
                .to_owned(),
            "  sevenChrDef <character> <definition>: a seventh character for the leaves below \
             the node above"
                .to_owned(),
            "  sevenChrDefNote <text>: an inclusion term of the seventh character above".to_owned(),
            "  sevenChrOnly <characters>: the only seventh characters that apply to the leaf \
             above"
                .to_owned(),
        ];
        for line in lines {
            let _ = writeln!(self.out, "# {line}");
        }
        let _ = writeln!(self.out, "version\t{version}");
    }

    fn chapter(&mut self, chapter: Node) -> Result<(), Error> {
        self.node(0, &text(child(chapter, "name")?)?, &text(child(chapter, "desc")?)?);
        for element in elements(chapter) {
            match element.tag_name().name() {
                "name" | "desc" => {}
                "section" => self.block(element)?,
                name => self.note_or_dropped(element, name)?,
            }
        }
        Ok(())
    }

    fn block(&mut self, section: Node) -> Result<(), Error> {
        let id = section
            .attribute("id")
            .ok_or_else(|| Error::Format(format!("a section without an id near {}", at(section))))?;
        self.node(1, id, &text(child(section, "desc")?)?);
        for element in elements(section) {
            match element.tag_name().name() {
                "desc" => {}
                "diag" => self.diag(element, 2, None)?,
                name => self.note_or_dropped(element, name)?,
            }
        }
        Ok(())
    }

    /// One diag and its subtree; `inherited` is the seventh characters of the nearest ancestor
    /// defining them.
    fn diag(&mut self, diag: Node, depth: usize, inherited: Option<&str>) -> Result<(), Error> {
        let code = text(child(diag, "name")?)?;
        self.node(depth, &code, &text(child(diag, "desc")?)?);
        let mut own: Option<String> = None;
        let mut children = Vec::new();
        for element in elements(diag) {
            match element.tag_name().name() {
                "name" | "desc" => {}
                "diag" => children.push(element),
                "sevenChrDef" => own = Some(self.seventh_characters(element)?),
                name => self.note_or_dropped(element, name)?,
            }
        }
        if depth == 2 {
            self.check_exception(diag, &code)?;
        }
        let effective = own.as_deref().or(inherited);
        if children.is_empty()
            && let Some(characters) = effective
        {
            self.restrict(&code, characters);
        }
        for child in children {
            self.diag(child, depth + 1, effective)?;
        }
        Ok(())
    }

    /// Writes the definitions and returns the characters defined.
    fn seventh_characters(&mut self, definition: Node) -> Result<String, Error> {
        let mut characters = String::new();
        for element in elements(definition) {
            match element.tag_name().name() {
                "extension" => {
                    let character = element
                        .attribute("char")
                        .filter(|c| c.len() == 1 && c.bytes().all(|b| b.is_ascii_alphanumeric()))
                        .ok_or_else(|| {
                            Error::Format(format!("a seventh character without a char near {}", at(element)))
                        })?;
                    characters.push_str(character);
                    self.line(&["sevenChrDef", character, &text(element)?]);
                }
                // In the source these are inclusion terms of the character listed just before.
                "note" if !characters.is_empty() => {
                    self.line(&["sevenChrDefNote", &text(element)?]);
                }
                name => {
                    return Err(Error::Format(format!(
                        "unexpected <{name}> in sevenChrDef near {}",
                        at(element)
                    )));
                }
            }
        }
        Ok(characters)
    }

    fn check_exception(&mut self, category: Node, code: &str) -> Result<(), Error> {
        let Some(exception) = SEVENTH_CHARACTER_EXCEPTIONS.iter().find(|e| e.category == code) else {
            return Ok(());
        };
        let stated = elements(category)
            .filter(|e| e.tag_name().name() == "notes")
            .flat_map(elements)
            .any(|note| note.text().is_some_and(|t| t.contains(exception.stated_by)));
        if !stated {
            return Err(Error::Format(format!(
                "category {code} no longer states its seventh-character exception \"{}\"",
                exception.stated_by
            )));
        }
        self.exceptions_seen.push(exception.category);
        Ok(())
    }

    fn restrict(&mut self, code: &str, characters: &str) {
        let dotless: Vec<u8> = code.bytes().filter(|&b| b != b'.').collect();
        for exception in SEVENTH_CHARACTER_EXCEPTIONS {
            let applies = dotless.starts_with(exception.category.as_bytes())
                && dotless
                    .get(5)
                    .is_some_and(|&sixth| exception.sixth_characters.as_bytes().contains(&sixth));
            if applies {
                let only: String = characters.chars().filter(|c| !exception.excluded.contains(*c)).collect();
                self.line(&["sevenChrOnly", &only]);
            }
        }
    }

    fn note_or_dropped(&mut self, element: Node, name: &str) -> Result<(), Error> {
        if DROPPED.contains(&name) {
            return Ok(());
        }
        let Some(kind) = NoteKind::from_source_name(name) else {
            return Err(Error::Format(format!("unexpected <{name}> near {}", at(element))));
        };
        for note in elements(element) {
            if note.tag_name().name() != "note" {
                return Err(Error::Format(format!("unexpected <{}> in <{name}>", note.tag_name().name())));
            }
            self.line(&[kind.source_name(), &text(note)?]);
        }
        Ok(())
    }

    fn node(&mut self, depth: usize, code: &str, description: &str) {
        let depth = depth.to_string();
        self.line(&[&depth, code, description]);
    }

    fn line(&mut self, fields: &[&str]) {
        self.out.push_str(&fields.join("\t"));
        self.out.push('\n');
    }
}

fn elements<'a, 'input>(node: Node<'a, 'input>) -> impl Iterator<Item = Node<'a, 'input>> {
    node.children().filter(|n| n.is_element())
}

fn child<'a, 'input>(node: Node<'a, 'input>, name: &str) -> Result<Node<'a, 'input>, Error> {
    elements(node).find(|e| e.tag_name().name() == name).ok_or_else(|| {
        Error::Format(format!("<{}> without <{name}> near {}", node.tag_name().name(), at(node)))
    })
}

/// The element's text with whitespace runs collapsed; tabs and line breaks cannot reach the
/// table, and the source's stray indentation inside some notes carries no meaning.
fn text(element: Node) -> Result<String, Error> {
    let collapsed = element.text().unwrap_or("").split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.is_empty() {
        return Err(Error::Format(format!("empty <{}> near {}", element.tag_name().name(), at(element))));
    }
    Ok(collapsed)
}

/// Where an element is, for error messages: the nearest enclosing code.
fn at(node: Node) -> String {
    node.ancestors()
        .find_map(|a| {
            let name = elements(a).find(|e| e.tag_name().name() == "name")?;
            name.text().map(str::to_owned)
        })
        .unwrap_or_else(|| format!("byte {}", node.range().start))
}
