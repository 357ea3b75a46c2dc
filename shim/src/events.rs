//! Publishing task events to containerd (`/tasks/exit`, `/tasks/oom`, ...) over its ttrpc
//! Events service, surviving containerd restarts.
//!
//! Events go through one bounded queue to one sender task, so containerd receives them in the
//! order they happened (an exit before the delete that follows it). The sender holds one
//! connection; any failed forward drops it, and the next attempt dials again, since a
//! restarted containerd is a new server whatever error the old connection reports. An event
//! is retried with growing pauses until [`EVENT_LIFETIME`] after it was queued, as containerd's
//! Go shim retries its own, then dropped with an error in the log: a containerd away that long
//! learns a task's state from `State` when it is back.

use std::os::unix::io::RawFd;
use std::time::Duration;

use containerd_shim::asynchronous::util::asyncify;
use containerd_shim::util::{connect, convert_to_any, timestamp};
use containerd_shim_protos::protobuf::MessageDyn;
use containerd_shim_protos::shim::event::Envelope;
use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::shim_async::{Client, EventsClient};
use containerd_shim_protos::ttrpc::context::Context;
use log::{debug, error, warn};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Events waiting to be sent; more are dropped with a warning.
pub const QUEUE_LEN: usize = 1024;
/// How long an event is retried after it was queued.
pub const EVENT_LIFETIME: Duration = Duration::from_secs(60);
/// How long one forward may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);
/// The first pause between attempts; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(2);

struct Item {
    envelope: Envelope,
    queued: Instant,
}

/// Sends events to containerd's ttrpc address; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Publisher {
    queue: mpsc::Sender<Item>,
}

impl Publisher {
    /// A publisher to containerd at `address` (its ttrpc socket). Never fails: the first
    /// connection is made when the first event is sent, and retried like any other.
    pub fn new(address: &str) -> Publisher {
        Publisher::with_lifetime(address, EVENT_LIFETIME)
    }

    fn with_lifetime(address: &str, lifetime: Duration) -> Publisher {
        let (queue, items) = mpsc::channel(QUEUE_LEN);
        tokio::spawn(send_all(address.to_string(), items, lifetime));
        Publisher { queue }
    }

    /// Queues `event` on `topic` in containerd's `namespace`. Returns at once.
    pub fn publish(&self, topic: &str, namespace: &str, event: Box<dyn MessageDyn>) {
        let mut envelope = Envelope::new();
        envelope.set_topic(topic.to_string());
        envelope.set_namespace(namespace.to_string());
        match (timestamp(), convert_to_any(event)) {
            (Ok(at), Ok(any)) => {
                envelope.set_timestamp(at);
                envelope.set_event(any);
            }
            (Err(e), _) | (_, Err(e)) => {
                error!("dropping event {topic}: it cannot be encoded: {e}");
                return;
            }
        }
        let item = Item {
            envelope,
            queued: Instant::now(),
        };
        if let Err(e) = self.queue.try_send(item) {
            error!("dropping event {topic}: the queue to containerd is full or closed ({e})");
        }
    }
}

/// The sender task: every queued event, in order, until the publisher is dropped.
async fn send_all(address: String, mut items: mpsc::Receiver<Item>, lifetime: Duration) {
    let mut client: Option<EventsClient> = None;
    while let Some(item) = items.recv().await {
        let topic = item.envelope.topic.clone();
        let deadline = item.queued + lifetime;
        let mut request = ForwardRequest::new();
        request.set_envelope(item.envelope);
        let mut pause = FIRST_PAUSE;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let result = match &client {
                Some(c) => forward(c, &request).await,
                None => match dial(&address).await {
                    Ok(c) => {
                        let c = EventsClient::new(c);
                        let result = forward(&c, &request).await;
                        client = Some(c);
                        result
                    }
                    Err(e) => Err(format!("connecting to {address}: {e}")),
                },
            };
            match result {
                Ok(()) => {
                    if attempts > 1 {
                        debug!("event {topic} sent after {attempts} attempts");
                    }
                    break;
                }
                Err(e) => {
                    client = None;
                    if Instant::now() + pause > deadline {
                        error!(
                            "dropping event {topic} after {attempts} attempts over {lifetime:?}: \
                             {e}; is containerd running at {address}?"
                        );
                        break;
                    }
                    warn!("event {topic} not sent ({e}); reconnecting in {pause:?}");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_PAUSE);
                }
            }
        }
    }
}

async fn forward(client: &EventsClient, request: &ForwardRequest) -> Result<(), String> {
    let ctx = Context {
        timeout_nano: FORWARD_TIMEOUT.as_nanos() as i64,
        ..Context::default()
    };
    match tokio::time::timeout(FORWARD_TIMEOUT, client.forward(ctx, request)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {FORWARD_TIMEOUT:?}")),
    }
}

async fn dial(address: &str) -> Result<Client, String> {
    let address = address.to_string();
    let fd: RawFd = asyncify(move || connect(address))
        .await
        .map_err(|e| e.to_string())?;
    // SAFETY: `connect` returned a connected unix socket that nothing else owns;
    // `from_raw_unix_socket_fd` takes ownership of it.
    Ok(unsafe { Client::from_raw_unix_socket_fd(fd) })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use async_trait::async_trait;
    use containerd_shim_protos::api::Empty;
    use containerd_shim_protos::events::task::TaskExit;
    use containerd_shim_protos::shim_async::{Events, create_events};
    use containerd_shim_protos::ttrpc;
    use containerd_shim_protos::ttrpc::r#async::{Server, TtrpcContext, transport::Listener};

    use super::*;

    struct Containerd {
        seen: mpsc::UnboundedSender<String>,
    }

    #[async_trait]
    impl Events for Containerd {
        async fn forward(&self, _ctx: &TtrpcContext, req: ForwardRequest) -> ttrpc::Result<Empty> {
            let _ = self.seen.send(req.envelope().topic().to_string());
            Ok(Empty::default())
        }
    }

    fn serve(path: &std::path::Path, seen: mpsc::UnboundedSender<String>) -> Server {
        let _ = std::fs::remove_file(path);
        let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
        Server::new()
            .add_listener(Listener::try_from(listener).unwrap())
            .register_service(create_events(Arc::new(Containerd { seen })))
    }

    fn exit(id: &str) -> Box<dyn MessageDyn> {
        Box::new(TaskExit {
            container_id: id.into(),
            ..Default::default()
        })
    }

    async fn next(rx: &mut mpsc::UnboundedReceiver<String>) -> String {
        tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("the event arrives")
            .expect("the server is up")
    }

    #[tokio::test]
    async fn events_survive_a_containerd_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("containerd.sock.ttrpc");
        let (seen, mut rx) = mpsc::unbounded_channel();
        let mut server = serve(&path, seen.clone());
        server.start().await.unwrap();
        let publisher = Publisher::new(path.to_str().unwrap());
        publisher.publish("/tasks/start", "default", exit("a"));
        assert_eq!(next(&mut rx).await, "/tasks/start");

        // containerd goes away; events meanwhile wait, and arrive in order once it is back.
        server.shutdown().await.unwrap();
        drop(server);
        publisher.publish("/tasks/exit", "default", exit("a"));
        publisher.publish("/tasks/delete", "default", exit("a"));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut server = serve(&path, seen);
        server.start().await.unwrap();
        assert_eq!(next(&mut rx).await, "/tasks/exit");
        assert_eq!(next(&mut rx).await, "/tasks/delete");
        server.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn the_first_connection_is_retried_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("containerd.sock.ttrpc");
        let publisher = Publisher::new(path.to_str().unwrap());
        publisher.publish("/tasks/oom", "k8s.io", exit("b"));
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (seen, mut rx) = mpsc::unbounded_channel();
        let mut server = serve(&path, seen);
        server.start().await.unwrap();
        assert_eq!(next(&mut rx).await, "/tasks/oom");
        server.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn an_event_is_dropped_after_its_lifetime_and_the_next_still_goes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("containerd.sock.ttrpc");
        let publisher =
            Publisher::with_lifetime(path.to_str().unwrap(), Duration::from_millis(150));
        publisher.publish("/tasks/lost", "default", exit("c"));
        tokio::time::sleep(Duration::from_millis(600)).await;
        let (seen, mut rx) = mpsc::unbounded_channel();
        let mut server = serve(&path, seen);
        server.start().await.unwrap();
        publisher.publish("/tasks/exit", "default", exit("c"));
        assert_eq!(next(&mut rx).await, "/tasks/exit");
        server.shutdown().await.unwrap();
    }
}
