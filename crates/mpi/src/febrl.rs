//! The FEBRL linkage files: `rec_id,given_name,surname,street_number,address_1,address_2,
//! suburb,postcode,state,date_of_birth,soc_sec_id`, and true pairs `rec_id_1,rec_id_2`.

use std::collections::HashSet;
use std::path::Path;

use crate::person::{Person, digits, normalise, parse_birth};
use crate::{Error, Result};

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::Input(format!("cannot read {}: {e}", path.display())))
}

/// The columns of a header line, checked to hold `wanted`.
fn columns<'a>(path: &Path, header: &'a str, wanted: &[&str]) -> Result<Vec<&'a str>> {
    let columns: Vec<&str> = header.split(',').map(str::trim).collect();
    if let Some(missing) = wanted.iter().find(|w| !columns.contains(w)) {
        return Err(Error::Input(format!(
            "{}: no column '{missing}' in the header ({header})",
            path.display()
        )));
    }
    Ok(columns)
}

/// The people of a FEBRL file.
pub fn read_people(path: &Path) -> Result<Vec<Person>> {
    let text = read(path)?;
    let mut lines = text.lines();
    let header = lines.next().ok_or_else(|| Error::Input(format!("{} is empty", path.display())))?;
    let wanted = [
        "rec_id",
        "given_name",
        "surname",
        "street_number",
        "address_1",
        "suburb",
        "postcode",
        "state",
        "date_of_birth",
        "soc_sec_id",
    ];
    let names = columns(path, header, &wanted)?;
    let at = |name: &str| names.iter().position(|c| *c == name).unwrap_or(0);
    let index: Vec<usize> = wanted.iter().map(|w| at(w)).collect();
    let mut people = Vec::new();
    for (number, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if cells.len() != names.len() {
            return Err(Error::Input(format!(
                "{} line {}: {} fields, the header has {}",
                path.display(),
                number + 2,
                cells.len(),
                names.len()
            )));
        }
        let cell = |i: usize| cells[index[i]];
        let street = normalise(&format!("{} {}", cell(3), cell(4)));
        people.push(Person {
            id: cell(0).to_string(),
            given: normalise(cell(1)),
            family: normalise(cell(2)),
            street,
            city: normalise(cell(5)),
            postcode: digits(cell(6)),
            state: normalise(cell(7)),
            birth: parse_birth(cell(8)),
            national_id: digits(cell(9)),
            ..Person::default()
        });
    }
    Ok(people)
}

/// The true pairs, each as (smaller id, larger id).
pub fn read_pairs(path: &Path) -> Result<HashSet<(String, String)>> {
    let text = read(path)?;
    let mut lines = text.lines();
    let header = lines.next().ok_or_else(|| Error::Input(format!("{} is empty", path.display())))?;
    let names = columns(path, header, &["rec_id_1", "rec_id_2"])?;
    let (first, second) = (
        names.iter().position(|c| *c == "rec_id_1").unwrap_or(0),
        names.iter().position(|c| *c == "rec_id_2").unwrap_or(1),
    );
    let mut pairs = HashSet::new();
    for (number, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        let (Some(a), Some(b)) = (cells.get(first), cells.get(second)) else {
            return Err(Error::Input(format!("{} line {}: not two ids", path.display(), number + 2)));
        };
        let (a, b) = (a.to_string(), b.to_string());
        pairs.insert(if a < b { (a, b) } else { (b, a) });
    }
    Ok(pairs)
}
