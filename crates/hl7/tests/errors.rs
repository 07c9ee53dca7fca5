//! Messages that parse but cannot be mapped: the code, the place and the acknowledgement.

mod common;

use common::*;
use hl7::{AckCode, ErrorCode, Location, Message};

fn map_error(text: &str) -> hl7::Error {
    hl7::map(&Message::parse(text).unwrap(), &config()).expect_err("should not map")
}

#[test]
fn missing_pid_3_is_a_required_field_error_at_pid_3() {
    let error = error("bad_missing_pid3.hl7");
    assert_eq!(error.code(), ErrorCode::RequiredFieldMissing);
    assert_eq!(error.location(), Some(&Location::field("PID", 1, 3)));
    assert_eq!(error.ack_code(), AckCode::Error);
}

#[test]
fn a01_without_pv1_is_missing_a_required_segment() {
    let error = error("bad_missing_pv1.hl7");
    assert_eq!(error.code(), ErrorCode::SegmentSequenceError);
    assert_eq!(error.location(), Some(&Location::segment("PV1", 1)));
    assert_eq!(error.ack_code(), AckCode::Error);
}

#[test]
fn an_impossible_birth_date_is_a_data_type_error_at_pid_7() {
    let error = error("bad_birth_date.hl7");
    assert_eq!(error.code(), ErrorCode::DataTypeError);
    assert_eq!(error.location(), Some(&Location::field("PID", 1, 7).with_component(1)));
    assert_eq!(error.ack_code(), AckCode::Error);
}

#[test]
fn an_unsupported_event_is_rejected() {
    let error = error("bad_event_a99.hl7");
    assert_eq!(error.code(), ErrorCode::UnsupportedEventCode);
    assert_eq!(error.location(), Some(&Location::field("MSH", 1, 9).with_component(2)));
    assert_eq!(error.ack_code(), AckCode::Reject);
}

#[test]
fn an_unsupported_message_type_is_rejected() {
    let error = map_error("MSH|^~\\&|A|B|C|D|20240101||SIU^S12^SIU_S12|C1|P|2.5.1\r");
    assert_eq!(error.code(), ErrorCode::UnsupportedMessageType);
    assert_eq!(error.location(), Some(&Location::field("MSH", 1, 9).with_component(1)));
    assert_eq!(error.ack_code(), AckCode::Reject);
    let error = map_error("MSH|^~\\&|A|B|C|D|20240101||ORU^R30|C1|P|2.5.1\r");
    assert_eq!(error.code(), ErrorCode::UnsupportedEventCode);
}

#[test]
fn a_non_numeric_nm_value_is_a_data_type_error_at_obx_5() {
    let error = error("bad_oru_nm.hl7");
    assert_eq!(error.code(), ErrorCode::DataTypeError);
    assert_eq!(error.location(), Some(&Location::field("OBX", 1, 5)));
    assert_eq!(error.ack_code(), AckCode::Error);
}

const HEADER: &str = "MSH|^~\\&|A|B|C|D|20240101||";

#[test]
fn codes_outside_their_tables_are_table_value_errors() {
    let error = map_error(&format!("{HEADER}ADT^A28|C1|P|2.5.1\rPID|1||1^^^GHH^MR|||||Q\r"));
    assert_eq!(
        (error.code(), error.location()),
        (ErrorCode::TableValueNotFound, Some(&Location::field("PID", 1, 8)))
    );

    let error =
        map_error(&format!("{HEADER}ADT^A01|C1|P|2.5.1\rPID|1||1^^^GHH^MR\rPV1|1|Z|||||||||||||||||V1\r"));
    assert_eq!(
        (error.code(), error.location()),
        (ErrorCode::TableValueNotFound, Some(&Location::field("PV1", 1, 2)))
    );

    let oru =
        format!("{HEADER}ORU^R01|C1|P|2.5.1\rPID|1||1^^^GHH^MR\rOBR|1||F1|X^Y^L\rOBX|1|ST|X^Y^L||v||||||Q\r");
    let error = map_error(&oru);
    assert_eq!(
        (error.code(), error.location()),
        (ErrorCode::TableValueNotFound, Some(&Location::field("OBX", 1, 11)))
    );
}

#[test]
fn required_parts_of_each_event_are_checked() {
    // A40 without MRG.
    let error = map_error(&format!("{HEADER}ADT^A40|C1|P|2.5.1\rPID|1||1^^^GHH^MR\r"));
    assert_eq!(
        (error.code(), error.location()),
        (ErrorCode::SegmentSequenceError, Some(&Location::segment("MRG", 1)))
    );
    // A40 with an empty MRG-1.
    let error = map_error(&format!("{HEADER}ADT^A40|C1|P|2.5.1\rPID|1||1^^^GHH^MR\rMRG|\r"));
    assert_eq!(
        (error.code(), error.location()),
        (ErrorCode::RequiredFieldMissing, Some(&Location::field("MRG", 1, 1)))
    );
    // A01 whose visit cannot be identified.
    let error = map_error(&format!("{HEADER}ADT^A01|C1|P|2.5.1\rPID|1||1^^^GHH^MR\rPV1|1|I\r"));
    assert_eq!(
        (error.code(), error.location()),
        (ErrorCode::RequiredFieldMissing, Some(&Location::field("PV1", 1, 19)))
    );
    // A01 without a patient class.
    let error =
        map_error(&format!("{HEADER}ADT^A01|C1|P|2.5.1\rPID|1||1^^^GHH^MR\rPV1|1||||||||||||||||||V1\r"));
    assert_eq!(
        (error.code(), error.location()),
        (ErrorCode::RequiredFieldMissing, Some(&Location::field("PV1", 1, 2)))
    );
    // ORU without PID.
    let error = map_error(&format!("{HEADER}ORU^R01|C1|P|2.5.1\rOBR|1||F1|X^Y^L\r"));
    assert_eq!(
        (error.code(), error.location()),
        (ErrorCode::SegmentSequenceError, Some(&Location::segment("PID", 1)))
    );
    // OBX without OBX-3.
    let error = map_error(&format!(
        "{HEADER}ORU^R01|C1|P|2.5.1\rPID|1||1^^^GHH^MR\rOBR|1||F1|X^Y^L\rOBX|1|ST|||v||||||F\r"
    ));
    assert_eq!(
        (error.code(), error.location()),
        (ErrorCode::RequiredFieldMissing, Some(&Location::field("OBX", 1, 3)))
    );
    // OBR without order numbers.
    let error = map_error(&format!("{HEADER}ORU^R01|C1|P|2.5.1\rPID|1||1^^^GHH^MR\rOBR|1|||X^Y^L\r"));
    assert_eq!(
        (error.code(), error.location()),
        (ErrorCode::RequiredFieldMissing, Some(&Location::field("OBR", 1, 3)))
    );
    // A value type this mapping has no FHIR type for.
    let error = map_error(&format!(
        "{HEADER}ORU^R01|C1|P|2.5.1\rPID|1||1^^^GHH^MR\rOBR|1||F1|X^Y^L\rOBX|1|ED|X^Y^L||x||||||F\r"
    ));
    assert_eq!(
        (error.code(), error.location()),
        (ErrorCode::DataTypeError, Some(&Location::field("OBX", 1, 2)))
    );
}

#[test]
fn a_bad_default_offset_is_an_internal_error() {
    let config = hl7::MappingConfig { default_offset: "UTC".to_string(), ..config() };
    let error = hl7::map(&parse("adt_a01_spec.hl7"), &config).unwrap_err();
    assert_eq!(error.code(), ErrorCode::ApplicationInternalError);
}

#[test]
fn the_default_offset_applies_to_times_without_a_zone() {
    let config = hl7::MappingConfig { default_offset: "-05:00".to_string(), ..config() };
    let hl7::Action::Transaction(bundle) = hl7::map(&parse("adt_a01_spec.hl7"), &config).unwrap() else {
        panic!("not a transaction")
    };
    assert_eq!(bundle["entry"][1]["resource"]["period"]["start"], "2007-08-18T11:23:00-05:00");
}
