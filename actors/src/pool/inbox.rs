//! A core's command queue: a crossbeam channel the control plane sends on from any thread,
//! and a waker slot, so that a parked core wakes as soon as a command arrives (glommio wakes
//! a parked executor whose task is woken from another thread through its eventfd).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// The sending side of a core's command queue.
pub(crate) struct Outbox<T> {
    tx: crossbeam_channel::Sender<T>,
    waker: Arc<Mutex<Option<Waker>>>,
}

impl<T> Clone for Outbox<T> {
    fn clone(&self) -> Self {
        Outbox {
            tx: self.tx.clone(),
            waker: self.waker.clone(),
        }
    }
}

/// The receiving side, read by one task on the core.
pub(crate) struct Inbox<T> {
    rx: crossbeam_channel::Receiver<T>,
    waker: Arc<Mutex<Option<Waker>>>,
}

/// A command queue.
pub(crate) fn queue<T>() -> (Outbox<T>, Inbox<T>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let waker = Arc::new(Mutex::new(None));
    (
        Outbox {
            tx,
            waker: waker.clone(),
        },
        Inbox { rx, waker },
    )
}

impl<T> Outbox<T> {
    /// Queues `message` and wakes the core if it waits; `Err` when the core has gone.
    pub(crate) fn send(&self, message: T) -> Result<(), T> {
        self.tx.send(message).map_err(|err| err.into_inner())?;
        let waker = self.waker.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }
}

impl<T> Inbox<T> {
    /// The next message; `None` once every sender has gone.
    pub(crate) fn recv(&self) -> Recv<'_, T> {
        Recv { inbox: self }
    }

    /// Forgets the stored waker (as the core ends, so no sender wakes a gone task).
    pub(crate) fn close(&self) {
        self.waker.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

/// See [`Inbox::recv`].
pub(crate) struct Recv<'a, T> {
    inbox: &'a Inbox<T>,
}

impl<T> Future for Recv<'_, T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let inbox = self.inbox;
        let take = || match inbox.rx.try_recv() {
            Ok(message) => Poll::Ready(Some(message)),
            Err(crossbeam_channel::TryRecvError::Disconnected) => Poll::Ready(None),
            Err(crossbeam_channel::TryRecvError::Empty) => Poll::Pending,
        };
        if let Poll::Ready(message) = take() {
            return Poll::Ready(message);
        }
        // Store the waker, then look again: a message sent between the two looks finds the
        // waker stored and wakes us.
        *inbox.waker.lock().unwrap_or_else(|p| p.into_inner()) = Some(cx.waker().clone());
        take()
    }
}
