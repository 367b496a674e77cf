//! The live side of runs on this node: for each run being executed, the events published so far (so a
//! subscriber can catch up without the store), a broadcast of new ones, and the cancel signal; and for
//! each session, the lock that orders its runs.
//!
//! Events reach the hub as soon as the engine makes them; the store gets them in batches at durable
//! points (see `engine.rs`). An event that ends a stream (terminal or `RunPaused`) is published only
//! after it is stored, so a subscriber that saw it can always find everything again in the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use agentd_core::run::{RunEvent, SessionId};
use agentd_core::{RunId, TenantId};
use tokio::sync::{broadcast, Notify};
use tokio_util::sync::CancellationToken;

/// How many events a slow subscriber may fall behind before it re-reads the buffer.
const BROADCAST_CAPACITY: usize = 256;

/// One run being executed on this node.
pub(crate) struct LiveRun {
    state: Mutex<LiveState>,
    pub(crate) cancel: CancellationToken,
    /// Notified when the execution segment ends (terminal event or pause).
    pub(crate) ended: Notify,
}

struct LiveState {
    /// Events of this execution segment, in order.
    events: Vec<Arc<RunEvent>>,
    /// The seq of the last event stored before this segment began.
    base_seq: u64,
    sender: broadcast::Sender<Arc<RunEvent>>,
    finished: bool,
}

/// What a subscriber gets from a live run: the buffered events after its position, the seq before
/// which it must read the store, and a receiver for what comes next.
pub(crate) struct Attachment {
    pub(crate) buffered: Vec<Arc<RunEvent>>,
    /// Events with seq up to this are only in the store.
    pub(crate) base_seq: u64,
    pub(crate) receiver: broadcast::Receiver<Arc<RunEvent>>,
    pub(crate) finished: bool,
}

impl LiveRun {
    fn new(base_seq: u64) -> Self {
        let (sender, _) = broadcast::channel(BROADCAST_CAPACITY);
        Self {
            state: Mutex::new(LiveState {
                events: Vec::new(),
                base_seq,
                sender,
                finished: false,
            }),
            cancel: CancellationToken::new(),
            ended: Notify::new(),
        }
    }

    /// Adds an event to the buffer and sends it to subscribers.
    pub(crate) fn publish(&self, event: Arc<RunEvent>) {
        let mut state = self.state.lock().expect("live run lock");
        state.events.push(event.clone());
        // No receiver is fine: nobody is watching right now.
        let _ = state.sender.send(event);
    }

    /// Marks the segment over.
    pub(crate) fn finish(&self) {
        self.state.lock().expect("live run lock").finished = true;
        self.ended.notify_waiters();
    }

    /// Buffered events after `after_seq` plus a receiver for later ones, taken atomically.
    pub(crate) fn attach(&self, after_seq: u64) -> Attachment {
        let state = self.state.lock().expect("live run lock");
        Attachment {
            buffered: state
                .events
                .iter()
                .filter(|e| e.seq > after_seq)
                .cloned()
                .collect(),
            base_seq: state.base_seq,
            receiver: state.sender.subscribe(),
            finished: state.finished,
        }
    }

    /// Buffered events after `after_seq` (for a subscriber that fell behind the broadcast).
    pub(crate) fn buffered_after(&self, after_seq: u64) -> Vec<Arc<RunEvent>> {
        let state = self.state.lock().expect("live run lock");
        state
            .events
            .iter()
            .filter(|e| e.seq > after_seq)
            .cloned()
            .collect()
    }
}

type SessionKey = (TenantId, SessionId);

/// The runs executing on this node and the session locks.
#[derive(Default)]
pub(crate) struct RunHub {
    runs: Mutex<HashMap<RunId, Arc<LiveRun>>>,
    sessions: Mutex<HashMap<SessionKey, SessionSlot>>,
}

/// A session's lock and the run that holds it (for `interrupt`).
struct SessionSlot {
    lock: Arc<tokio::sync::Mutex<()>>,
    /// Runs waiting for or holding the lock; the slot is dropped when none is left.
    users: usize,
    current: Option<RunId>,
}

/// Holding this means the session's turn is ours; dropping it lets the next run in.
pub(crate) struct SessionTurn {
    hub: Arc<RunHub>,
    key: SessionKey,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for SessionTurn {
    fn drop(&mut self) {
        if let Some(slot) = self
            .hub
            .sessions
            .lock()
            .expect("session lock")
            .get_mut(&self.key)
        {
            slot.current = None;
        }
        self.hub.leave_session(&self.key);
    }
}

/// A place in a session's queue, taken when the run is accepted (so `reject` and `interrupt` see it)
/// and turned into a [`SessionTurn`] when the run may start.
pub(crate) struct SessionTicket {
    hub: Arc<RunHub>,
    key: SessionKey,
    lock: Arc<tokio::sync::Mutex<()>>,
    redeemed: bool,
}

impl SessionTicket {
    /// Waits for the session's turn.
    pub(crate) async fn wait(mut self, run: RunId) -> SessionTurn {
        let guard = self.lock.clone().lock_owned().await;
        self.redeemed = true;
        let mut sessions = self.hub.sessions.lock().expect("session lock");
        if let Some(slot) = sessions.get_mut(&self.key) {
            slot.current = Some(run);
        }
        drop(sessions);
        SessionTurn {
            hub: self.hub.clone(),
            key: self.key.clone(),
            _guard: guard,
        }
    }
}

impl Drop for SessionTicket {
    fn drop(&mut self) {
        if !self.redeemed {
            self.hub.leave_session(&self.key);
        }
    }
}

impl RunHub {
    /// Registers a run about to execute (or continue) after `base_seq`.
    pub(crate) fn register(&self, run: RunId, base_seq: u64) -> Arc<LiveRun> {
        let live = Arc::new(LiveRun::new(base_seq));
        self.runs
            .lock()
            .expect("hub lock")
            .insert(run, live.clone());
        live
    }

    /// Forgets a run whose segment has ended (its events are all stored by now).
    pub(crate) fn remove(&self, run: RunId) {
        self.runs.lock().expect("hub lock").remove(&run);
    }

    pub(crate) fn get(&self, run: RunId) -> Option<Arc<LiveRun>> {
        self.runs.lock().expect("hub lock").get(&run).cloned()
    }

    /// How many runs are executing here.
    pub(crate) fn live_count(&self) -> usize {
        self.runs.lock().expect("hub lock").len()
    }

    /// One run leaves the session's queue (its turn is over, or it never took it); the slot goes
    /// when nobody is left.
    fn leave_session(&self, key: &SessionKey) {
        let mut sessions = self.sessions.lock().expect("session lock");
        if let Some(slot) = sessions.get_mut(key) {
            slot.users -= 1;
            if slot.users == 0 {
                sessions.remove(key);
            }
        }
    }

    /// Takes a place in the session's queue. Returns the ticket and the run currently holding the
    /// session, if any (`None` when the session is free and nobody waits).
    pub(crate) fn enter_session(
        self: &Arc<Self>,
        tenant: TenantId,
        session: &SessionId,
    ) -> (SessionTicket, bool, Option<RunId>) {
        let key = (tenant, session.clone());
        let mut sessions = self.sessions.lock().expect("session lock");
        let slot = sessions.entry(key.clone()).or_insert_with(|| SessionSlot {
            lock: Arc::new(tokio::sync::Mutex::new(())),
            users: 0,
            current: None,
        });
        let busy = slot.users > 0;
        slot.users += 1;
        let ticket = SessionTicket {
            hub: self.clone(),
            key,
            lock: slot.lock.clone(),
            redeemed: false,
        };
        (ticket, busy, slot.current)
    }
}
