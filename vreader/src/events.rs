//! Reader and card events, and the per-subscriber queues that deliver them.

use core::fmt;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Duration;

/// A reader's stable identifier. IDs are never reused within a
/// [`ReaderSet`](crate::ReaderSet).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReaderId(pub u32);

impl fmt::Display for ReaderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What happened (libcacard's `VEventType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A reader was added.
    ReaderInserted,
    /// A reader was removed (after its card, if any, was removed).
    ReaderRemoved,
    /// A card was inserted into the reader.
    CardInserted,
    /// The card was removed from the reader.
    CardRemoved,
}

/// One event, naming its reader.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The reader's ID.
    pub reader: ReaderId,
    /// The reader's name.
    pub name: Arc<str>,
}

#[derive(Default)]
struct QueueState {
    events: VecDeque<Event>,
    closed: bool,
    #[cfg(feature = "async")]
    waker: Option<core::task::Waker>,
}

pub(crate) struct Queue {
    state: Mutex<QueueState>,
    ready: Condvar,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // A panic while holding this lock cannot leave the deque
        // inconsistent, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn push(&self, event: Event) {
        let mut s = self.lock();
        s.events.push_back(event);
        #[cfg(feature = "async")]
        if let Some(w) = s.waker.take() {
            w.wake();
        }
        drop(s);
        self.ready.notify_one();
    }

    pub(crate) fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        #[cfg(feature = "async")]
        if let Some(w) = s.waker.take() {
            w.wake();
        }
        drop(s);
        self.ready.notify_all();
    }
}

/// The set of live subscriber queues; events fan out to each.
#[derive(Default)]
pub(crate) struct Fanout {
    queues: Mutex<Vec<Weak<Queue>>>,
}

impl Fanout {
    /// Delivers `event` to every live subscriber, forgetting dropped ones.
    pub(crate) fn publish(&self, event: Event) {
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        queues.retain(|q| match q.upgrade() {
            Some(q) => {
                q.push(event.clone());
                true
            }
            None => false,
        });
    }

    /// A new subscriber whose queue starts with `initial`.
    pub(crate) fn subscribe(&self, initial: Vec<Event>) -> Events {
        let queue = Arc::new(Queue {
            state: Mutex::new(QueueState {
                events: initial.into(),
                ..QueueState::default()
            }),
            ready: Condvar::new(),
        });
        self.queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::downgrade(&queue));
        Events { queue }
    }

    /// Wakes every subscriber for the last time: the set is gone.
    pub(crate) fn close(&self) {
        let queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        for q in queues.iter().filter_map(Weak::upgrade) {
            q.close();
        }
    }
}

/// A subscriber's event stream.
///
/// Each subscriber gets every event published after it subscribed, in
/// order, with none lost (the queue is unbounded: drain it, or drop the
/// subscriber). Any number of subscribers may exist; each is meant for one
/// consumer at a time.
pub struct Events {
    queue: Arc<Queue>,
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Events")
            .field("pending", &self.queue.lock().events.len())
            .finish()
    }
}

impl Events {
    /// The next event if one is queued (non-blocking poll).
    pub fn try_next(&self) -> Option<Event> {
        self.queue.lock().events.pop_front()
    }

    /// Waits up to `timeout` for the next event. `None` on timeout, or when
    /// the reader set was dropped and the queue is empty.
    pub fn next_timeout(&self, timeout: Duration) -> Option<Event> {
        let guard = self.queue.lock();
        let (mut guard, _) = self
            .queue
            .ready
            .wait_timeout_while(guard, timeout, |s| s.events.is_empty() && !s.closed)
            .unwrap_or_else(|p| p.into_inner());
        guard.events.pop_front()
    }

    /// Waits for the next event. `None` once the reader set was dropped and
    /// every event has been taken.
    pub fn next_blocking(&self) -> Option<Event> {
        let guard = self.queue.lock();
        let mut guard = self
            .queue
            .ready
            .wait_while(guard, |s| s.events.is_empty() && !s.closed)
            .unwrap_or_else(|p| p.into_inner());
        guard.events.pop_front()
    }

    /// Number of events waiting.
    pub fn len(&self) -> usize {
        self.queue.lock().events.len()
    }

    /// True when no event is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next event as a future (feature `async`): resolves to `None`
    /// once the reader set was dropped and the queue is drained. Works with
    /// any executor; it registers the task's waker, no runtime needed.
    #[cfg(feature = "async")]
    pub fn next(&self) -> NextEvent<'_> {
        NextEvent { events: self }
    }
}

/// Future returned by [`Events::next`].
#[cfg(feature = "async")]
#[derive(Debug)]
pub struct NextEvent<'a> {
    events: &'a Events,
}

#[cfg(feature = "async")]
impl core::future::Future for NextEvent<'_> {
    type Output = Option<Event>;

    fn poll(
        self: core::pin::Pin<&mut Self>,
        cx: &mut core::task::Context<'_>,
    ) -> core::task::Poll<Option<Event>> {
        let mut s = self.events.queue.lock();
        if let Some(e) = s.events.pop_front() {
            return core::task::Poll::Ready(Some(e));
        }
        if s.closed {
            return core::task::Poll::Ready(None);
        }
        s.waker = Some(cx.waker().clone());
        core::task::Poll::Pending
    }
}
