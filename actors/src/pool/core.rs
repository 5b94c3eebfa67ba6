//! One core of the pool: a task that takes the core's commands, and the pipeline instances
//! it hosts, each a set of tasks of its own on the core.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::inbox::Inbox;
use super::{Event, EventKind, PipelineId};
use crate::pipeline::CoreInstance;

/// How often a core that shuts down looks whether its cancelled pipelines have drained.
const SHUTDOWN_POLL: Duration = Duration::from_millis(5);

/// What a core is told to do.
pub(crate) enum Command {
    /// Start this core's instance of a pipeline.
    Deploy(Box<Hosted>),
    /// The pipeline's sources on this core stop emitting until resumed.
    Pause(PipelineId),
    /// The pipeline's sources on this core emit again.
    Resume(PipelineId),
    /// End the pipeline gracefully: its sources stop, everything drains and flushes.
    Cancel(PipelineId),
    /// Cancel every pipeline, wait for them to end, and end the core.
    Shutdown,
}

/// A pipeline instance on its way to a core, with where it reports.
pub(crate) struct Hosted {
    pub(crate) id: PipelineId,
    pub(crate) instance: CoreInstance,
    pub(crate) events: crossbeam_channel::Sender<Event>,
    pub(crate) done: Done,
}

/// Counts a core's instance as ended when dropped (also when its task unwinds or is dropped
/// with its executor), and wakes whoever waits for the pipeline.
pub(crate) struct Done {
    pub(crate) finished: Arc<AtomicUsize>,
    pub(crate) wake: crossbeam_channel::Sender<()>,
}

impl Drop for Done {
    fn drop(&mut self) {
        self.finished.fetch_add(1, Ordering::Release);
        let _ = self.wake.send(());
    }
}

/// A pipeline instance running on this core.
struct Live {
    stop: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    events: crossbeam_channel::Sender<Event>,
}

type Lives = Rc<RefCell<HashMap<PipelineId, Live>>>;

/// Serves the core's commands until `Shutdown` (or every sender has gone), then cancels what
/// still runs and waits for it. Parks while there is nothing to do.
pub(crate) async fn serve(core: usize, inbox: Inbox<Command>) {
    let lives: Lives = Rc::default();
    while let Some(command) = inbox.recv().await {
        match command {
            Command::Deploy(hosted) => deploy(core, &lives, *hosted),
            Command::Pause(id) => pause(core, &lives, id, true),
            Command::Resume(id) => pause(core, &lives, id, false),
            Command::Cancel(id) => {
                if let Some(live) = lives.borrow().get(&id) {
                    live.stop.store(true, Ordering::Relaxed);
                    live.paused.store(false, Ordering::Relaxed);
                }
            }
            Command::Shutdown => break,
        }
    }
    inbox.close();
    for live in lives.borrow().values() {
        live.stop.store(true, Ordering::Relaxed);
        live.paused.store(false, Ordering::Relaxed);
    }
    while !lives.borrow().is_empty() {
        glommio::timer::sleep(SHUTDOWN_POLL).await;
    }
}

fn deploy(core: usize, lives: &Lives, hosted: Hosted) {
    let Hosted {
        id,
        instance,
        events,
        done,
    } = hosted;
    let live = Live {
        stop: instance.cx.stop.clone(),
        paused: instance.cx.paused.clone(),
        events: events.clone(),
    };
    lives.borrow_mut().insert(id, live);
    let failure = instance.cx.failure.clone();
    let lives = lives.clone();
    let _ = events.send(Event::new(id, core, EventKind::Started));
    glommio::spawn_local(async move {
        let _done = done;
        instance.run().await;
        lives.borrow_mut().remove(&id);
        if let Some(message) = failure.message() {
            let _ = events.send(Event::new(id, core, EventKind::Failed(message)));
        }
        let _ = events.send(Event::new(id, core, EventKind::Finished));
    })
    .detach();
}

fn pause(core: usize, lives: &Lives, id: PipelineId, paused: bool) {
    let lives = lives.borrow();
    let Some(live) = lives.get(&id) else {
        return;
    };
    live.paused.store(paused, Ordering::Relaxed);
    let kind = if paused {
        EventKind::Paused
    } else {
        EventKind::Resumed
    };
    let _ = live.events.send(Event::new(id, core, kind));
}
