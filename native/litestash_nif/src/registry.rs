//! The running stores, by name and by owner pid: where every call finds
//! its store from the server term it was given.
//!
//! Not `persistent_term`: when an entry there is erased or replaced, a
//! process that read it and is in a dirty NIF call at that moment can be
//! left pointing at freed memory (seen on OTP 25.2: `badarg`, or the VM
//! aborts in `ethr_mutex_lock`). A lookup here gives each caller a
//! reference of its own.

use crate::error::{error_tuple, guard};
use crate::resource::StoreResource;
use litestash_core::{Error, ErrorKind, Store};
use rustler::types::atom;
use rustler::{Atom, Encoder, Env, LocalPid, NifResult, ResourceArc, Term};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A store registered under its owner's pid and, if it has one, a name.
struct Entry {
    name: Option<Atom>,
    owner: LocalPid,
    store: ResourceArc<StoreResource>,
}

/// A VM runs a few stores, so a list is the fastest map.
static REGISTRY: RwLock<Vec<Entry>> = RwLock::new(Vec::new());

fn read() -> RwLockReadGuard<'static, Vec<Entry>> {
    REGISTRY
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write() -> RwLockWriteGuard<'static, Vec<Entry>> {
    REGISTRY
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Drops every entry of `store` (its owner died).
pub fn forget(store: &Arc<Store>) {
    write().retain(|entry| !Arc::ptr_eq(&entry.store.store, store));
}

/// The store a call names: a store handle itself, a registered name, or
/// the pid of a store's owner.
///
/// # Errors
/// `Closed` naming the server when no such store runs; `InvalidArgument`
/// for a term that cannot name one.
pub fn resolve(server: Term) -> Result<ResourceArc<StoreResource>, Error> {
    if let Ok(store) = server.decode::<ResourceArc<StoreResource>>() {
        return Ok(store);
    }
    // The server is shown (a string built) only when no store is found.
    let (found, shown): (_, fn(Term) -> String) = if let Ok(name) = server.decode::<Atom>() {
        let found = read()
            .iter()
            .find(|entry| entry.name == Some(name))
            .map(|entry| entry.store.clone());
        (found, shown_atom)
    } else if let Ok(pid) = server.decode::<LocalPid>() {
        let found = read()
            .iter()
            .find(|entry| entry.owner == pid)
            .map(|entry| entry.store.clone());
        (found, |_| "at that pid".to_owned())
    } else {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            "a LiteStash server is a name or a pid",
        ));
    };
    found.ok_or_else(|| {
        Error::new(
            ErrorKind::Closed,
            format!("no LiteStash store {} is running", shown(server)),
        )
    })
}

/// An atom as Elixir shows it: `MyApp.Store` or `:sessions`.
fn shown_atom(term: Term) -> String {
    match term.atom_to_string() {
        Ok(name) => match name.strip_prefix("Elixir.") {
            Some(module) => module.to_owned(),
            None => format!(":{name}"),
        },
        Err(_) => "of that name".to_owned(),
    }
}

/// Registers `store` as owned by the calling process and, unless `name`
/// is nil, under `name` (replacing what was there).
#[rustler::nif]
fn register(env: Env, name: Option<Atom>, store: ResourceArc<StoreResource>) -> NifResult<Term> {
    let _slice = crate::slices::Slice::start();

    guard(env, || {
        let owner = env.pid();
        let mut registry = write();
        registry.retain(|entry| name.is_none() || entry.name != name);
        registry.push(Entry { name, owner, store });
        Ok(atom::ok().encode(env))
    })
}

/// The store handle `server` names, or `{:error, %LiteStash.Error{}}`.
#[rustler::nif]
fn lookup<'a>(env: Env<'a>, server: Term<'a>) -> NifResult<Term<'a>> {
    let _slice = crate::slices::Slice::start();

    guard(env, || {
        Ok(match resolve(server) {
            Ok(store) => (atom::ok(), store).encode(env),
            Err(e) => error_tuple(env, &e),
        })
    })
}

/// Removes the entries of `store`.
#[rustler::nif]
fn unregister(env: Env, store: ResourceArc<StoreResource>) -> NifResult<Term> {
    let _slice = crate::slices::Slice::start();

    guard(env, || {
        forget(&store.store);
        Ok(atom::ok().encode(env))
    })
}
