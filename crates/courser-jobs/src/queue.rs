//! The bounded priority queue between drivers and pollers: lower priority
//! numbers first, first in first out within a priority. Drivers wait when it
//! holds `jobs.pipeline_size` deliveries.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Mutex, MutexGuard};
use tokio::sync::{Notify, Semaphore};

use crate::driver::Delivery;

struct Item {
    priority: i64,
    seq: u64,
    delivery: Delivery,
}

impl PartialEq for Item {
    fn eq(&self, other: &Self) -> bool {
        self.priority == other.priority && self.seq == other.seq
    }
}
impl Eq for Item {}
impl PartialOrd for Item {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Item {
    /// BinaryHeap pops the greatest: the lowest priority number, then the oldest.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .priority
            .cmp(&self.priority)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

/// See the module docs.
pub(crate) struct PriorityQueue {
    heap: Mutex<BinaryHeap<Item>>,
    space: Semaphore,
    ready: Notify,
    seq: AtomicU64,
    closed: AtomicBool,
}

impl PriorityQueue {
    pub(crate) fn new(capacity: usize) -> PriorityQueue {
        PriorityQueue {
            heap: Mutex::new(BinaryHeap::new()),
            space: Semaphore::new(capacity.clamp(1, Semaphore::MAX_PERMITS)),
            ready: Notify::new(),
            seq: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        }
    }

    fn heap(&self) -> MutexGuard<'_, BinaryHeap<Item>> {
        self.heap.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a delivery, waiting for space; gives it back once closed.
    pub(crate) async fn push(&self, priority: i64, delivery: Delivery) -> Result<(), Delivery> {
        if self.closed.load(AtomicOrdering::Acquire) {
            return Err(delivery);
        }
        let Ok(permit) = self.space.acquire().await else {
            return Err(delivery);
        };
        permit.forget();
        let seq = self.seq.fetch_add(1, AtomicOrdering::Relaxed);
        self.heap().push(Item {
            priority,
            seq,
            delivery,
        });
        self.ready.notify_one();
        Ok(())
    }

    /// Takes the next delivery, waiting for one; `None` once closed.
    pub(crate) async fn pop(&self) -> Option<Delivery> {
        loop {
            let notified = self.ready.notified();
            if self.closed.load(AtomicOrdering::Acquire) {
                return None;
            }
            if let Some(item) = self.heap().pop() {
                self.space.add_permits(1);
                return Some(item.delivery);
            }
            notified.await;
        }
    }

    /// Deliveries waiting.
    pub(crate) fn len(&self) -> usize {
        self.heap().len()
    }

    /// Takes every waiting delivery of `pipeline` out (a pause).
    pub(crate) fn drain_pipeline(&self, pipeline: &str) -> Vec<Delivery> {
        let mut heap = self.heap();
        let items: Vec<Item> = std::mem::take(&mut *heap).into_vec();
        let mut out = Vec::new();
        for item in items {
            if item.delivery.job.options.pipeline == pipeline {
                out.push(item.delivery);
            } else {
                heap.push(item);
            }
        }
        drop(heap);
        self.space.add_permits(out.len());
        out
    }

    /// Stops the queue: pushes fail, pops return `None`; returns what was waiting.
    pub(crate) fn close(&self) -> Vec<Delivery> {
        self.closed.store(true, AtomicOrdering::Release);
        self.space.close();
        self.ready.notify_waiters();
        let items = std::mem::take(&mut *self.heap()).into_vec();
        items.into_iter().map(|i| i.delivery).collect()
    }
}
