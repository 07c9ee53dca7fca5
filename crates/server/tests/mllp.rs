//! The MLLP listener over TCP: messages acknowledged in order on one connection, what they
//! carried in the record, each one in the audit trail with the feed's identity and the
//! sender's address; an oversized frame refused AR and the connection closed; a sender that
//! stops in the middle of a message is let go.

use std::sync::Arc;
use std::time::Duration;

use api::{Api, ApiConfig};
use chartroom_server as server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn ack_of(stream: &mut tokio::net::TcpStream) -> String {
    let mut decoder = hl7::mllp::Decoder::new(1 << 20);
    let mut buffer = [0u8; 4096];
    loop {
        if let Some(ack) = decoder.next_message().unwrap() {
            return String::from_utf8(ack).unwrap();
        }
        let read =
            tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer)).await.unwrap().unwrap();
        assert!(read > 0, "the listener closed the connection");
        decoder.feed(&buffer[..read]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_acknowledged_stored_and_audited() {
    let dir = testkit::temp_dir("mllp");
    let store = testkit::open_store("mllp", &dir.join("data"));
    let api = Arc::new(Api::new(store.clone(), ApiConfig::default()));
    let security = Arc::new(server::Security::open(&dir.join("data")).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let mut config = server::MllpConfig::interface("lab-feed");
    config.max_message_bytes = 4096;
    config.transfer = Duration::from_millis(300);
    tokio::spawn(server::serve_mllp(
        listener,
        api.clone(),
        Some(security.clone()),
        config,
        std::future::pending(),
    ));

    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let register = "MSH|^~\\&|REG|GHH|CHARTROOM|HIM|202402011000||ADT^A04^ADT_A01|C1|P|2.5.1\rPID|1||900001^^^^MR||ROE^RICHARD||19750101|M\rPV1|1|O|CLINIC||||||||||||||||V9001\r";
    let results = "MSH|^~\\&|LAB|GHH|CHARTROOM|HIM|202402011200||ORU^R01^ORU_R01|C2|P|2.5.1\rPID|1||900001^^^^MR\rOBR|1|O1|F1|2345-7^Glucose^LN|||202402010800\rOBX|1|NM|2345-7^Glucose^LN||99|mg/dL|||||F\r";
    let broken = "MSH|^~\\&|LAB|GHH|CHARTROOM|HIM|202402011200||ORU^R01^ORU_R01|C3|P|2.5.1\rPID|1||900001^^^^MR\rOBR|1|O2|F2|2345-7^Glucose^LN\rOBX|1|NM|2345-7^Glucose^LN||high|mg/dL|||||F\r";
    // Two messages in one write: acknowledged one after the other, in order.
    let mut both = hl7::mllp::frame(register);
    both.extend(hl7::mllp::frame(results));
    stream.write_all(&both).await.unwrap();
    assert!(ack_of(&mut stream).await.contains("\rMSA|AA|C1"));
    assert!(ack_of(&mut stream).await.contains("\rMSA|AA|C2"));
    stream.write_all(&hl7::mllp::frame(broken)).await.unwrap();
    let refused = ack_of(&mut stream).await;
    assert!(refused.contains("\rMSA|AE|C3") && refused.contains("\rERR||OBX^1^5"), "{refused}");

    // Every message is in the trail, as the feed, from its address.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let entries = privacy::audit::entries(&dir.join("data")).unwrap();
    let feed: Vec<_> = entries.iter().filter(|(_, _, a)| a.user == "lab-feed").collect();
    assert_eq!(feed.len(), 3, "{feed:?}");
    assert!(feed.iter().all(|(_, _, a)| a.address.as_deref() == Some("127.0.0.1")));
    assert!(feed.iter().any(|(_, _, a)| {
        a.outcome_text.as_deref().is_some_and(|t| t.contains("ORU^R01") && t.contains("AE"))
    }));

    // Too big: AR, and the connection is closed.
    let mut big = tokio::net::TcpStream::connect(address).await.unwrap();
    let huge = format!("{register}{}", "NTE|1||x\r".repeat(1000));
    big.write_all(&hl7::mllp::frame(&huge)).await.unwrap();
    assert!(ack_of(&mut big).await.contains("MSA|AR"));
    // A sender that stops inside a message is let go.
    let mut slow = tokio::net::TcpStream::connect(address).await.unwrap();
    slow.write_all(b"\x0bMSH|^~\\&|A").await.unwrap();
    let mut buffer = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buffer)).await.unwrap().unwrap();
    assert_eq!(closed, 0);
}
