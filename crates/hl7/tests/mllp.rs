//! MLLP framing and the incremental decoder.

use hl7::mllp::{Decoder, END, START, frame};

const LIMIT: usize = 1024;

fn drain(decoder: &mut Decoder) -> Vec<Result<Vec<u8>, hl7::Error>> {
    let mut out = Vec::new();
    loop {
        match decoder.next_message() {
            Ok(Some(message)) => out.push(Ok(message)),
            Ok(None) => return out,
            Err(error) => out.push(Err(error)),
        }
    }
}

#[test]
fn frame_wraps_the_message() {
    assert_eq!(frame("MSH|x\r"), b"\x0bMSH|x\r\x1c\r".to_vec());
    assert_eq!(START, 0x0b);
    assert_eq!(END, &[0x1c, 0x0d]);
}

#[test]
fn one_frame_at_once() {
    let mut decoder = Decoder::new(LIMIT);
    decoder.feed(&frame("MSH|1\r"));
    assert_eq!(decoder.next_message().unwrap(), Some(b"MSH|1\r".to_vec()));
    assert_eq!(decoder.next_message().unwrap(), None);
    assert!(!decoder.in_frame());
}

#[test]
fn a_frame_byte_by_byte() {
    let mut decoder = Decoder::new(LIMIT);
    let bytes = frame("MSH|partial\rPID|1\r");
    let mut found = Vec::new();
    for byte in &bytes {
        decoder.feed(std::slice::from_ref(byte));
        if let Some(message) = decoder.next_message().unwrap() {
            found.push(message);
        }
    }
    assert_eq!(found, vec![b"MSH|partial\rPID|1\r".to_vec()]);
}

#[test]
fn an_end_block_split_between_reads() {
    let mut decoder = Decoder::new(LIMIT);
    decoder.feed(b"\x0bMSH|1\r\x1c");
    assert_eq!(decoder.next_message().unwrap(), None);
    assert!(decoder.in_frame());
    decoder.feed(b"\r");
    assert_eq!(decoder.next_message().unwrap(), Some(b"MSH|1\r".to_vec()));
}

#[test]
fn several_frames_in_one_read_with_noise_around_them() {
    let mut decoder = Decoder::new(LIMIT);
    let mut bytes = b"garbage\r\n".to_vec();
    bytes.extend(frame("MSH|1\r"));
    bytes.extend(b"\r\n");
    bytes.extend(frame("MSH|2\r"));
    bytes.extend(frame("MSH|3\r"));
    decoder.feed(&bytes);
    let messages: Vec<Vec<u8>> = drain(&mut decoder).into_iter().map(Result::unwrap).collect();
    assert_eq!(messages, vec![b"MSH|1\r".to_vec(), b"MSH|2\r".to_vec(), b"MSH|3\r".to_vec()]);
}

#[test]
fn a_new_start_block_abandons_an_unfinished_frame() {
    let mut decoder = Decoder::new(LIMIT);
    decoder.feed(b"\x0bMSH|cut off\x0bMSH|whole\r\x1c\r");
    let messages: Vec<Vec<u8>> = drain(&mut decoder).into_iter().map(Result::unwrap).collect();
    assert_eq!(messages, vec![b"MSH|whole\r".to_vec()]);
}

#[test]
fn an_oversized_frame_is_reported_once_and_skipped() {
    let mut decoder = Decoder::new(8);
    let mut bytes = frame("MSH|this is far too long\r");
    bytes.extend(frame("MSH|ok\r"));
    decoder.feed(&bytes);
    let results = drain(&mut decoder);
    assert_eq!(results.len(), 2);
    assert_eq!(results[0], Err(hl7::Error::FrameTooLarge { limit: 8 }));
    assert_eq!(results[1], Ok(b"MSH|ok\r".to_vec()));
}

#[test]
fn a_payload_of_exactly_the_limit_is_accepted() {
    let mut decoder = Decoder::new(6);
    decoder.feed(&frame("MSH|1\r"));
    assert_eq!(decoder.next_message().unwrap(), Some(b"MSH|1\r".to_vec()));
}

#[test]
fn a_file_separator_without_carriage_return_still_ends_the_frame() {
    let mut decoder = Decoder::new(LIMIT);
    decoder.feed(b"\x0bMSH|1\r\x1c\x0bMSH|2\r\x1c\r");
    let messages: Vec<Vec<u8>> = drain(&mut decoder).into_iter().map(Result::unwrap).collect();
    assert_eq!(messages, vec![b"MSH|1\r".to_vec(), b"MSH|2\r".to_vec()]);
}
