//! Acknowledgements, byte for byte.

mod common;

use common::*;
use hl7::{AckCode, ErrorCode, ErrorDetail, Message, ack};

const NOW: &str = "20240115103000+0000";
const US: (&str, &str) = ("CHARTROOM", "GHH");

#[test]
fn accept() {
    let message = parse("adt_a01_spec.hl7");
    let ack = ack(Some(&message), AckCode::Accept, &[], US, "ACK0001", NOW);
    assert_eq!(
        ack,
        "MSH|^~\\&|CHARTROOM|GHH|ADT1|GOOD HEALTH HOSPITAL|20240115103000+0000||ACK^A01^ACK|ACK0001|P|2.5.1\r\
         MSA|AA|MSG00001\r"
    );
}

#[test]
fn error_with_location() {
    let message = parse("bad_missing_pid3.hl7");
    let error = hl7::map(&message, &config()).unwrap_err();
    assert_eq!(error.ack_code(), AckCode::Error);
    let ack = ack(Some(&message), error.ack_code(), &[(&error).into()], US, "ACK0002", NOW);
    assert_eq!(
        ack,
        "MSH|^~\\&|CHARTROOM|GHH|ADT1|GHH|20240115103000+0000||ACK^A01^ACK|ACK0002|P|2.5.1\r\
         MSA|AE|MSG00012\r\
         ERR||PID^1^3^1|101^Required field missing^HL70357|E||||PID-3 (patient identifier list) is missing\r"
    );
}

#[test]
fn error_text_is_escaped() {
    let message = parse("adt_a01_spec.hl7");
    let rejection = ErrorDetail::new(
        ErrorCode::ApplicationInternalError,
        "Patient.name|given: \"^x\" & ~y \\ z\nsecond line",
    );
    let ack = ack(Some(&message), AckCode::Error, &[rejection], US, "ACK0003", NOW);
    assert_eq!(
        ack,
        "MSH|^~\\&|CHARTROOM|GHH|ADT1|GOOD HEALTH HOSPITAL|20240115103000+0000||ACK^A01^ACK|ACK0003|P|2.5.1\r\
         MSA|AE|MSG00001\r\
         ERR|||207^Application internal error^HL70357|E||||Patient.name\\F\\given: \"\\S\\x\" \\T\\ \\R\\y \\E\\ z\\.br\\second line\r"
    );
}

#[test]
fn reject_without_a_message() {
    let error = error("bad_no_msh.hl7");
    assert_eq!(error.ack_code(), AckCode::Reject);
    let ack = ack(None, error.ack_code(), &[(&error).into()], US, "ACK0004", NOW);
    assert_eq!(
        ack,
        "MSH|^~\\&|CHARTROOM|GHH|||20240115103000+0000||ACK|ACK0004|P|2.5.1\r\
         MSA|AR|\r\
         ERR||MSH^1|100^Segment sequence error^HL70357|E||||the message does not start with an MSH segment (it starts with \"PID\")\r"
    );
}

#[test]
fn reject_of_an_invalid_header_still_answers_the_control_id() {
    let text = load("bad_msh9.hl7");
    let error = Message::parse(&text).unwrap_err();
    let message = Message::parse_unvalidated(&text).ok();
    let ack = ack(message.as_ref(), error.ack_code(), &[(&error).into()], US, "ACK0005", NOW);
    assert_eq!(
        ack,
        "MSH|^~\\&|CHARTROOM|GHH|ADT1|GHH|20240115103000+0000||ACK|ACK0005|P|2.5.1\r\
         MSA|AR|MSG00011\r\
         ERR||MSH^1^9^1^2|101^Required field missing^HL70357|E||||MSH-9.2 (trigger event) is missing\r"
    );
}

#[test]
fn sender_fields_are_re_encoded_with_standard_delimiters() {
    // "|" and "^" are plain text under these delimiters, and must be escaped under the standard ones.
    let text = "MSH!@#$%!APP@1.2.3@ISO!FAC|X!!!20240101!!ADT@A28!C^1!T!2.5.1\rPID!1!!1";
    let message = Message::parse(text).unwrap();
    let ack = ack(Some(&message), AckCode::Accept, &[], US, "A9", NOW);
    assert_eq!(
        ack,
        "MSH|^~\\&|CHARTROOM|GHH|APP^1.2.3^ISO|FAC\\F\\X|20240115103000+0000||ACK^A28^ACK|A9|T|2.5.1\r\
         MSA|AA|C\\S\\1\r"
    );
}
