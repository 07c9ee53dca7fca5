//! Deterministic resource ids: the same patient, visit or result always gets the same id, so
//! a message sent twice updates instead of duplicating.
//!
//! An id is "v2-" and 16 hex digits of a 64-bit FNV-1a hash over the parts that identify the
//! thing, each part followed by a unit separator (so ("ab","c") and ("a","bc") differ). That
//! is 19 characters of `[a-z0-9-]`, a valid FHIR id. A collision needs two different keys with
//! the same 64-bit hash; across the identifiers of one hospital that is vanishingly unlikely.

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(parts: &[&str]) -> u64 {
    let mut hash = FNV_OFFSET;
    for part in parts {
        for byte in part.bytes().chain(std::iter::once(0x1f)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(FNV_PRIME);
        }
    }
    hash
}

fn id(parts: &[&str]) -> String {
    format!("v2-{:016x}", fnv1a(parts))
}

/// The Patient id for a patient identifier (system, value).
pub fn patient_id(system: &str, value: &str) -> String {
    id(&["Patient", system, value])
}

/// The Encounter id for a visit of a patient. `visit` is what identifies the visit within the
/// patient: the visit number's system and value, or the admission time when there is no number.
pub fn encounter_id(patient_id: &str, visit_system: &str, visit: &str) -> String {
    id(&["Encounter", patient_id, visit_system, visit])
}

/// The DiagnosticReport id for an order number (system, value).
pub fn report_id(system: &str, value: &str) -> String {
    id(&["DiagnosticReport", system, value])
}

/// The Observation id for one OBX of a report: its set id (OBX-1) and sub-id (OBX-4).
pub fn observation_id(report_id: &str, set_id: &str, sub_id: &str) -> String {
    id(&["Observation", report_id, set_id, sub_id])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_reference_values() {
        // The published FNV-1a 64 test vectors, for the empty string and "a" (no separator).
        let raw = |s: &str| s.bytes().fold(FNV_OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(FNV_PRIME));
        assert_eq!(raw(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(raw("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(raw("foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = patient_id("http://hospital.example.org/mrn", "123");
        assert_eq!(a, patient_id("http://hospital.example.org/mrn", "123"));
        assert_ne!(a, patient_id("http://hospital.example.org/mrn", "124"));
        assert_ne!(id(&["ab", "c"]), id(&["a", "bc"]));
        assert_eq!(a.len(), 19);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    }
}
