//! The HL7 v2 listener: MLLP (`0x0b` message `0x1c 0x0d`) over TCP. Each message is applied
//! through the API as the interface's identity ([`Api::receive_v2`]), recorded in the audit
//! trail like an HTTP request (with the sender's address), and acknowledged on the same
//! connection, in order. Connections are served concurrently; one connection's messages one
//! after the other, as MLLP senders expect.
//!
//! An access that cannot be recorded is not acknowledged: the connection closes and the
//! sender sends again (mapped ids are deterministic, so a message applied twice stores the
//! same resources).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use api::{Api, Caller, V2Config};
use hl7::mllp::{Decoder, frame};
use privacy::Identity;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::Security;

/// How the listener works.
#[derive(Clone)]
pub struct MllpConfig {
    /// Who the feed acts as: the policy decides on it, the audit trail names it.
    pub identity: Identity,
    pub v2: V2Config,
    /// Largest message accepted, in bytes (a bigger one is refused with AR and the
    /// connection closed).
    pub max_message_bytes: usize,
    /// Connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// How long a connection may stay silent between messages before it is closed.
    pub idle: Duration,
    /// How long a message may take to arrive once it has begun, and an ACK to be sent.
    pub transfer: Duration,
}

impl MllpConfig {
    /// A feed acting as `user` with the HIM technician's rights (registration, results and
    /// merges are the record's stewardship).
    pub fn interface(user: &str) -> MllpConfig {
        MllpConfig {
            identity: Identity {
                user: user.to_string(),
                role: privacy::Role::HimTechnician,
                patient: None,
                scopes: privacy::Role::HimTechnician.scopes(),
                fhir_user: None,
            },
            v2: V2Config::default(),
            max_message_bytes: 4 * 1024 * 1024,
            max_connections: 256,
            idle: Duration::from_secs(600),
            transfer: Duration::from_secs(30),
        }
    }
}

/// Serves MLLP on `listener` until `shutdown` completes.
pub async fn serve_mllp(
    listener: TcpListener,
    api: Arc<Api>,
    security: Option<Arc<Security>>,
    config: MllpConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = Arc::new(config);
    let caller = Arc::new(Caller::new(config.identity.clone()));
    let slots = Arc::new(tokio::sync::Semaphore::new(config.max_connections.max(1)));
    tokio::pin!(shutdown);
    loop {
        // A connection is accepted only when one of the slots is free: idle or slow senders
        // cannot take every file descriptor and the memory of their buffers.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => return Ok(()),
            },
            () = &mut shutdown => return Ok(()),
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!("accepting an MLLP connection failed: {error}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let (api, security, config, caller) = (api.clone(), security.clone(), config.clone(), caller.clone());
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(error) = connection(stream, remote, &api, security.as_deref(), &config, caller).await {
                tracing::debug!("MLLP connection from {remote} ended: {error}");
            }
        });
    }
}

async fn connection(
    mut stream: TcpStream,
    remote: SocketAddr,
    api: &Api,
    security: Option<&Security>,
    config: &MllpConfig,
    caller: Arc<Caller>,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut decoder = Decoder::new(config.max_message_bytes);
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        // Between messages a sender may wait (interfaces keep their connection open); inside
        // one it must keep sending.
        let wait = if decoder.in_frame() { config.transfer } else { config.idle };
        let read = match tokio::time::timeout(wait, stream.read(&mut buffer)).await {
            Ok(read) => read?,
            Err(_) => return Ok(()),
        };
        if read == 0 {
            return Ok(());
        }
        decoder.feed(&buffer[..read]);
        loop {
            let payload = match decoder.next_message() {
                Ok(Some(payload)) => payload,
                Ok(None) => break,
                Err(error) => {
                    let refusal = hl7::ack(
                        None,
                        hl7::AckCode::Reject,
                        &[hl7::ErrorDetail::from(&error)],
                        (&config.v2.application, &config.v2.facility),
                        "REFUSED",
                        "",
                    );
                    if let Some(security) = security {
                        let refused = privacy::Access {
                            user: config.identity.user.clone(),
                            role: config.identity.role.as_str().to_string(),
                            interaction: "hl7v2".into(),
                            action: "C",
                            status: 413,
                            outcome_text: Some(format!("HL7 v2 message refused AR: {error}")),
                            address: Some(remote.ip().to_string()),
                            ..Default::default()
                        };
                        let _ = security.audit.record(refused).durable().await;
                    }
                    let _ = tokio::time::timeout(config.transfer, stream.write_all(&frame(&refusal))).await;
                    return Ok(());
                }
            };
            // HL7 v2 is ASCII or a declared 8-bit set; what is not UTF-8 is kept readable.
            let text = String::from_utf8_lossy(&payload);
            let receipt = api.receive_v2(Some(caller.clone()), &text, &config.v2).await;
            if let Some(security) = security {
                let access = receipt.access(&config.identity, Some(remote.ip().to_string()));
                if !security.audit.record(access).durable().await {
                    // Not acknowledged: the sender sends it again.
                    return Ok(());
                }
            }
            match tokio::time::timeout(config.transfer, stream.write_all(&frame(&receipt.ack))).await {
                Ok(written) => written?,
                // A sender that does not read its ACKs is not waited for.
                Err(_) => return Ok(()),
            }
        }
    }
}
