//! Terms to contract values and back, by our own walk over the term's type.
//! Every term maps exactly onto the contract or is refused with a reason;
//! nothing is silently changed (contract section 5).

use litestash_core::{
    decode_into, deeper, Build, Error, ErrorKind, Scalar, Value, MAX_DEPTH, MAX_VALUE_BYTES,
};
use rustler::types::atom;
use rustler::{Atom, Binary, Encoder, Env, MapIterator, NewBinary, Term, TermType};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Why a term was not converted.
pub enum Refusal {
    /// The term breaks the contract.
    Error(Error),
    /// The term is larger than a normal scheduler should walk: the caller
    /// retries on a dirty CPU scheduler.
    OverBudget,
    /// The term holds a struct: Elixir converts it through
    /// `LiteStash.Encoder` and retries, so that the common value costs no
    /// walk in Elixir first.
    Struct,
}

impl Refusal {
    /// The error to answer with: an overrun can only mean a bug where no
    /// limit was set.
    pub fn into_error(self) -> Error {
        match self {
            Refusal::Error(e) => e,
            Refusal::OverBudget => Error::new(
                ErrorKind::Internal,
                "a walk without limit ran out of budget",
            ),
            // Where no Elixir side encodes structs (the contract's own
            // encoding), a struct is refused.
            Refusal::Struct => Error::new(
                ErrorKind::UnsupportedValue,
                "cannot store a struct as such (LiteStash.Encoder converts it first)",
            ),
        }
    }
}

impl From<Error> for Refusal {
    fn from(e: Error) -> Refusal {
        Refusal::Error(e)
    }
}

/// What a walk on a normal scheduler may spend: units of half a
/// nanosecond to a nanosecond of this machine's work on data in the CPU's
/// caches (a walk of 100,000 units over strings took 52 us). Each
/// term costs [`NODE`] (its conversion, allocation, encoding and freeing),
/// each binary's bytes one unit per [`BYTES_PER_UNIT`] (checked as UTF-8,
/// copied, encoded). The walk stops the moment it overspends, and the rest
/// is done on a dirty scheduler.
///
/// Units alone do not bound the time: a term whose cells are not in the
/// caches (another thread has just walked a big value, say) costs about
/// twice as much per unit: refusing a 262,144-string list took 111-120 us
/// of the whole step, a 1,000-string one 59-62 us. So a walk on a normal
/// scheduler also
/// stops at [`WALK_DEADLINE`], read from the clock every
/// [`CHECK_EVERY`] units and before any larger charge (a long binary,
/// copied at once, must fit in what is left of it at a nanosecond a unit).
/// The units keep the common case deterministic and the clock's reads
/// few; the deadline bounds the rest. Measured with the
/// benchmark's normal-scheduler section (`LiteStash.Slices`): with units
/// alone, at 100,000, the whole step took up to 402 us of CPU after big
/// writes.
pub const NORMAL_BUDGET: usize = 60_000;
/// How long a walk on a normal scheduler may take by the clock: the step
/// around it (hashing the key, encoding the value, queueing the write)
/// takes about as long again at most, which keeps the whole call within
/// the scheduler rule's 100 us.
pub const WALK_DEADLINE: Duration = Duration::from_micros(40);
/// Units of work between two reads of the clock (about 2 us of work).
pub const CHECK_EVERY: usize = 2_000;
/// The cost of one term.
pub const NODE: usize = 80;
/// Bytes of a binary per unit of the budget: measured at 0.85 ns a byte
/// (a 200 KB binary's step took 169 us with 2 bytes a unit).
pub const BYTES_PER_UNIT: usize = 1;
/// One key-value pair of a write of many (`set_many`, a replicated
/// entry's op), beyond its key and value: hashing, routing, handing over.
/// Measured at about 3 us a pair (59 pairs took 185 us at 20 nodes a pair).
pub const PAIR: usize = 40 * NODE;

/// How much work a walk may do; `None` for no limit.
pub struct Budget {
    left: Option<usize>,
    bytes: usize,
    /// Read from the clock when the walk starts. Started at the walk's
    /// first check instead (to spare small terms the clock read), it let
    /// the slowest size of the benchmark's map sweep reach a median of
    /// 86-111 us against 63-68 us (2 `--only slices --quick` runs each);
    /// the cause is not known.
    deadline: Option<Instant>,
    until_check: usize,
}

impl Budget {
    /// What a walk on a normal scheduler may spend: [`NORMAL_BUDGET`]
    /// units, and [`WALK_DEADLINE`] from now.
    pub fn normal() -> Budget {
        Budget {
            deadline: Some(Instant::now() + WALK_DEADLINE),
            ..Budget::units_only()
        }
    }

    /// [`NORMAL_BUDGET`] units with no deadline: the same answer for the
    /// same term every time, for the tests that look for the largest
    /// input a walk on a normal scheduler can take.
    #[cfg(feature = "test-hooks")]
    pub fn normal_units() -> Budget {
        Budget::units_only()
    }

    fn units_only() -> Budget {
        Budget {
            left: Some(NORMAL_BUDGET),
            bytes: 0,
            deadline: None,
            until_check: CHECK_EVERY,
        }
    }

    /// No limit: for dirty schedulers.
    pub fn unlimited() -> Budget {
        Budget {
            left: None,
            ..Budget::units_only()
        }
    }

    /// Starts counting the bytes of another value: the size limit is per
    /// value, the time limit per call.
    pub fn next_value(&mut self) {
        self.bytes = 0;
    }

    /// Charges `cost` units of work, with no bytes.
    pub fn charge(&mut self, cost: usize) -> Result<(), Refusal> {
        self.spend(cost, 0)
    }

    fn spend(&mut self, cost: usize, bytes: usize) -> Result<(), Refusal> {
        self.bytes = self.bytes.saturating_add(bytes);
        if self.bytes > MAX_VALUE_BYTES {
            return Err(Refusal::Error(Error::new(
                ErrorKind::ValueTooLarge,
                format!("the value is larger than {MAX_VALUE_BYTES} bytes"),
            )));
        }
        match &mut self.left {
            None => Ok(()),
            Some(left) if *left >= cost => {
                *left -= cost;
                self.check_clock(cost)
            }
            Some(_) => Err(Refusal::OverBudget),
        }
    }

    /// Past the deadline (read every [`CHECK_EVERY`] units) is over budget,
    /// and so is a charge of [`CHECK_EVERY`] or more that would end past it
    /// at a nanosecond a unit: its work is done at once, after the charge.
    fn check_clock(&mut self, cost: usize) -> Result<(), Refusal> {
        let Some(deadline) = self.deadline else {
            return Ok(());
        };
        if cost < CHECK_EVERY && self.until_check > cost {
            self.until_check -= cost;
            return Ok(());
        }
        self.until_check = CHECK_EVERY;
        let now = Instant::now();
        // The work a large charge pays for is still to be done.
        let work = if cost >= CHECK_EVERY {
            Duration::from_nanos(u64::try_from(cost).unwrap_or(u64::MAX))
        } else {
            Duration::ZERO
        };
        match now.checked_add(work) {
            Some(end) if end <= deadline => Ok(()),
            _ => Err(Refusal::OverBudget),
        }
    }
}

fn refuse(what: impl std::fmt::Display) -> Refusal {
    Refusal::Error(Error::new(
        ErrorKind::UnsupportedValue,
        format!("cannot store {what}"),
    ))
}

/// Converts `term` to a contract value.
pub fn to_value(term: Term, budget: &mut Budget) -> Result<Value, Refusal> {
    walk(term, 0, budget)
}

fn walk(term: Term, depth: usize, budget: &mut Budget) -> Result<Value, Refusal> {
    match term.get_type() {
        TermType::Atom => {
            // Its name is looked up and copied.
            budget.spend(2 * NODE, 8)?;
            let a = Atom::from_term(term).map_err(|_| refuse("an atom"))?;
            if a == atom::nil() {
                Ok(Value::Nil)
            } else if a == atom::true_() {
                Ok(Value::Bool(true))
            } else if a == atom::false_() {
                Ok(Value::Bool(false))
            } else {
                Ok(Value::Str(atom_name(term)?))
            }
        }
        TermType::Binary => {
            let bin = Binary::from_term(term)
                .map_err(|_| refuse("a bitstring that is not a whole number of bytes"))?;
            budget.spend(NODE + bin.len() / BYTES_PER_UNIT, bin.len())?;
            Ok(match std::str::from_utf8(bin.as_slice()) {
                Ok(s) => Value::Str(s.to_owned()),
                Err(_) => Value::Bin(bin.as_slice().to_vec()),
            })
        }
        TermType::Integer => {
            budget.spend(NODE, 9)?;
            if let Ok(n) = term.decode::<i64>() {
                Ok(Value::Int(n))
            } else if let Ok(n) = term.decode::<u64>() {
                Ok(Value::UInt(n))
            } else {
                Err(refuse(
                    "an integer outside -9223372036854775808..18446744073709551615 (-2^63..2^64-1)",
                ))
            }
        }
        TermType::Float => {
            budget.spend(NODE, 9)?;
            Ok(Value::Float(
                term.decode::<f64>().map_err(|_| refuse("this float"))?,
            ))
        }
        TermType::List => {
            if depth >= MAX_DEPTH {
                return Err(too_deep());
            }
            budget.spend(NODE, 5)?;
            // Cell by cell, each charged as it is reached: the length of a
            // long list is never counted first, and a list too long for a
            // normal scheduler leaves it after a bounded stretch.
            let mut items = Vec::new();
            let mut rest = term;
            while let Ok((head, tail)) = rest.list_get_cell() {
                budget.charge(NODE)?;
                items.push(deeper(|| walk(head, depth + 1, budget))?);
                rest = tail;
            }
            if !rest.is_empty_list() {
                return Err(refuse("an improper list (its tail is not a list)"));
            }
            Ok(Value::Array(items))
        }
        TermType::Map => {
            if depth >= MAX_DEPTH {
                return Err(too_deep());
            }
            budget.spend(NODE, 5)?;
            if is_struct(term) {
                return Err(Refusal::Struct);
            }
            let iter = MapIterator::new(term).ok_or_else(|| refuse("this map"))?;
            // Capped: a huge map leaves for a dirty scheduler long before.
            let mut entries = Vec::with_capacity(term.map_size().unwrap_or(0).min(1024));
            let mut atom_keys = false;
            for (k, v) in iter {
                // Stepping the map's iterator costs a term's worth.
                budget.charge(NODE)?;
                atom_keys |= k.get_type() == TermType::Atom;
                let key = deeper(|| walk(k, depth + 1, budget))?;
                if matches!(key, Value::Array(_) | Value::Map(_)) {
                    return Err(refuse("a map whose key is a list or map"));
                }
                entries.push((key, deeper(|| walk(v, depth + 1, budget))?));
            }
            if atom_keys {
                budget.charge(NODE * entries.len())?;
                check_collisions(&entries)?;
            }
            Ok(Value::Map(entries))
        }
        TermType::Tuple => Err(refuse("a tuple (store a list or a map instead)")),
        TermType::Pid => Err(refuse("a pid")),
        TermType::Port => Err(refuse("a port")),
        TermType::Ref => Err(refuse("a reference")),
        TermType::Fun => Err(refuse("a function")),
        TermType::Unknown => Err(refuse("a term of unknown type")),
    }
}

/// Whether `map` is an Elixir struct: its `__struct__` key holds an atom.
fn is_struct(map: Term) -> bool {
    map.map_get(atom::__struct__())
        .is_ok_and(|module| module.get_type() == TermType::Atom)
}

/// An atom's name as UTF-8. NIF version 2.16 (OTP 25) reads atom names
/// only as Latin-1; a name beyond Latin-1 is read from the atom's external
/// term format, which carries it as UTF-8.
fn atom_name(term: Term) -> Result<String, Refusal> {
    if let Ok(name) = term.atom_to_string() {
        return Ok(name);
    }
    let external = term.to_binary();
    let bytes = external.as_slice();
    let (latin1, len_bytes) = match bytes.get(1) {
        Some(100) => (true, 2),  // ATOM_EXT
        Some(115) => (true, 1),  // SMALL_ATOM_EXT
        Some(118) => (false, 2), // ATOM_UTF8_EXT
        Some(119) => (false, 1), // SMALL_ATOM_UTF8_EXT
        _ => return Err(refuse("an atom whose name cannot be read")),
    };
    let name = bytes.get(2 + len_bytes..).unwrap_or_default();
    if latin1 {
        Ok(name.iter().map(|&b| char::from(b)).collect())
    } else {
        String::from_utf8(name.to_vec()).map_err(|_| refuse("an atom whose name is not UTF-8"))
    }
}

fn too_deep() -> Refusal {
    Refusal::Error(Error::new(
        ErrorKind::TooDeep,
        format!("cannot store a value nested deeper than {MAX_DEPTH} levels"),
    ))
}

/// Atom keys become text: `%{:a => 1, "a" => 2}` would lose an entry.
fn check_collisions(entries: &[(Value, Value)]) -> Result<(), Refusal> {
    let mut seen = HashSet::with_capacity(entries.len());
    for (key, _) in entries {
        if let Value::Str(s) = key {
            if !seen.insert(s.as_str()) {
                return Err(refuse(format!(
                    "a map with both the atom :{s} and the string {s:?} as keys (atoms are stored as strings)"
                )));
            }
        }
    }
    Ok(())
}

/// A stored value's MessagePack as a term, built in one pass over the
/// bytes (no [`Value`] tree in between): what a read answers with, hit or
/// miss alike.
///
/// # Errors
/// [`ErrorKind::CorruptValue`] for bytes that are not contract MessagePack
/// and for a map with a key twice.
pub fn decode_term<'a>(env: Env<'a>, encoded: &[u8]) -> Result<Term<'a>, Error> {
    decode_into(encoded, &mut Terms { env })
}

/// Builds terms for [`decode_into`].
struct Terms<'a> {
    env: Env<'a>,
}

impl<'a> Build for Terms<'a> {
    type Out = Term<'a>;

    fn scalar(&mut self, scalar: Scalar<'_>) -> Result<Term<'a>, Error> {
        let env = self.env;
        Ok(match scalar {
            Scalar::Nil => atom::nil().encode(env),
            Scalar::Bool(b) => b.encode(env),
            Scalar::Int(n) => n.encode(env),
            Scalar::UInt(n) => n.encode(env),
            Scalar::Float(f) => float_term(env, f)?,
            Scalar::Str(s) => binary(env, s.as_bytes())?,
            Scalar::Bin(b) => binary(env, b)?,
        })
    }

    fn list(&mut self, items: Vec<Term<'a>>) -> Result<Term<'a>, Error> {
        Ok(items.encode(self.env))
    }

    fn map(&mut self, entries: Vec<(Term<'a>, Term<'a>)>) -> Result<Term<'a>, Error> {
        let (keys, values): (Vec<Term>, Vec<Term>) = entries.into_iter().unzip();
        Term::map_from_term_arrays(self.env, &keys, &values).map_err(|_| same_key_twice())
    }
}

fn same_key_twice() -> Error {
    Error::new(ErrorKind::CorruptValue, "stored map has the same key twice")
}

/// A float as a term: NaN and the infinities as the atoms `:nan`,
/// `:infinity` and `:neg_infinity`.
fn float_term(env: Env, f: f64) -> Result<Term, Error> {
    Ok(if f.is_nan() {
        Atom::from_str(env, "nan").map_err(internal)?.encode(env)
    } else if f.is_infinite() {
        let name = if f > 0.0 { "infinity" } else { "neg_infinity" };
        Atom::from_str(env, name).map_err(internal)?.encode(env)
    } else {
        f.encode(env)
    })
}

/// Converts a stored value back to a term.
pub fn to_term<'a>(env: Env<'a>, value: &Value) -> Result<Term<'a>, Error> {
    Ok(match value {
        Value::Nil => atom::nil().encode(env),
        Value::Bool(b) => b.encode(env),
        Value::Int(n) => n.encode(env),
        Value::UInt(n) => n.encode(env),
        Value::Float(f) => float_term(env, *f)?,
        Value::Str(s) => binary(env, s.as_bytes())?,
        Value::Bin(b) => binary(env, b)?,
        Value::Array(items) => {
            let terms = items
                .iter()
                .map(|item| deeper(|| to_term(env, item)))
                .collect::<Result<Vec<_>, _>>()?;
            terms.encode(env)
        }
        Value::Map(entries) => {
            let mut keys = Vec::with_capacity(entries.len());
            let mut values = Vec::with_capacity(entries.len());
            for (k, v) in entries {
                keys.push(to_term(env, k)?);
                values.push(deeper(|| to_term(env, v))?);
            }
            Term::map_from_term_arrays(env, &keys, &values).map_err(|_| same_key_twice())?
        }
    })
}

fn internal(_: rustler::Error) -> Error {
    Error::new(ErrorKind::Internal, "could not make an atom")
}

pub fn binary<'a>(env: Env<'a>, bytes: &[u8]) -> Result<Term<'a>, Error> {
    // Up to 64 bytes this is a heap binary: no reference-counted allocation
    // for the short strings most values are made of.
    let mut binary = NewBinary::new(env, bytes.len());
    binary.as_mut_slice().copy_from_slice(bytes);
    Ok(binary.into())
}
