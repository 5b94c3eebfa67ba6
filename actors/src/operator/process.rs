//! User-written keyed operators (`process`): one instance of the registered
//! [`KeyedProcess`] per core, with its [`KeyedState`] for the key groups the core owns.
//!
//! Rows it emits for an input row carry that row's event time; rows it emits on a watermark
//! carry the watermark. State with a TTL expires by the watermark (event time).

use wire_core::frontend::expr::Expr;
use wire_core::frontend::plan::ProcessPlan;
use wire_core::operator::process::KeyedProcess;
use wire_core::state::KeyedState;
use wire_core::time::watermark::WATERMARK_MIN;
use wire_core::time::window::TimeAttr;
use wire_core::{Batch, Value};

use wire_core::state::snapshot;
use wire_core::state::snapshot::Section;
use wire_core::state::StateError;

use super::{eval_into, open_section, row_time, Output, Stateful};

/// A `process` operator instance.
pub(crate) struct Process {
    function: String,
    instance: Box<dyn KeyedProcess>,
    state: KeyedState,
    keys: Vec<Expr>,
    time: Option<TimeAttr>,
    watermark: i64,
    collected: Vec<Vec<Value>>,
}

impl Process {
    pub(crate) fn new(
        plan: &ProcessPlan,
        max_parallelism: u32,
    ) -> Result<Process, wire_core::Error> {
        let instance = plan
            .instantiate()
            .map_err(|err| wire_core::Error::Process {
                function: plan.function.clone(),
                message: err.to_string(),
            })?;
        let state = KeyedState::new(instance.state_descriptors(), max_parallelism);
        Ok(Process {
            function: plan.function.clone(),
            instance,
            state,
            keys: plan.keys.clone(),
            time: plan.time,
            watermark: WATERMARK_MIN,
            collected: Vec::new(),
        })
    }

    fn failed(&self, err: wire_core::operator::process::ProcessError) -> wire_core::Error {
        wire_core::Error::Process {
            function: self.function.clone(),
            message: err.to_string(),
        }
    }

    fn flush(&mut self, out: &mut Output, time: Option<i64>) -> Result<(), wire_core::Error> {
        for row in self.collected.drain(..) {
            out.push(&row, time)?;
        }
        Ok(())
    }
}

impl Stateful for Process {
    fn on_batch(
        &mut self,
        batch: &Batch,
        _port: usize,
        _now_ms: i64,
        out: &mut Output,
    ) -> Result<(), wire_core::Error> {
        let view = batch.view();
        let keys = std::mem::take(&mut self.keys);
        let mut key = Vec::with_capacity(keys.len());
        let mut result = Ok(());
        for row in view.rows() {
            eval_into(&keys, row, &mut key);
            let time = self.time.and_then(|t| row_time(row, t));
            let now = time.unwrap_or(WATERMARK_MIN).max(self.watermark);
            let mut state = self.state.key(&key, now);
            let processed =
                self.instance
                    .process_row(&key, row, time, &mut state, &mut self.collected);
            drop(state);
            result = match processed {
                Ok(()) => self.flush(out, time),
                Err(err) => Err(self.failed(err)),
            };
            if result.is_err() {
                break;
            }
        }
        self.keys = keys;
        result
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Output) -> Result<(), wire_core::Error> {
        self.watermark = self.watermark.max(watermark);
        self.state.expire(self.watermark);
        let fired =
            self.instance
                .on_watermark(self.watermark, &mut self.state, &mut self.collected);
        if let Err(err) = fired {
            return Err(self.failed(err));
        }
        let time = (self.watermark != i64::MAX).then_some(self.watermark);
        self.flush(out, time)
    }

    fn groups(&self) -> usize {
        self.state.len()
    }

    /// Each key group's [`KeyedState`] snapshot, after the operator's watermark.
    fn snapshot(&mut self, _max_parallelism: u32) -> Result<Vec<Section>, String> {
        let sections = self.state.key_groups().map(|key_group| {
            let mut out = snapshot::begin();
            snapshot::put_i64(&mut out, self.watermark);
            snapshot::put_bytes(&mut out, &self.state.snapshot_key_group(key_group));
            Section {
                key_group,
                bytes: snapshot::seal(out).into(),
            }
        });
        Ok(sections.collect())
    }

    fn restore(&mut self, section: &Section) -> Result<(), StateError> {
        let mut reader = open_section(section)?;
        self.watermark = self.watermark.max(reader.i64("watermark")?);
        let state = reader.bytes("keyed state")?;
        reader.finish()?;
        self.state.restore_key_group(section.key_group, state)?;
        self.instance.on_restore(&mut self.state, section.key_group);
        Ok(())
    }
}
