//! Durable order records in lightningd's datastore, written with compare-and-swap.
//!
//! Each order is one JSON record (its `string` form) under `["magma","orders",<local id>]`
//! (design.md §5). Records are created with `must-create`, so an id is never overwritten, and
//! changed with `must-replace` plus the `generation` that was read, so a write based on a stale
//! copy is refused by lightningd instead of silently undoing another task's transition.
//! [`OrderStore::update`] re-reads and re-applies the change on such a refusal.
//!
//! The datastore is behind the narrow [`Datastore`] trait: [`LightningDatastore`] talks to
//! lightningd, [`MemoryDatastore`] follows the same rules in memory and lets tests inject
//! concurrent writes and failures.
//!
//! Whatever is found in the datastore may have been written by anything (another plugin, an older
//! version of this one, a hand-edit, corruption): an unreadable record is reported as
//! [`StoreError::Corrupt`], never dropped silently and never a panic. Corruption reasons never
//! quote string values of the record, because records hold session keys.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::node::{Node, NodeError};

/// Where the order records live: each is the child `<local id>` of this key.
pub const ORDERS_PREFIX: [&str; 2] = ["magma", "orders"];

/// The longest accepted local order id.
pub const MAX_ID_LEN: usize = 64;

/// How many generation conflicts [`OrderStore::update`] absorbs (re-reading and re-applying the
/// change each time) before it gives up with [`UpdateError::Contended`].
pub const DEFAULT_MAX_CONFLICTS: u32 = 10;

/// lightningd's error codes for the `datastore` command, from `common/jsonrpc_errors.h` and the
/// `errors` section of `doc/schemas/datastore.json` (mirrored by the emulator's
/// `protocol::codes`).
pub mod codes {
    /// `must-create` and the key already exists.
    pub const UPDATE_ALREADY_EXISTS: i64 = 1202;
    /// `must-replace`/`must-append` and the key does not exist.
    pub const UPDATE_DOES_NOT_EXIST: i64 = 1203;
    /// `generation` given and the stored entry has another one.
    pub const UPDATE_WRONG_GENERATION: i64 = 1204;
    /// The key has children, so it cannot hold data.
    pub const UPDATE_HAS_CHILDREN: i64 = 1205;
    /// A parent of the key holds data, so the key cannot be created.
    pub const UPDATE_NO_CHILDREN: i64 = 1206;
}

/// One datastore entry as `listdatastore` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: Vec<String>,
    /// How many times the entry was updated; 0 when `has_children`.
    pub generation: u64,
    /// The data as text (lightningd's `string` field); `None` if the data is not valid UTF-8
    /// (lightningd then only gives `hex`) or the key has no data of its own.
    pub value: Option<String>,
    /// The key holds no data but has sub-keys: `listdatastore` shows such a key once, with only
    /// its `key` field. (A key holds either data or children, never both.)
    pub has_children: bool,
}

impl Entry {
    fn is(&self, key: &[&str]) -> bool {
        self.key.iter().map(String::as_str).eq(key.iter().copied())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// `must-create` refused: the key is taken (lightningd code 1202).
    #[error("the datastore key already exists")]
    Exists,
    /// `must-replace` refused: the entry changed since it was read (lightningd code 1204).
    #[error("the datastore entry changed since it was read (generation conflict)")]
    Conflict,
    /// `must-replace` refused: there is no such entry (lightningd code 1203).
    #[error("the datastore entry does not exist")]
    Missing,
    /// lightningd could not be asked, or refused for another reason, or answered something
    /// unreadable. After a write this means the outcome is **unknown**: the write may have been
    /// applied. Re-read before acting on it (a later [`OrderStore::update`] from the old copy
    /// does that by itself, through a generation conflict).
    #[error("datastore: {0}")]
    Node(String),
    /// An entry under the orders key that is not a readable record.
    #[error("datastore entry [{}] is not a readable order record: {reason}", .key.join(","))]
    Corrupt { key: Vec<String>, reason: String },
    /// A local order id that cannot be a key: refused before the datastore is touched.
    #[error("invalid order id {id:?}: {reason}")]
    InvalidId { id: String, reason: String },
    /// The record could not be serialised to JSON (a bug in the record type); nothing written.
    #[error("order {id} cannot be encoded as JSON: {reason}")]
    Encode { id: String, reason: String },
}

/// A datastore with lightningd's semantics, reduced to what the order store needs.
pub trait Datastore: Send + Sync {
    /// The entries directly below `prefix` (and `prefix` itself if it holds data), as
    /// `listdatastore key=prefix` returns them; a child that has sub-keys appears once with
    /// `has_children`.
    fn list(&self, prefix: &[&str]) -> impl Future<Output = Result<Vec<Entry>, StoreError>> + Send;

    /// The entry at `key`: `None` if there is none, an entry with `has_children` if the key only
    /// has sub-keys.
    fn get(&self, key: &[&str]) -> impl Future<Output = Result<Option<Entry>, StoreError>> + Send {
        async move {
            let Some((_, parent)) = key.split_last() else {
                return Ok(None);
            };
            let entries = self.list(parent).await?;
            Ok(entries.into_iter().find(|e| e.is(key)))
        }
    }

    /// `must-create`: [`StoreError::Exists`] if the key exists. Returns the new generation (0).
    fn create(
        &self,
        key: &[&str],
        value: &str,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// `must-replace` with `generation`: [`StoreError::Conflict`] when the stored generation
    /// differs, [`StoreError::Missing`] when the key does not exist. Returns the new generation.
    fn replace(
        &self,
        key: &[&str],
        value: &str,
        generation: u64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

impl<D: Datastore> Datastore for Arc<D> {
    fn list(&self, prefix: &[&str]) -> impl Future<Output = Result<Vec<Entry>, StoreError>> + Send {
        (**self).list(prefix)
    }

    fn get(&self, key: &[&str]) -> impl Future<Output = Result<Option<Entry>, StoreError>> + Send {
        (**self).get(key)
    }

    fn create(
        &self,
        key: &[&str],
        value: &str,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        (**self).create(key, value)
    }

    fn replace(
        &self,
        key: &[&str],
        value: &str,
        generation: u64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        (**self).replace(key, value, generation)
    }
}

// ---------------------------------------------------------------------------------------------
// lightningd

/// The datastore of the lightningd behind `node`, through `datastore` and `listdatastore`.
#[derive(Clone, Debug)]
pub struct LightningDatastore {
    pub node: Node,
}

/// A refused `datastore` call, by lightningd's code; anything else is [`StoreError::Node`].
fn write_error(e: NodeError) -> StoreError {
    match e.code() {
        Some(codes::UPDATE_ALREADY_EXISTS) => StoreError::Exists,
        Some(codes::UPDATE_DOES_NOT_EXIST) => StoreError::Missing,
        Some(codes::UPDATE_WRONG_GENERATION) => StoreError::Conflict,
        _ => StoreError::Node(e.to_string()),
    }
}

fn key_text(key: &[&str]) -> String {
    format!("[{}]", key.join(","))
}

/// The `generation` of a `datastore` answer.
fn written_generation(answer: &Value, key: &[&str]) -> Result<u64, StoreError> {
    answer
        .get("generation")
        .and_then(Value::as_u64)
        .ok_or_else(|| {
            StoreError::Node(format!(
                "lightningd's answer to datastore {} has no generation; the write may have been applied",
                key_text(key)
            ))
        })
}

/// One item of `listdatastore`'s `datastore` array.
fn parse_entry(item: &Value) -> Result<Entry, String> {
    let key = item
        .get("key")
        .and_then(Value::as_array)
        .ok_or("an entry without a key array")?
        .iter()
        .map(|part| part.as_str().map(str::to_owned))
        .collect::<Option<Vec<String>>>()
        .ok_or("a key part that is not a string")?;
    let value = match item.get("string") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err("a `string` field that is not a string".into()),
    };
    match item.get("generation") {
        // `listdatastore` summarises a key with sub-keys as `{"key": [..]}` alone.
        None if item.get("hex").is_none() && value.is_none() => Ok(Entry {
            key,
            generation: 0,
            value: None,
            has_children: true,
        }),
        None => Err("an entry with data but no generation".into()),
        Some(g) => Ok(Entry {
            key,
            generation: g.as_u64().ok_or("a generation that is not a u64")?,
            value,
            has_children: false,
        }),
    }
}

fn parse_listing(answer: &Value) -> Result<Vec<Entry>, StoreError> {
    let items = answer
        .get("datastore")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            StoreError::Node("listdatastore answered without a datastore array".into())
        })?;
    items
        .iter()
        .map(|item| {
            parse_entry(item)
                .map_err(|reason| StoreError::Node(format!("listdatastore answered {reason}")))
        })
        .collect()
}

impl LightningDatastore {
    pub fn new(node: Node) -> Self {
        LightningDatastore { node }
    }

    async fn listdatastore(&self, key: &[&str]) -> Result<Vec<Entry>, StoreError> {
        let params = if key.is_empty() {
            json!({})
        } else {
            json!({ "key": key })
        };
        let answer = self
            .node
            .call_value("listdatastore", params)
            .await
            .map_err(|e| StoreError::Node(e.to_string()))?;
        parse_listing(&answer)
    }
}

impl Datastore for LightningDatastore {
    async fn list(&self, prefix: &[&str]) -> Result<Vec<Entry>, StoreError> {
        let entries = self.listdatastore(prefix).await?;
        Ok(entries
            .into_iter()
            .filter(|e| {
                e.key.len() <= prefix.len() + 1
                    && e.key
                        .iter()
                        .map(String::as_str)
                        .take(prefix.len())
                        .eq(prefix.iter().copied())
            })
            .collect())
    }

    /// `listdatastore key=<key>` lists the entry itself, or its children if it has some.
    async fn get(&self, key: &[&str]) -> Result<Option<Entry>, StoreError> {
        if key.is_empty() {
            return Ok(None);
        }
        let entries = self.listdatastore(key).await?;
        if let Some(e) = entries.iter().find(|e| e.is(key)) {
            return Ok(Some(e.clone()));
        }
        let below = |e: &Entry| {
            e.key.len() > key.len()
                && e.key
                    .iter()
                    .map(String::as_str)
                    .take(key.len())
                    .eq(key.iter().copied())
        };
        Ok(entries.iter().any(below).then(|| Entry {
            key: key.iter().map(|s| s.to_string()).collect(),
            generation: 0,
            value: None,
            has_children: true,
        }))
    }

    async fn create(&self, key: &[&str], value: &str) -> Result<u64, StoreError> {
        let params = json!({ "key": key, "string": value, "mode": "must-create" });
        let answer = self
            .node
            .call_value("datastore", params)
            .await
            .map_err(write_error)?;
        written_generation(&answer, key)
    }

    async fn replace(&self, key: &[&str], value: &str, generation: u64) -> Result<u64, StoreError> {
        let params = json!({
            "key": key,
            "string": value,
            "mode": "must-replace",
            "generation": generation,
        });
        let answer = self
            .node
            .call_value("datastore", params)
            .await
            .map_err(write_error)?;
        written_generation(&answer, key)
    }
}

// ---------------------------------------------------------------------------------------------
// In memory

/// The operations of [`Datastore`], for [`MemoryDatastore`]'s fault injection and counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    List,
    Get,
    Create,
    Replace,
}

struct Stored {
    data: Vec<u8>,
    generation: u64,
}

/// A writer that slips in before `replace` calls, between the caller's read and its write.
struct Interloper {
    remaining: usize,
    write: Box<dyn FnMut(&str) -> String + Send>,
}

struct Fault {
    op: Op,
    error: StoreError,
    /// The operation takes effect and only its answer is lost.
    after: bool,
}

enum PutMode {
    MustCreate,
    MustReplace(u64),
    CreateOrReplace,
}

#[derive(Default)]
struct MemoryState {
    entries: BTreeMap<Vec<String>, Stored>,
    interloper: Option<Interloper>,
    faults: Vec<Fault>,
    calls: BTreeMap<Op, usize>,
}

/// lightningd's datastore rules in memory (as `lightningd/datastore.c` and the emulator's
/// `datastore.rs` apply them), with hooks for tests: concurrent writers and failures.
#[derive(Default)]
pub struct MemoryDatastore {
    state: Mutex<MemoryState>,
}

fn owned(key: &[&str]) -> Vec<String> {
    key.iter().map(|s| s.to_string()).collect()
}

fn data_entry(key: &[String], s: &Stored) -> Entry {
    Entry {
        key: key.to_vec(),
        generation: s.generation,
        value: String::from_utf8(s.data.clone()).ok(),
        has_children: false,
    }
}

impl MemoryState {
    /// lightningd's `datastore` for the modes we use, in its order of checks.
    fn put(&mut self, key: Vec<String>, data: Vec<u8>, mode: PutMode) -> Result<u64, StoreError> {
        let prev = self.entries.get(&key).map(|s| s.generation);
        if prev.is_none() {
            if self
                .entries
                .keys()
                .any(|k| k.len() > key.len() && k.starts_with(&key))
            {
                return Err(StoreError::Node(format!(
                    "lightningd refused datastore: Key has children already (code {})",
                    codes::UPDATE_HAS_CHILDREN
                )));
            }
            for i in 1..key.len() {
                if self.entries.contains_key(&key[..i]) {
                    return Err(StoreError::Node(format!(
                        "lightningd refused datastore: Parent key [{}] exists (code {})",
                        key[..i].join(","),
                        codes::UPDATE_NO_CHILDREN
                    )));
                }
            }
        }
        let generation = match (mode, prev) {
            (PutMode::MustCreate, Some(_)) => return Err(StoreError::Exists),
            (PutMode::MustReplace(_), None) => return Err(StoreError::Missing),
            (PutMode::MustReplace(want), Some(have)) if want != have => {
                return Err(StoreError::Conflict);
            }
            (_, Some(have)) => have + 1,
            (_, None) => 0,
        };
        self.entries.insert(key, Stored { data, generation });
        Ok(generation)
    }

    fn list(&self, prefix: &[String]) -> Vec<Entry> {
        let mut out: Vec<Entry> = vec![];
        for (k, s) in self.entries.range(prefix.to_vec()..) {
            if !k.starts_with(prefix) {
                break;
            }
            if k.len() > prefix.len() + 1 {
                let summary = &k[..prefix.len() + 1];
                if out.last().is_none_or(|e| e.key != summary) {
                    out.push(Entry {
                        key: summary.to_vec(),
                        generation: 0,
                        value: None,
                        has_children: true,
                    });
                }
            } else {
                out.push(data_entry(k, s));
            }
        }
        out
    }

    /// Counts the call and takes the first fault queued for `op`.
    fn begin(&mut self, op: Op) -> Option<Fault> {
        *self.calls.entry(op).or_default() += 1;
        let i = self.faults.iter().position(|f| f.op == op)?;
        Some(self.faults.remove(i))
    }

    /// Runs `f` unless a fault says otherwise.
    fn run<R>(
        &mut self,
        op: Op,
        f: impl FnOnce(&mut Self) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        match self.begin(op) {
            Some(Fault {
                error,
                after: false,
                ..
            }) => Err(error),
            Some(Fault {
                error, after: true, ..
            }) => {
                let _ = f(self);
                Err(error)
            }
            None => f(self),
        }
    }
}

impl MemoryDatastore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, MemoryState> {
        // The state stays consistent across a panic in a test hook: every change is one insert.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes raw bytes at `key` (`create-or-replace`), as another plugin, an older version or
    /// corruption could. Returns the new generation.
    pub fn put_raw(&self, key: &[&str], data: &[u8]) -> Result<u64, StoreError> {
        self.lock()
            .put(owned(key), data.to_vec(), PutMode::CreateOrReplace)
    }

    /// Deletes `key`, as `deldatastore` would; returns whether it existed.
    pub fn remove(&self, key: &[&str]) -> bool {
        self.lock().entries.remove(&owned(key)).is_some()
    }

    /// The stored bytes and generation at `key`.
    pub fn raw(&self, key: &[&str]) -> Option<(Vec<u8>, u64)> {
        self.lock()
            .entries
            .get(&owned(key))
            .map(|s| (s.data.clone(), s.generation))
    }

    /// A concurrent writer: during each of the next `times` `replace` calls, before the
    /// generation is checked, `write` rewrites the entry being replaced (it gets the stored text
    /// and returns the new one), bumping its generation as another task's write would.
    pub fn interleave_writes(
        &self,
        times: usize,
        write: impl FnMut(&str) -> String + Send + 'static,
    ) {
        self.lock().interloper = Some(Interloper {
            remaining: times,
            write: Box::new(write),
        });
    }

    /// The next call of `op` fails with `error` and changes nothing.
    pub fn fail_next(&self, op: Op, error: StoreError) {
        self.lock().faults.push(Fault {
            op,
            error,
            after: false,
        });
    }

    /// The next call of `op` takes effect but answers `error`, as when the connection to
    /// lightningd breaks after the write.
    pub fn lose_next_answer(&self, op: Op, error: StoreError) {
        self.lock().faults.push(Fault {
            op,
            error,
            after: true,
        });
    }

    /// How many times `op` was called.
    pub fn calls(&self, op: Op) -> usize {
        self.lock().calls.get(&op).copied().unwrap_or(0)
    }
}

impl Datastore for MemoryDatastore {
    async fn list(&self, prefix: &[&str]) -> Result<Vec<Entry>, StoreError> {
        let prefix = owned(prefix);
        self.lock().run(Op::List, |st| Ok(st.list(&prefix)))
    }

    async fn get(&self, key: &[&str]) -> Result<Option<Entry>, StoreError> {
        let key = owned(key);
        self.lock().run(Op::Get, |st| {
            if let Some(s) = st.entries.get(&key) {
                return Ok(Some(data_entry(&key, s)));
            }
            let has_children = st
                .entries
                .keys()
                .any(|k| k.len() > key.len() && k.starts_with(&key));
            Ok(has_children.then(|| Entry {
                key: key.clone(),
                generation: 0,
                value: None,
                has_children: true,
            }))
        })
    }

    async fn create(&self, key: &[&str], value: &str) -> Result<u64, StoreError> {
        let key = owned(key);
        self.lock().run(Op::Create, |st| {
            st.put(key, value.as_bytes().to_vec(), PutMode::MustCreate)
        })
    }

    async fn replace(&self, key: &[&str], value: &str, generation: u64) -> Result<u64, StoreError> {
        let key = owned(key);
        self.lock().run(Op::Replace, |st| {
            if let Some(mut i) = st.interloper.take() {
                if i.remaining > 0
                    && let Some(s) = st.entries.get_mut(&key)
                {
                    s.data = (i.write)(&String::from_utf8_lossy(&s.data)).into_bytes();
                    s.generation += 1;
                    i.remaining -= 1;
                }
                if i.remaining > 0 {
                    st.interloper = Some(i);
                }
            }
            st.put(
                key,
                value.as_bytes().to_vec(),
                PutMode::MustReplace(generation),
            )
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Orders

/// A record with the generation it was read or written at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    pub id: String,
    pub generation: u64,
    pub record: T,
}

#[derive(Debug, thiserror::Error)]
pub enum UpdateError<E> {
    /// `change` returned an error; nothing was written by this update.
    #[error("the change was refused: {0}")]
    Aborted(E),
    /// The datastore failed (see [`StoreError::Node`] on unknown outcomes), the record
    /// disappeared ([`StoreError::Missing`]) or became unreadable ([`StoreError::Corrupt`]).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Other writers changed the record `attempts` times in a row between our read and our
    /// write. Their transitions are stored; ours is not: read the record again and retry.
    #[error(
        "order {id}: the record kept changing under this update ({attempts} attempts); nothing written"
    )]
    Contended { id: String, attempts: u32 },
}

/// Checks a local order id: non-empty, at most [`MAX_ID_LEN`] characters of `[A-Za-z0-9_-]`.
pub fn validate_id(id: &str) -> Result<(), StoreError> {
    let refuse = |reason: &str| {
        Err(StoreError::InvalidId {
            id: id.chars().take(MAX_ID_LEN + 8).collect(),
            reason: reason.to_string(),
        })
    };
    if id.is_empty() {
        return refuse("empty");
    }
    if id.len() > MAX_ID_LEN {
        return refuse("longer than 64 characters");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return refuse("only letters, digits, '_' and '-' are allowed");
    }
    Ok(())
}

/// A serde error's text without the values it quotes: `invalid type: string "…"` could show a
/// session key. Field names in "missing field" and "duplicate field" come from the record type
/// and stay.
fn redact(message: &str) -> String {
    let keep_backticks =
        message.starts_with("missing field") || message.starts_with("duplicate field");
    let mut out = String::with_capacity(message.len());
    let mut open: Option<char> = None;
    let mut escaped = false;
    for c in message.chars() {
        match open {
            None => {
                out.push(c);
                if c == '"' || (c == '`' && !keep_backticks) {
                    open = Some(c);
                }
            }
            Some(_) if escaped => escaped = false,
            Some(_) if c == '\\' => escaped = true,
            Some(q) if c == q => {
                out.push('…');
                out.push(q);
                open = None;
            }
            Some(_) => {}
        }
    }
    out
}

fn decode<T: DeserializeOwned>(entry: Entry) -> Result<Versioned<T>, StoreError> {
    let corrupt = |key: Vec<String>, reason: String| Err(StoreError::Corrupt { key, reason });
    let id = match entry.key.as_slice() {
        [a, b, id] if a == ORDERS_PREFIX[0] && b == ORDERS_PREFIX[1] => id.clone(),
        _ => return corrupt(entry.key, "not an order key".into()),
    };
    if let Err(e) = validate_id(&id) {
        return corrupt(entry.key, e.to_string());
    }
    if entry.has_children {
        return corrupt(entry.key, "holds sub-keys instead of a record".into());
    }
    let Some(text) = entry.value else {
        return corrupt(entry.key, "binary data (not UTF-8 text)".into());
    };
    match serde_json::from_str::<T>(&text) {
        Ok(record) => Ok(Versioned {
            id,
            generation: entry.generation,
            record,
        }),
        Err(e) => corrupt(entry.key, redact(&e.to_string())),
    }
}

/// Order records of type `T` under [`ORDERS_PREFIX`]; the record type owns its schema.
pub struct OrderStore<D> {
    ds: D,
    max_conflicts: u32,
}

impl<D: Datastore> OrderStore<D> {
    pub fn new(ds: D) -> Self {
        OrderStore {
            ds,
            max_conflicts: DEFAULT_MAX_CONFLICTS,
        }
    }

    /// Changes how many conflicts [`OrderStore::update`] absorbs before giving up.
    pub fn with_max_conflicts(mut self, max_conflicts: u32) -> Self {
        self.max_conflicts = max_conflicts;
        self
    }

    pub fn datastore(&self) -> &D {
        &self.ds
    }

    fn key(id: &str) -> [&str; 3] {
        [ORDERS_PREFIX[0], ORDERS_PREFIX[1], id]
    }

    fn encode<T: Serialize>(id: &str, record: &T) -> Result<String, StoreError> {
        serde_json::to_string(record).map_err(|e| StoreError::Encode {
            id: id.to_string(),
            reason: redact(&e.to_string()),
        })
    }

    /// Stores a new record (`must-create`): [`StoreError::Exists`] if the id is taken, which
    /// leaves the stored record as it was.
    pub async fn insert<T: Serialize + Clone>(
        &self,
        id: &str,
        record: &T,
    ) -> Result<Versioned<T>, StoreError> {
        validate_id(id)?;
        let text = Self::encode(id, record)?;
        let generation = self.ds.create(&Self::key(id), &text).await?;
        Ok(Versioned {
            id: id.to_string(),
            generation,
            record: record.clone(),
        })
    }

    /// Every entry under the orders key: the readable records, and beside them one
    /// [`StoreError::Corrupt`] per entry that is not. Fails only if the listing itself fails.
    pub async fn load_all<T: DeserializeOwned>(
        &self,
    ) -> Result<(Vec<Versioned<T>>, Vec<StoreError>), StoreError> {
        let mut good = vec![];
        let mut bad = vec![];
        for entry in self.ds.list(&ORDERS_PREFIX).await? {
            match decode(entry) {
                Ok(v) => good.push(v),
                Err(e) => bad.push(e),
            }
        }
        Ok((good, bad))
    }

    /// The record `id`, `None` if there is none, [`StoreError::Corrupt`] if it is unreadable.
    pub async fn get<T: DeserializeOwned>(
        &self,
        id: &str,
    ) -> Result<Option<Versioned<T>>, StoreError> {
        validate_id(id)?;
        match self.ds.get(&Self::key(id)).await? {
            None => Ok(None),
            Some(entry) => decode(entry).map(Some),
        }
    }

    /// Read-modify-write with compare-and-swap, starting from `current`.
    ///
    /// `change` is applied to a copy of the record and the result written with `current`'s
    /// generation. When another writer got there first, the record is re-read and `change`
    /// applied again to the fresh copy, up to the conflict limit, so concurrent writers never
    /// lose each other's transitions. `change` may therefore run several times and must only
    /// edit the record (act on the result after `update` returns); it returns `Ok(false)` when
    /// there is nothing to write (the transition already happened: checking for that makes a
    /// retry after a lost answer safe) and `Err` to abort. Returns the record as stored now.
    pub async fn update<T, F, E>(
        &self,
        current: &Versioned<T>,
        mut change: F,
    ) -> Result<Versioned<T>, UpdateError<E>>
    where
        T: Serialize + DeserializeOwned + Clone,
        F: FnMut(&mut T) -> Result<bool, E>,
    {
        validate_id(&current.id)?;
        let key = Self::key(&current.id);
        let mut base = current.clone();
        let mut conflicts = 0;
        loop {
            let mut record = base.record.clone();
            match change(&mut record) {
                Ok(false) => return Ok(base),
                Ok(true) => {}
                Err(e) => return Err(UpdateError::Aborted(e)),
            }
            let text = Self::encode(&base.id, &record)?;
            match self.ds.replace(&key, &text, base.generation).await {
                Ok(generation) => {
                    return Ok(Versioned {
                        id: base.id,
                        generation,
                        record,
                    });
                }
                Err(StoreError::Conflict) => {
                    conflicts += 1;
                    if conflicts > self.max_conflicts {
                        return Err(UpdateError::Contended {
                            id: base.id,
                            attempts: conflicts,
                        });
                    }
                    base = self
                        .get(&base.id)
                        .await?
                        .ok_or(UpdateError::Store(StoreError::Missing))?;
                }
                Err(e) => return Err(UpdateError::Store(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::convert::Infallible;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Order {
        state: String,
        transitions: Vec<String>,
    }

    fn order(state: &str) -> Order {
        Order {
            state: state.into(),
            transitions: vec![state.into()],
        }
    }

    /// A transition: sets the state and records it, unless it is already recorded.
    fn to(state: &'static str) -> impl FnMut(&mut Order) -> Result<bool, Infallible> {
        move |o: &mut Order| {
            if o.transitions.iter().any(|t| t == state) {
                return Ok(false);
            }
            o.state = state.into();
            o.transitions.push(state.into());
            Ok(true)
        }
    }

    /// What a concurrent writer does to the stored JSON: appends transition `state`.
    fn other_writer(state: &'static str) -> impl FnMut(&str) -> String + Send + 'static {
        move |text: &str| {
            let mut o: Order = serde_json::from_str(text).unwrap();
            o.transitions.push(state.into());
            o.state = state.into();
            serde_json::to_string(&o).unwrap()
        }
    }

    fn store() -> OrderStore<Arc<MemoryDatastore>> {
        OrderStore::new(Arc::new(MemoryDatastore::new()))
    }

    fn stored(s: &OrderStore<Arc<MemoryDatastore>>, id: &str) -> (Order, u64) {
        let (data, generation) = s.datastore().raw(&["magma", "orders", id]).unwrap();
        (serde_json::from_slice(&data).unwrap(), generation)
    }

    #[tokio::test]
    async fn insert_then_get() {
        let s = store();
        let v = s.insert("o1", &order("PLACING")).await.unwrap();
        assert_eq!(v.generation, 0);
        assert_eq!(v.id, "o1");
        let got: Versioned<Order> = s.get("o1").await.unwrap().unwrap();
        assert_eq!(got, v);
        assert_eq!(s.get::<Order>("o2").await.unwrap(), None);
        // Stored as JSON text.
        let (data, _) = s.datastore().raw(&["magma", "orders", "o1"]).unwrap();
        assert_eq!(
            String::from_utf8(data).unwrap(),
            r#"{"state":"PLACING","transitions":["PLACING"]}"#
        );
    }

    #[tokio::test]
    async fn insert_twice_is_refused_and_keeps_the_first() {
        let s = store();
        s.insert("o1", &order("PLACING")).await.unwrap();
        let e = s.insert("o1", &order("PLACED")).await.unwrap_err();
        assert_eq!(e, StoreError::Exists);
        assert_eq!(stored(&s, "o1"), (order("PLACING"), 0));
    }

    #[tokio::test]
    async fn update_without_conflict() {
        let s = store();
        let v = s.insert("o1", &order("PLACING")).await.unwrap();
        let v = s.update(&v, to("PLACED")).await.unwrap();
        assert_eq!(v.generation, 1);
        assert_eq!(v.record.transitions, ["PLACING", "PLACED"]);
        assert_eq!(stored(&s, "o1"), (v.record.clone(), 1));
        let v = s.update(&v, to("PAYING")).await.unwrap();
        assert_eq!(v.generation, 2);
        assert_eq!(s.get::<Order>("o1").await.unwrap(), Some(v));
        assert_eq!(s.datastore().calls(Op::Replace), 2);
        assert_eq!(
            s.datastore().calls(Op::Get),
            1,
            "no re-read without a conflict"
        );
    }

    #[tokio::test]
    async fn a_concurrent_write_is_kept_and_the_change_reapplied() {
        let s = store();
        let v = s.insert("o1", &order("PLACING")).await.unwrap();
        s.datastore().interleave_writes(1, other_writer("POLLED"));
        let after = s.update(&v, to("PLACED")).await.unwrap();
        assert_eq!(after.record.transitions, ["PLACING", "POLLED", "PLACED"]);
        assert_eq!(after.generation, 2);
        assert_eq!(stored(&s, "o1"), (after.record, 2));
        assert_eq!(s.datastore().calls(Op::Replace), 2);
    }

    #[tokio::test]
    async fn a_concurrent_write_of_the_same_transition_is_not_repeated() {
        let s = store();
        let v = s.insert("o1", &order("PLACING")).await.unwrap();
        s.datastore().interleave_writes(1, other_writer("PLACED"));
        let after = s.update(&v, to("PLACED")).await.unwrap();
        assert_eq!(after.record.transitions, ["PLACING", "PLACED"]);
        assert_eq!(
            after.generation, 1,
            "the other writer's write, nothing after it"
        );
        assert_eq!(stored(&s, "o1"), (after.record, 1));
    }

    #[tokio::test]
    async fn nothing_to_change_writes_nothing() {
        let s = store();
        let v = s.insert("o1", &order("PLACING")).await.unwrap();
        let same = s.update(&v, to("PLACING")).await.unwrap();
        assert_eq!(same, v);
        assert_eq!(s.datastore().calls(Op::Replace), 0);
        assert_eq!(stored(&s, "o1").1, 0);
    }

    #[tokio::test]
    async fn an_aborted_change_writes_nothing() {
        let s = store();
        let v = s.insert("o1", &order("PLACING")).await.unwrap();
        let e = s
            .update(&v, |o: &mut Order| {
                o.state = "HALF-DONE".into();
                Err::<bool, _>("not allowed")
            })
            .await
            .unwrap_err();
        assert!(matches!(e, UpdateError::Aborted("not allowed")), "{e:?}");
        assert_eq!(stored(&s, "o1"), (order("PLACING"), 0));
        assert_eq!(s.datastore().calls(Op::Replace), 0);
    }

    #[tokio::test]
    async fn conflicts_beyond_the_limit_fail_without_losing_anything() {
        let s = OrderStore::new(Arc::new(MemoryDatastore::new())).with_max_conflicts(3);
        let v = s.insert("o1", &order("PLACING")).await.unwrap();
        let mut n = 0;
        s.datastore()
            .interleave_writes(usize::MAX, move |text: &str| {
                let mut o: Order = serde_json::from_str(text).unwrap();
                n += 1;
                o.transitions.push(format!("other{n}"));
                serde_json::to_string(&o).unwrap()
            });
        let e = s.update(&v, to("PLACED")).await.unwrap_err();
        assert!(
            matches!(&e, UpdateError::Contended { id, attempts: 4 } if id == "o1"),
            "{e:?}"
        );
        assert_eq!(s.datastore().calls(Op::Replace), 4);
        let (now, generation) = stored(&s, "o1");
        assert_eq!(
            now.transitions,
            ["PLACING", "other1", "other2", "other3", "other4"],
            "every competing write is there, ours is not"
        );
        assert_eq!(generation, 4);
        // Once the contention stops, a retry from a fresh read goes through.
        s.datastore().interleave_writes(0, |t: &str| t.to_string());
        let fresh: Versioned<Order> = s.get("o1").await.unwrap().unwrap();
        let done = s.update(&fresh, to("PLACED")).await.unwrap();
        assert_eq!(done.record.transitions.last().unwrap(), "PLACED");
        assert_eq!(done.record.transitions.len(), 6);
    }

    #[tokio::test]
    async fn a_failed_write_changes_nothing_and_says_so() {
        let s = store();
        let v = s.insert("o1", &order("PLACING")).await.unwrap();
        s.datastore()
            .fail_next(Op::Replace, StoreError::Node("connection refused".into()));
        let e = s.update(&v, to("PLACED")).await.unwrap_err();
        assert!(
            matches!(&e, UpdateError::Store(StoreError::Node(m)) if m == "connection refused"),
            "{e:?}"
        );
        assert_eq!(stored(&s, "o1"), (order("PLACING"), 0));
        // The same update afterwards succeeds.
        let v = s.update(&v, to("PLACED")).await.unwrap();
        assert_eq!(v.generation, 1);

        s.datastore()
            .fail_next(Op::List, StoreError::Node("connection refused".into()));
        assert!(matches!(
            s.load_all::<Order>().await,
            Err(StoreError::Node(_))
        ));
        s.datastore()
            .fail_next(Op::Create, StoreError::Node("connection refused".into()));
        assert!(matches!(
            s.insert("o2", &order("PLACING")).await,
            Err(StoreError::Node(_))
        ));
        assert_eq!(s.datastore().raw(&["magma", "orders", "o2"]), None);
    }

    #[tokio::test]
    async fn a_lost_answer_then_a_retry_does_not_repeat_the_transition() {
        let s = store();
        let v = s.insert("o1", &order("PLACING")).await.unwrap();
        s.datastore()
            .lose_next_answer(Op::Replace, StoreError::Node("connection reset".into()));
        let e = s.update(&v, to("PLACED")).await.unwrap_err();
        assert!(
            matches!(e, UpdateError::Store(StoreError::Node(_))),
            "{e:?}"
        );
        // The write did land.
        assert_eq!(stored(&s, "o1").1, 1);
        // Retrying from the old copy: conflict, re-read, the transition is there, nothing written.
        let after = s.update(&v, to("PLACED")).await.unwrap();
        assert_eq!(after.record.transitions, ["PLACING", "PLACED"]);
        assert_eq!(after.generation, 1);
        assert_eq!(s.datastore().calls(Op::Replace), 2);
    }

    #[tokio::test]
    async fn a_record_deleted_meanwhile_is_reported_missing() {
        let s = store();
        let v = s.insert("o1", &order("PLACING")).await.unwrap();
        assert!(s.datastore().remove(&["magma", "orders", "o1"]));
        let e = s.update(&v, to("PLACED")).await.unwrap_err();
        assert!(
            matches!(e, UpdateError::Store(StoreError::Missing)),
            "{e:?}"
        );
        assert_eq!(s.datastore().raw(&["magma", "orders", "o1"]), None);
    }

    #[tokio::test]
    async fn unreadable_entries_come_back_beside_the_good_ones() {
        let s = store();
        let ds = s.datastore();
        s.insert("good1", &order("PLACING")).await.unwrap();
        ds.put_raw(&["magma", "orders", "notjson"], b"{\"state\": ")
            .unwrap();
        ds.put_raw(&["magma", "orders", "binary"], &[0xff, 0xfe, 0x00])
            .unwrap();
        ds.put_raw(&["magma", "orders", "shape"], br#"{"state": 7}"#)
            .unwrap();
        ds.put_raw(&["magma", "orders", "parent", "child"], b"{}")
            .unwrap();
        ds.put_raw(
            &["magma", "orders", "bad id"],
            br#"{"state":"PAID","transitions":[]}"#,
        )
        .unwrap();
        s.insert("good2", &order("PAID")).await.unwrap();
        // Not under the orders key: not listed at all.
        ds.put_raw(&["magma", "config"], b"x").unwrap();
        ds.put_raw(&["magma", "ordersx", "o"], b"x").unwrap();
        ds.put_raw(&["other", "orders", "o"], b"x").unwrap();

        let (good, bad) = s.load_all::<Order>().await.unwrap();
        let ids: Vec<&str> = good.iter().map(|v| v.id.as_str()).collect();
        assert_eq!(ids, ["good1", "good2"]);
        assert_eq!(good[1].record, order("PAID"));
        let mut corrupt: Vec<(String, String)> = bad
            .iter()
            .map(|e| match e {
                StoreError::Corrupt { key, reason } => (key.join("/"), reason.clone()),
                other => panic!("not Corrupt: {other:?}"),
            })
            .collect();
        corrupt.sort();
        let keys: Vec<&str> = corrupt.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "magma/orders/bad id",
                "magma/orders/binary",
                "magma/orders/notjson",
                "magma/orders/parent",
                "magma/orders/shape"
            ]
        );
        assert!(corrupt[0].1.contains("invalid order id"), "{corrupt:?}");
        assert!(corrupt[1].1.contains("binary"), "{corrupt:?}");
        assert!(corrupt[2].1.contains("EOF"), "{corrupt:?}");
        assert!(corrupt[3].1.contains("sub-keys"), "{corrupt:?}");
        assert!(corrupt[4].1.contains("invalid type"), "{corrupt:?}");

        // get of one of them: the same error.
        let e = s.get::<Order>("notjson").await.unwrap_err();
        assert!(matches!(e, StoreError::Corrupt { .. }), "{e:?}");
        let e = s.get::<Order>("parent").await.unwrap_err();
        assert!(matches!(&e, StoreError::Corrupt { reason, .. } if reason.contains("sub-keys")));
    }

    #[tokio::test]
    async fn corruption_reasons_do_not_quote_record_values() {
        let s = store();
        let secret = "sk_live_0123456789abcdef";
        let text = format!(r#"{{"state": "PAID", "transitions": "{secret}"}}"#);
        s.datastore()
            .put_raw(&["magma", "orders", "o1"], text.as_bytes())
            .unwrap();
        let e = s.get::<Order>("o1").await.unwrap_err();
        let StoreError::Corrupt { reason, .. } = &e else {
            panic!("{e:?}")
        };
        assert!(!e.to_string().contains(secret), "{e}");
        assert!(reason.contains("invalid type"), "{reason}");

        let missing = br#"{"transitions": []}"#;
        s.datastore()
            .put_raw(&["magma", "orders", "o2"], missing)
            .unwrap();
        let e = s.get::<Order>("o2").await.unwrap_err();
        assert!(e.to_string().contains("missing field `state`"), "{e}");
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redact(r#"invalid type: string "a\"b`c", expected u64 at line 1 column 9"#),
            r#"invalid type: string "…", expected u64 at line 1 column 9"#
        );
        assert_eq!(
            redact("unknown variant `sekrit`, expected `A` or `B`"),
            "unknown variant `…`, expected `…` or `…`"
        );
        assert_eq!(redact("missing field `state`"), "missing field `state`");
        assert_eq!(redact(r#"unterminated "abc"#), r#"unterminated ""#);
    }

    #[tokio::test]
    async fn bad_ids_are_refused_before_the_datastore_is_touched() {
        let s = store();
        let long = "a".repeat(MAX_ID_LEN + 1);
        for id in ["", "a/b", "a b", "ü", "a,b", "a.b", long.as_str()] {
            let e = s.insert(id, &order("PLACING")).await.unwrap_err();
            assert!(matches!(e, StoreError::InvalidId { .. }), "{id:?}: {e:?}");
            let e = s.get::<Order>(id).await.unwrap_err();
            assert!(matches!(e, StoreError::InvalidId { .. }), "{id:?}: {e:?}");
            let v = Versioned {
                id: id.to_string(),
                generation: 0,
                record: order("PLACING"),
            };
            let e = s.update(&v, to("PLACED")).await.unwrap_err();
            assert!(
                matches!(e, UpdateError::Store(StoreError::InvalidId { .. })),
                "{id:?}: {e:?}"
            );
        }
        for op in [Op::List, Op::Get, Op::Create, Op::Replace] {
            assert_eq!(s.datastore().calls(op), 0, "{op:?}");
        }
        let ok = "A-z_09".to_string() + &"x".repeat(MAX_ID_LEN - 6);
        s.insert(&ok, &order("PLACING")).await.unwrap();
    }

    #[tokio::test]
    async fn memory_datastore_follows_lightningds_rules() {
        let ds = MemoryDatastore::new();
        assert_eq!(ds.create(&["a", "b"], "1").await, Ok(0));
        assert_eq!(ds.create(&["a", "b"], "2").await, Err(StoreError::Exists));
        assert_eq!(
            ds.replace(&["a", "b"], "2", 1).await,
            Err(StoreError::Conflict)
        );
        assert_eq!(
            ds.replace(&["a", "c"], "2", 0).await,
            Err(StoreError::Missing)
        );
        assert_eq!(ds.replace(&["a", "b"], "2", 0).await, Ok(1));
        // A key holds data or children, never both.
        let e = ds.create(&["a", "b", "c"], "x").await.unwrap_err();
        assert!(e.to_string().contains("1206"), "{e}");
        let e = ds.create(&["a"], "x").await.unwrap_err();
        assert!(e.to_string().contains("1205"), "{e}");
        // Listing: children, with deeper levels summarised once.
        ds.create(&["a", "d", "e"], "x").await.unwrap();
        ds.create(&["a", "d", "f"], "x").await.unwrap();
        let l = ds.list(&["a"]).await.unwrap();
        assert_eq!(
            l,
            [
                Entry {
                    key: owned(&["a", "b"]),
                    generation: 1,
                    value: Some("2".into()),
                    has_children: false
                },
                Entry {
                    key: owned(&["a", "d"]),
                    generation: 0,
                    value: None,
                    has_children: true
                },
            ]
        );
        assert_eq!(ds.get(&["a", "d"]).await.unwrap(), Some(l[1].clone()));
        assert_eq!(ds.get(&["a", "b"]).await.unwrap(), Some(l[0].clone()));
        assert_eq!(ds.get(&["a", "x"]).await.unwrap(), None);
    }

    #[test]
    fn listdatastore_items_parse_as_lightningd_writes_them() {
        let data = parse_entry(
            &json!({"key": ["labfixture", "k1"], "generation": 0, "hex": "7631", "string": "v1"}),
        )
        .unwrap();
        assert_eq!(data.value.as_deref(), Some("v1"));
        let binary =
            parse_entry(&json!({"key": ["labfixture", "k1"], "generation": 1, "hex": "cafe"}))
                .unwrap();
        assert_eq!(
            (binary.value, binary.generation, binary.has_children),
            (None, 1, false)
        );
        let summary = parse_entry(&json!({"key": ["a", "d"]})).unwrap();
        assert!(summary.has_children);
        for bad in [
            json!({"generation": 0}),
            json!({"key": "a", "generation": 0}),
            json!({"key": [1], "generation": 0}),
            json!({"key": ["a"], "generation": -1, "hex": ""}),
            json!({"key": ["a"], "hex": "00"}),
            json!({"key": ["a"], "generation": 0, "string": 5}),
        ] {
            assert!(parse_entry(&bad).is_err(), "{bad}");
        }
        assert!(parse_listing(&json!({"nope": []})).is_err());
        assert_eq!(parse_listing(&json!({"datastore": []})), Ok(vec![]));
    }

    #[test]
    fn lightningd_codes_map_to_the_variants() {
        let refused = |code| NodeError::Refused {
            method: "datastore".into(),
            code,
            message: "m".into(),
        };
        assert_eq!(write_error(refused(1202)), StoreError::Exists);
        assert_eq!(write_error(refused(1203)), StoreError::Missing);
        assert_eq!(write_error(refused(1204)), StoreError::Conflict);
        for code in [1205, 1206, -32602, 0] {
            assert!(matches!(write_error(refused(code)), StoreError::Node(_)));
        }
        let io = NodeError::Io {
            method: "datastore".into(),
            reason: "gone".into(),
        };
        assert!(matches!(write_error(io), StoreError::Node(m) if m.contains("gone")));
    }
}
