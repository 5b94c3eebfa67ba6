//! A single-threaded "something changed" signal for tasks on one glommio executor.
//!
//! Waiters re-check their condition after every wake-up, so spurious wake-ups are harmless and
//! no wake-up is lost: a waiter registers before it yields, and `notify` drains every waiter.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Wakes every task waiting on it. Lives on one core; never shared across threads.
#[derive(Default)]
pub(crate) struct Signal {
    waiters: RefCell<Vec<Waker>>,
    generation: Cell<u64>,
}

impl Signal {
    /// Wakes every current waiter.
    pub(crate) fn notify(&self) {
        self.generation.set(self.generation.get() + 1);
        for waker in self.waiters.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    /// Resolves at the next `notify` after this call.
    pub(crate) fn changed(&self) -> Changed<'_> {
        Changed {
            signal: self,
            seen: self.generation.get(),
        }
    }
}

/// The future returned by [`Signal::changed`].
pub(crate) struct Changed<'a> {
    signal: &'a Signal,
    seen: u64,
}

impl Future for Changed<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.generation.get() != self.seen {
            return Poll::Ready(());
        }
        let mut waiters = self.signal.waiters.borrow_mut();
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}
