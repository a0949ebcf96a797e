//! `VEvent` and the one process-wide event FIFO (a Mutex and a Condvar).

use core::ptr;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};

use crate::card::VCard;
use crate::reader::VReader;
use crate::types::{VEvent, VEventType};
use crate::{guard, lock};

/// A queued event pointer.
struct Queued(*mut VEvent);

// SAFETY: an event is a heap object handed from producer to consumer;
// only one side touches it at a time (the queue's Mutex orders them).
unsafe impl Send for Queued {}

static QUEUE: Mutex<VecDeque<Queued>> = Mutex::new(VecDeque::new());
static READY: Condvar = Condvar::new();

fn new_event(
    event_type: VEventType,
    reader: Option<Arc<VReader>>,
    card: Option<Arc<VCard>>,
) -> *mut VEvent {
    Box::into_raw(Box::new(VEvent {
        next: ptr::null_mut(),
        event_type,
        reader: reader.map_or(ptr::null_mut(), VReader::into_c),
        card: card.map_or(ptr::null_mut(), VCard::into_c),
    }))
}

fn push(event: *mut VEvent) {
    lock(&QUEUE).push_back(Queued(event));
    READY.notify_all();
}

/// Queues a new event holding the given references.
pub(crate) fn queue_event(
    event_type: VEventType,
    reader: Option<Arc<VReader>>,
    card: Option<Arc<VCard>>,
) {
    push(new_event(event_type, reader, card));
}

/// A new event; it takes its own references to `reader` and `card` (either
/// may be NULL).
///
/// Ownership: the caller owns the event: queue it with
/// [`vevent_queue_vevent`] (the consumer then owns it) or free it with
/// [`vevent_delete`]. NULL only if the library panicked.
///
/// # Safety
/// `reader` and `card` are NULL or live objects from this library.
#[no_mangle]
pub unsafe extern "C" fn vevent_new(
    event_type: VEventType,
    reader: *mut VReader,
    card: *mut VCard,
) -> *mut VEvent {
    guard(ptr::null_mut(), || {
        // SAFETY: per the contract.
        let (r, c) = unsafe { (VReader::from_c(reader), VCard::from_c(card)) };
        new_event(event_type, r, c)
    })
}

/// Frees an event and the references it holds. NULL is a no-op.
///
/// # Safety
/// `vevent` is NULL or an event from this library the caller owns (not
/// queued), not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn vevent_delete(vevent: *mut VEvent) {
    guard((), || {
        if vevent.is_null() {
            return;
        }
        // SAFETY: the caller owns the event, created by Box in new_event.
        let ev = unsafe { Box::from_raw(vevent) };
        // SAFETY: the event's pointers are references it owns (or NULL;
        // a consumer may have cleared or replaced them with references of
        // its own, which it then gives up here).
        unsafe {
            crate::reader::vreader_free(ev.reader);
            crate::card::vcard_free(ev.card);
        }
    })
}

/// Appends an event to the queue (the queue takes ownership) and wakes a
/// waiting consumer. NULL is ignored.
///
/// # Safety
/// `vevent` is NULL or an event from this library the caller owns.
#[no_mangle]
pub unsafe extern "C" fn vevent_queue_vevent(vevent: *mut VEvent) {
    guard((), || {
        if !vevent.is_null() {
            // SAFETY: per the contract; the event is ours from now on.
            unsafe { (*vevent).next = ptr::null_mut() };
            push(vevent);
        }
    })
}

/// Empties the queue. As in libcacard, the events that were queued are
/// forgotten, not freed.
#[no_mangle]
pub extern "C" fn vevent_queue_init() {
    guard((), || lock(&QUEUE).clear())
}

/// Blocks until an event is queued and returns it.
///
/// Ownership: the caller owns the event and frees it with
/// [`vevent_delete`]. NULL only if the library panicked.
#[no_mangle]
pub extern "C" fn vevent_wait_next_vevent() -> *mut VEvent {
    guard(ptr::null_mut(), || {
        let mut q = lock(&QUEUE);
        loop {
            if let Some(Queued(ev)) = q.pop_front() {
                return ev;
            }
            q = READY.wait(q).unwrap_or_else(|p| p.into_inner());
        }
    })
}

/// The next event, or NULL at once when the queue is empty.
///
/// Ownership: the caller owns the event and frees it with
/// [`vevent_delete`].
#[no_mangle]
pub extern "C" fn vevent_get_next_vevent() -> *mut VEvent {
    guard(ptr::null_mut(), || {
        lock(&QUEUE)
            .pop_front()
            .map_or(ptr::null_mut(), |Queued(ev)| ev)
    })
}
