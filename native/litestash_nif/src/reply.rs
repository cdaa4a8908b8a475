//! How a queued write's answer reaches the calling process: a message
//! `{reference, answer}`, sent from a thread the VM does not manage.

use crate::error::{error_tuple, ok};
use litestash_core::{Error, Outcome, Reply};
use rustler::env::OwnedEnv;
use rustler::types::atom;
use rustler::{Encoder, Env, Term};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, OnceLock};

rustler::atoms! {
    skipped,
}

/// Runs `work` (a send from an owned env) on a thread the VM does not
/// manage: only such threads may send that way. From a scheduler thread
/// it goes to one long-lived mailer thread.
pub fn off_scheduler(work: impl FnOnce() + Send + 'static) {
    type Mail = Box<dyn FnOnce() + Send>;
    static MAILER: OnceLock<Option<mpsc::Sender<Mail>>> = OnceLock::new();
    if !rustler::thread::is_scheduler_thread() {
        return work();
    }
    let mailer = MAILER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Mail>();
        std::thread::Builder::new()
            .name("litestash mailer".into())
            .spawn(move || {
                for mail in rx {
                    let _ = catch_unwind(AssertUnwindSafe(mail));
                }
            })
            .ok()
            .map(|_| tx)
    });
    let mail: Mail = Box::new(work);
    let mail = match mailer {
        Some(tx) => match tx.send(mail) {
            Ok(()) => return,
            Err(mpsc::SendError(mail)) => mail,
        },
        None => mail,
    };
    // No mailer: a thread of its own, or (if none can be had) lost.
    let _ = std::thread::Builder::new()
        .name("litestash reply".into())
        .spawn(mail);
}

/// The reply for a queued write by the calling process: `{reference,
/// answer}` in its mailbox once committed.
pub fn reply_to(env: Env, reference: Term) -> Reply {
    let pid = env.pid();
    let owned = OwnedEnv::new();
    let saved = owned.save(reference);
    Reply::new(move |outcome| {
        off_scheduler(move || {
            let mut owned = owned;
            let _ = owned.send_and_clear(&pid, |env| {
                (saved.load(env), answer(env, outcome)).encode(env)
            });
        });
    })
}

/// `:ok`, `{:ok, integer}` or `{:error, %LiteStash.Error{}}`.
pub fn answer(env: Env, outcome: Result<Outcome, Error>) -> Term {
    match outcome {
        Ok(Outcome::Integer(n)) => ok(env, n),
        Ok(Outcome::Replicated(answers)) => ok(
            env,
            answers
                .into_iter()
                .map(|a| answer(env, a))
                .collect::<Vec<Term>>(),
        ),
        Ok(Outcome::Skipped) => ok(env, skipped()),
        Ok(_) => atom::ok().encode(env),
        Err(e) => error_tuple(env, &e),
    }
}
