//! The parser: positions, repetitions, escapes, nulls, line ends, delimiters and header checks.

mod common;

use common::*;
use hl7::{AckCode, ErrorCode, Location, Message, Value};

#[test]
fn msh_fields_are_numbered_from_the_field_separator() {
    let message = parse("adt_a01_spec.hl7");
    let msh = message.header();
    assert_eq!(msh.field(1).raw(), "|");
    assert_eq!(msh.field(2).raw(), "^~\\&");
    assert_eq!(msh.field(2).value(), Value::Text("^~\\&".to_string()));
    assert_eq!(msh.get(3, 1, 1, 1).as_deref(), Some("ADT1"));
    assert_eq!(msh.get(4, 1, 1, 1).as_deref(), Some("GOOD HEALTH HOSPITAL"));
    assert_eq!(msh.get(7, 1, 1, 1).as_deref(), Some("198808181126"));
    assert_eq!(message.message_type().as_deref(), Some("ADT"));
    assert_eq!(message.trigger_event().as_deref(), Some("A01"));
    assert_eq!(message.message_structure().as_deref(), Some("ADT_A01"));
    assert_eq!(message.control_id().as_deref(), Some("MSG00001"));
    assert_eq!(message.processing_id().as_deref(), Some("P"));
    assert_eq!(message.version().as_deref(), Some("2.5.1"));
}

#[test]
fn segments_are_found_by_id_and_know_their_occurrence() {
    let message = parse("adt_a01_spec.hl7");
    let ids: Vec<&str> = message.all_segments().iter().map(|s| s.id()).collect();
    assert_eq!(ids, ["MSH", "EVN", "PID", "NK1", "PV1"]);
    let pv1 = message.segment("PV1").unwrap();
    // The first PV1 of the message.
    assert_eq!(pv1.sequence(), 1);
    assert_eq!(message.segments("NK1").count(), 1);
    assert!(message.segment("OBX").is_none());
    // Beyond the end of a segment, and position 0, are simply empty.
    assert_eq!(pv1.field(200).value(), Value::Empty);
    assert_eq!(pv1.get(0, 1, 1, 1), None);
    assert_eq!(pv1.get(3, 0, 1, 1), None);
    assert_eq!(pv1.get(3, 1, 0, 1), None);
    assert_eq!(pv1.get(3, 1, 1, 0), None);
}

#[test]
fn repetitions_components_and_subcomponents() {
    let message = parse("adt_a28_repetitions.hl7");
    let pid = message.segment("PID").unwrap();
    let identifiers = pid.field(3).repetitions();
    assert_eq!(identifiers.len(), 4);
    assert_eq!(identifiers[1].text(1).as_deref(), Some("300003"));
    assert_eq!(identifiers[1].text(5).as_deref(), Some("MR"));
    // CX.4 of the fourth is an HD with subcomponents: &2.16.840.1.113883.19.5&ISO
    assert_eq!(pid.get(3, 4, 4, 1), None);
    assert_eq!(pid.get(3, 4, 4, 2).as_deref(), Some("2.16.840.1.113883.19.5"));
    assert_eq!(pid.get(3, 4, 4, 3).as_deref(), Some("ISO"));
    assert_eq!(pid.get(3, 5, 1, 1), None);
    let names = pid.field(5).repetitions();
    assert_eq!(names.len(), 3);
    assert_eq!(pid.get(5, 3, 1, 1).as_deref(), Some("JONES"));
    assert_eq!(pid.field(5).component(2).map(|c| c.value()), Some(Value::Text("ROBERT".to_string())));
}

#[test]
fn escapes_are_decoded_in_values_and_kept_in_raw_text() {
    let message = parse("adt_a31_escapes.hl7");
    let pid = message.segment("PID").unwrap();
    assert_eq!(pid.get(5, 1, 1, 1).as_deref(), Some("O^BRIEN&SONS"));
    assert_eq!(pid.get(5, 1, 2, 1).as_deref(), Some("ANNE~MARIE"));
    assert_eq!(pid.get(11, 1, 1, 1).as_deref(), Some("1|2 HIGH ST\\REAR\rUNIT 5"));
    assert_eq!(pid.get(11, 1, 2, 1).as_deref(), Some("LINE\nTWO"));
    assert_eq!(pid.field(5).raw(), "O\\S\\BRIEN\\T\\SONS^ANNE\\R\\MARIE");
    // An escaped delimiter splits nothing.
    assert_eq!(pid.field(5).repetitions().len(), 1);
    assert_eq!(pid.field(5).repetition(1).unwrap().components().len(), 2);
}

#[test]
fn explicit_null_is_told_apart_from_empty() {
    let message = parse("adt_a31_escapes.hl7");
    let pid = message.segment("PID").unwrap();
    assert_eq!(pid.value(7, 1, 1, 1), Value::Null);
    assert!(pid.value(7, 1, 1, 1).is_null());
    assert!(pid.field(7).is_null());
    assert_eq!(pid.value(9, 1, 1, 1), Value::Empty);
    assert!(!pid.field(9).is_null());
    assert_eq!(pid.get(7, 1, 1, 1), None);
}

#[test]
fn any_line_end_separates_segments() {
    let cr = load("adt_a01_spec.hl7");
    assert!(cr.contains('\r') && !cr.contains('\n'));
    let lf = cr.replace('\r', "\n");
    let crlf = cr.replace('\r', "\r\n");
    let expected = Message::parse(&cr).unwrap();
    assert_eq!(Message::parse(&lf).unwrap(), expected);
    assert_eq!(Message::parse(&crlf).unwrap(), expected);
    // The files written with LF and CRLF parse too.
    assert_eq!(parse("adt_a02.hl7").all_segments().len(), 4);
    assert_eq!(parse("adt_a04.hl7").all_segments().len(), 4);
}

#[test]
fn z_segments_are_kept_and_reachable() {
    let message = parse("adt_a28_repetitions.hl7");
    let zpi = message.segment("ZPI").unwrap();
    assert_eq!(zpi.sequence(), 1);
    assert_eq!(zpi.field_count(), 3);
    assert_eq!(zpi.get(2, 1, 1, 1).as_deref(), Some("VIP"));
}

#[test]
fn the_delimiters_are_the_ones_msh_declares() {
    let text = "MSH!@#$%!APP!FAC!!!20240101!!ADT@A28!C1!P!2.5.1\rPID!1!!123@@@GHH@MR#456@@@GHH@PI!!A$T$B@C%D";
    let message = Message::parse(text).unwrap();
    let separators = message.separators();
    assert_eq!(
        (
            separators.field,
            separators.component,
            separators.repetition,
            separators.escape,
            separators.subcomponent
        ),
        ('!', '@', Some('#'), Some('$'), Some('%'))
    );
    let pid = message.segment("PID").unwrap();
    assert_eq!(pid.field(3).repetitions().len(), 2);
    assert_eq!(pid.get(3, 2, 5, 1).as_deref(), Some("PI"));
    assert_eq!(pid.get(5, 1, 1, 1).as_deref(), Some("A%B"));
    assert_eq!(pid.get(5, 1, 2, 2).as_deref(), Some("D"));
    assert_eq!(message.trigger_event().as_deref(), Some("A28"));
}

fn parse_error(text: &str) -> hl7::Error {
    Message::parse(text).expect_err("should not parse")
}

#[test]
fn a_message_without_msh_is_rejected() {
    let error = error("bad_no_msh.hl7");
    assert_eq!(error.code(), ErrorCode::SegmentSequenceError);
    assert_eq!(error.location(), Some(&Location::segment("MSH", 1)));
    assert_eq!(error.ack_code(), AckCode::Reject);

    for empty in ["", "\r\n\r", "   "] {
        let error = parse_error(empty);
        assert_eq!(error.code(), ErrorCode::SegmentSequenceError);
        assert_eq!(error.location(), Some(&Location::segment("MSH", 1)));
    }
}

#[test]
fn msh_9_needs_type_and_trigger() {
    let error = error("bad_msh9.hl7");
    assert_eq!(error.code(), ErrorCode::RequiredFieldMissing);
    assert_eq!(error.location(), Some(&Location::field("MSH", 1, 9).with_component(2)));
    assert_eq!(error.ack_code(), AckCode::Reject);

    let error = parse_error("MSH|^~\\&|A|B|C|D|20240101||^A01|C1|P|2.5.1");
    assert_eq!(error.location(), Some(&Location::field("MSH", 1, 9).with_component(1)));
}

#[test]
fn control_id_and_version_are_required_and_checked() {
    let error = parse_error("MSH|^~\\&|A|B|C|D|20240101||ADT^A01||P|2.5.1");
    assert_eq!(
        (error.code(), error.location()),
        (ErrorCode::RequiredFieldMissing, Some(&Location::field("MSH", 1, 10)))
    );

    let error = parse_error("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|C1|P");
    assert_eq!(
        (error.code(), error.location()),
        (ErrorCode::RequiredFieldMissing, Some(&Location::field("MSH", 1, 12)))
    );

    for version in ["3.0", "2.2", "2.9", "V2.5"] {
        let error = parse_error(&format!("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|C1|P|{version}"));
        assert_eq!(error.code(), ErrorCode::UnsupportedVersionId, "{version}");
        assert_eq!(error.location(), Some(&Location::field("MSH", 1, 12)));
        assert_eq!(error.ack_code(), AckCode::Reject);
    }
    for version in ["2.3", "2.4", "2.5", "2.5.1", "2.6", "2.7.1", "2.8"] {
        assert!(
            Message::parse(&format!("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|C1|P|{version}")).is_ok(),
            "{version}"
        );
    }

    let error = parse_error("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|C1|X|2.5.1");
    assert_eq!(error.code(), ErrorCode::UnsupportedProcessingId);
}

#[test]
fn broken_structure_is_a_segment_sequence_error() {
    let error = parse_error("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|C1|P|2.5.1\rpid|1\r");
    assert_eq!(
        (error.code(), error.location()),
        (ErrorCode::SegmentSequenceError, Some(&Location::segment("pid", 1)))
    );

    let error = parse_error("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|C1|P|2.5.1\rMSH|^~\\&|A\r");
    assert_eq!(error.location(), Some(&Location::segment("MSH", 2)));

    let error = parse_error("MSHA^~\\&|x");
    assert_eq!(error.code(), ErrorCode::DataTypeError);

    let error = parse_error("MSH||");
    assert_eq!(error.code(), ErrorCode::RequiredFieldMissing);
    assert_eq!(error.location(), Some(&Location::field("MSH", 1, 2)));
}

#[test]
fn an_invalid_header_can_still_be_read_for_the_acknowledgement() {
    let text = load("bad_msh9.hl7");
    assert!(Message::parse(&text).is_err());
    let message = Message::parse_unvalidated(&text).unwrap();
    assert_eq!(message.control_id().as_deref(), Some("MSG00011"));
    assert_eq!(message.trigger_event(), None);
}

/// A small deterministic generator, so the no-panic test covers the same inputs every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[test]
fn no_input_makes_anything_panic() {
    let alphabet: Vec<char> =
        "|^~\\&\r\n\"XFSTRE.br0123456789AMSHPIDVOBRXNTEZ-+: éa\u{b}\u{1c}".chars().collect();
    let seeds =
        ["adt_a01_spec.hl7", "oru_r01.hl7", "adt_a28_repetitions.hl7", "adt_a40.hl7", "adt_a31_escapes.hl7"];
    let mut rng = Lcg(42);
    let config = config();
    for round in 0..3000 {
        let mut text: Vec<char> = load(seeds[round % seeds.len()]).chars().collect();
        // Mutate a valid message a little, so the header usually survives and mapping runs.
        for _ in 0..(1 + rng.next() % 6) {
            let at = (rng.next() as usize) % text.len().max(1);
            let c = alphabet[(rng.next() as usize) % alphabet.len()];
            match rng.next() % 3 {
                0 if at < text.len() => text[at] = c,
                1 => text.insert(at.min(text.len()), c),
                _ if at < text.len() => {
                    text.remove(at);
                }
                _ => {}
            }
        }
        let text: String = text.into_iter().collect();
        let outcome = Message::parse(&text);
        let message = Message::parse_unvalidated(&text).ok();
        let errors: Vec<hl7::ErrorDetail> = match &outcome {
            Ok(message) => match hl7::map(message, &config) {
                Ok(_) => Vec::new(),
                Err(error) => vec![(&error).into()],
            },
            Err(error) => vec![error.into()],
        };
        let ack = hl7::ack(message.as_ref(), AckCode::Error, &errors, ("CHARTROOM", "GHH"), "A1", "20240101");
        assert!(ack.starts_with("MSH|^~\\&|"));
        assert_eq!(ack.matches('\r').count(), 2 + errors.len(), "{ack:?}");
    }
}
