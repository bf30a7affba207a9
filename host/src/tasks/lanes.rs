//! CPU lanes: the threads that run Wasm attempts, and the order in which attempts get them.
//!
//! Guest code is CPU-bound and gives up its thread only at an epoch tick. Left to the async
//! runtime, a tenant's new attempt (and every reply the server owes) queues behind each
//! spinning guest on the same worker thread. Here attempts run on threads of their own, one
//! slice (up to the next tick) at a time, and every slice goes to the next tenant in turn:
//! first among attempts that are new or were woken by I/O, then among attempts that only used
//! up their slice. A tenant with one new attempt therefore waits for one slice, not for the
//! backlog of another tenant; the request threads never run guest code. Within a tenant the
//! order is arrival: ranking by CPU used would favour short attempts, but would starve a long
//! one past its deadline, which only a slice can enforce.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Wake, Waker};

type BoxedFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A task's state; a task is in at most one queue, and only `QUEUED` ones are.
const IDLE: u8 = 0;
const QUEUED: u8 = 1;
const RUNNING: u8 = 2;
/// Woken while a lane was polling it: requeued when the slice ends.
const RUNNING_WOKEN: u8 = 3;
const DONE: u8 = 4;

/// How much lower the lanes' scheduling priority is than the server's (a nice increment):
/// a reply the server owes then preempts a spinning guest at once, instead of waiting for the
/// kernel to end the guest's time slice.
const LANE_NICENESS: i32 = 10;

/// Which ring a runnable task waits in; a lane always serves `Fresh` before `Yielded`.
#[derive(Clone, Copy)]
enum Class {
    /// New, or woken by something it waited for.
    Fresh = 0,
    /// Used up its slice and asked to go on.
    Yielded = 1,
}

/// The lanes of one server. Dropping it stops the threads once their current slice ends.
pub struct Lanes {
    shared: Arc<Shared>,
}

struct Shared {
    queues: Mutex<Queues>,
    work: Condvar,
}

#[derive(Default)]
struct Queues {
    rings: [TenantRing; 2],
    idle_lanes: usize,
    closed: bool,
}

/// Runnable tasks by tenant, and the order in which tenants get their next slice.
#[derive(Default)]
struct TenantRing {
    turn: VecDeque<Arc<str>>,
    tasks: HashMap<Arc<str>, VecDeque<Arc<Task>>>,
}

impl TenantRing {
    fn push(&mut self, task: Arc<Task>) {
        let tasks = self.tasks.entry(task.tenant.clone()).or_default();
        if tasks.is_empty() {
            self.turn.push_back(task.tenant.clone());
        }
        tasks.push_back(task);
    }

    fn pop(&mut self) -> Option<Arc<Task>> {
        let tenant = self.turn.pop_front()?;
        let tasks = self.tasks.get_mut(&tenant)?;
        let task = tasks.pop_front();
        if tasks.is_empty() {
            // Tenants come and go; an empty queue is not kept for each one ever seen.
            self.tasks.remove(&tenant);
        } else {
            self.turn.push_back(tenant);
        }
        task
    }
}

struct Task {
    tenant: Arc<str>,
    future: Mutex<Option<BoxedFuture>>,
    state: AtomicU8,
    shared: Arc<Shared>,
}

impl Wake for Task {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            let (next, enqueue) = match state {
                IDLE => (QUEUED, true),
                RUNNING => (RUNNING_WOKEN, false),
                _ => return,
            };
            match self
                .state
                .compare_exchange(state, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    if enqueue {
                        self.shared.push(self.clone(), Class::Fresh);
                    }
                    return;
                }
                Err(now) => state = now,
            }
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, task: Arc<Task>, class: Class) {
        let mut queues = self.lock();
        if queues.closed {
            drop(queues);
            // Its caller hears `None`.
            drop(task.future.lock().unwrap_or_else(|e| e.into_inner()).take());
            return;
        }
        queues.rings[class as usize].push(task);
        let wake_a_lane = queues.idle_lanes > 0;
        drop(queues);
        if wake_a_lane {
            self.work.notify_one();
        }
    }

    /// The next task to run, or `None` once the lanes are closed.
    fn next(&self) -> Option<Arc<Task>> {
        let mut queues = self.lock();
        loop {
            if queues.closed {
                return None;
            }
            let [fresh, yielded] = &mut queues.rings;
            if let Some(task) = fresh.pop().or_else(|| yielded.pop()) {
                return Some(task);
            }
            queues.idle_lanes += 1;
            queues = self.work.wait(queues).unwrap_or_else(|e| e.into_inner());
            queues.idle_lanes -= 1;
        }
    }
}

impl Lanes {
    /// Starts `count` lane threads (at least one). Futures run inside `runtime`'s context, so
    /// they may use its timers and I/O.
    pub fn start(count: usize, runtime: tokio::runtime::Handle) -> std::io::Result<Lanes> {
        let shared = Arc::new(Shared {
            queues: Mutex::default(),
            work: Condvar::new(),
        });
        for index in 0..count.max(1) {
            let shared = shared.clone();
            let runtime = runtime.clone();
            std::thread::Builder::new()
                .name(format!("jobhost-lane-{index}"))
                .spawn(move || {
                    lower_priority();
                    let _context = runtime.enter();
                    while let Some(task) = shared.next() {
                        run_slice(task);
                    }
                })?;
        }
        Ok(Lanes { shared })
    }

    /// Runs `future` on the lanes as one of `tenant`'s tasks; resolves to its output, or to
    /// `None` if it panicked or the lanes were stopped before it finished.
    pub fn run<F>(
        &self,
        tenant: &str,
        future: F,
    ) -> impl Future<Output = Option<F::Output>> + use<F>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let task = Arc::new(Task {
            tenant: Arc::from(tenant),
            future: Mutex::new(Some(Box::pin(async move {
                let _ = sender.send(future.await);
            }))),
            state: AtomicU8::new(QUEUED),
            shared: self.shared.clone(),
        });
        self.shared.push(task, Class::Fresh);
        async move { receiver.await.ok() }
    }
}

impl Drop for Lanes {
    fn drop(&mut self) {
        let mut queues = self.shared.lock();
        queues.closed = true;
        let rings = std::mem::take(&mut queues.rings);
        drop(queues);
        self.shared.work.notify_all();
        // Queued futures are dropped, so whoever awaits them hears `None`.
        for mut ring in rings {
            while let Some(task) = ring.pop() {
                drop(task.future.lock().unwrap_or_else(|e| e.into_inner()).take());
            }
        }
    }
}

fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getpriority_process, setpriority_process};
        // On Linux the priority of a thread id is that thread's alone.
        let thread = Some(rustix::thread::gettid());
        let lowered = getpriority_process(thread)
            .and_then(|now| setpriority_process(thread, (now + LANE_NICENESS).min(19)));
        if let Err(error) = lowered {
            tracing::debug!(%error, "a lane thread keeps the server's priority");
        }
    }
}

/// Polls a task once: until it finishes or gives up its slice.
fn run_slice(task: Arc<Task>) {
    task.state.store(RUNNING, Ordering::Release);
    let waker = Waker::from(task.clone());
    let mut context = Context::from_waker(&waker);
    let mut future = task.future.lock().unwrap_or_else(|e| e.into_inner());
    let finished = match future.as_mut() {
        // A panicking task ends (its caller hears `None`); the lane goes on with the next.
        Some(running) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            running.as_mut().poll(&mut context).is_ready()
        }))
        .unwrap_or_else(|_| {
            tracing::error!(tenant = %task.tenant, "a task on the CPU lanes panicked");
            true
        }),
        None => true,
    };
    if finished {
        *future = None;
        task.state.store(DONE, Ordering::Release);
        return;
    }
    drop(future);
    if task
        .state
        .compare_exchange(RUNNING, IDLE, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        // Woken during the slice (an epoch tick's yield wakes itself): it goes on later.
        task.state.store(QUEUED, Ordering::Release);
        task.shared.clone().push(task, Class::Yielded);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    use std::time::{Duration, Instant};

    /// Burns CPU for `slices` slices of `slice` each, yielding between them.
    async fn spin(slices: usize, slice: Duration) {
        for _ in 0..slices {
            let until = Instant::now() + slice;
            while Instant::now() < until {
                std::hint::spin_loop();
            }
            tokio::task::yield_now().await;
        }
    }

    /// Holds its lane, without yielding, until `open` is set; then yields once and ends.
    async fn hold_until(open: Arc<AtomicBool>) {
        while !open.load(Ordering::Acquire) {
            std::hint::spin_loop();
        }
        tokio::task::yield_now().await;
    }

    fn lanes(count: usize) -> Lanes {
        Lanes::start(count, tokio::runtime::Handle::current()).unwrap()
    }

    #[tokio::test]
    async fn a_future_runs_to_its_output() {
        let lanes = lanes(1);
        assert_eq!(lanes.run("t", async { 6 * 7 }).await, Some(42));
    }

    #[tokio::test]
    async fn a_future_can_wait_on_the_runtimes_timers() {
        let lanes = lanes(1);
        let output = lanes
            .run("t", async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                "slept"
            })
            .await;
        assert_eq!(output, Some("slept"));
    }

    #[tokio::test]
    async fn a_new_task_runs_before_another_tenants_running_backlog() {
        let lanes = lanes(1);
        let finished = Arc::new(AtomicUsize::new(0));
        let spinners: Vec<_> = (0..10)
            .map(|_| {
                let finished = finished.clone();
                lanes.run("hostile", async move {
                    spin(50, Duration::from_millis(2)).await;
                    finished.fetch_add(1, Ordering::AcqRel);
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(30)).await;
        let finished_before = {
            let finished = finished.clone();
            lanes
                .run("good", async move { finished.load(Ordering::Acquire) })
                .await
        };
        assert_eq!(finished_before, Some(0));
        for spinner in spinners {
            assert_eq!(spinner.await, Some(()));
        }
    }

    #[tokio::test]
    async fn tenants_take_turns_slice_by_slice_however_many_tasks_each_has() {
        let lanes = lanes(1);
        let open = Arc::new(AtomicBool::new(false));
        let gate = lanes.run("gate", hold_until(open.clone()));
        let order = Arc::new(Mutex::new(Vec::new()));
        let record = |label: &'static str| {
            let order = order.clone();
            async move {
                for _ in 0..2 {
                    order.lock().unwrap().push(label);
                    tokio::task::yield_now().await;
                }
            }
        };
        // Tenant a has two tasks, b one; in arrival order a's two would run before b's.
        let a1 = lanes.run("a", record("a1"));
        let a2 = lanes.run("a", record("a2"));
        let b1 = lanes.run("b", record("b1"));
        open.store(true, Ordering::Release);
        gate.await.unwrap();
        for task in [a1, a2, b1] {
            task.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), ["a1", "b1", "a2", "a1", "b1", "a2"]);
    }

    #[tokio::test]
    async fn a_panicking_task_ends_alone_and_the_lane_goes_on() {
        let lanes = lanes(1);
        let panicked = lanes.run("t", async {
            if true {
                panic!("a host bug");
            }
        });
        assert_eq!(panicked.await, None);
        assert_eq!(lanes.run("t", async { "next" }).await, Some("next"));
    }

    #[tokio::test]
    async fn stopping_the_lanes_answers_none_to_every_unfinished_task() {
        let lanes = lanes(1);
        let open = Arc::new(AtomicBool::new(false));
        let running = lanes.run("t", hold_until(open.clone()));
        let queued = lanes.run("t", async {});
        drop(lanes);
        open.store(true, Ordering::Release);
        assert_eq!(queued.await, None);
        assert_eq!(running.await, None);
    }
}
