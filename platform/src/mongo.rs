//! The MongoDB client every service makes the same way, and how its errors are read. Each service keeps its
//! own collections, documents and rules (`store.rs`); this is only the connection and the error taxonomy.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures::TryStreamExt as _;
use mongodb::{
    Client, Collection, Database, IndexModel,
    bson::{Bson, DateTime, Document, doc},
    error::{Error, ErrorKind, WriteFailure},
    event::{EventHandler, command::CommandEvent},
    options::{Acknowledgment, ClientOptions, IndexOptions, WriteConcern},
};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// What the driver's command monitoring feeds, declared once: commands sent by operation, and their round
/// trips by command and outcome. Divided by the operations a service did, `mongodb_commands_total` is the
/// engine's cost of one of them.
#[derive(Clone)]
pub struct MongoMetrics {
    pub commands: IntCounterVec,
    pub durations: HistogramVec,
}

impl MongoMetrics {
    pub fn register(registry: &Registry) -> Self {
        let commands = IntCounterVec::new(
            Opts::new("mongodb_commands_total", "Commands sent to MongoDB, by operation"),
            &["operation"],
        )
        .expect("valid metric");
        let durations = HistogramVec::new(
            HistogramOpts::new(
                "mongodb_command_duration_seconds",
                "MongoDB command round trips, by command and outcome",
            )
            .buckets(crate::metrics::BUCKETS.to_vec()),
            &["command", "outcome"],
        )
        .expect("valid metric");
        registry.register(Box::new(commands.clone())).expect("metric names are unique");
        registry.register(Box::new(durations.clone())).expect("metric names are unique");
        Self { commands, durations }
    }
}

/// A client whose operations give up after `timeout` instead of the driver's 30 s default (so that requests
/// fail promptly while the database is down), whose writes are durable, and whose every command is counted.
/// Creating it does no I/O.
pub async fn connect(uri: &str, app_name: &str, timeout: Duration, metrics: &MongoMetrics) -> Result<Client, Error> {
    let mut options = ClientOptions::parse(uri).await?;
    options.app_name = Some(app_name.to_owned());
    options.write_concern = Some(durable());
    options.server_selection_timeout = Some(timeout);
    options.connect_timeout = Some(timeout);
    let MongoMetrics { commands, durations } = metrics.clone();
    options.command_event_handler = Some(EventHandler::callback(move |event| match event {
        // Counted where the driver sends them, so every path (batches, relays, consumers, probes) is in. The
        // command names are a small fixed set (`find`, `insert`, `update`…): the series stay bounded.
        CommandEvent::Started(event) => commands.with_label_values(&[event.command_name.as_str()]).inc(),
        CommandEvent::Succeeded(event) => {
            durations
                .with_label_values(&[event.command_name.as_str(), "success"])
                .observe(event.duration.as_secs_f64());
        }
        CommandEvent::Failed(event) => {
            durations
                .with_label_values(&[event.command_name.as_str(), "failure"])
                .observe(event.duration.as_secs_f64());
        }
        _ => {}
    }));
    Client::with_options(options)
}

/// The client's write concern ([`connect`]): every write that backs a 2xx or a committed offset must survive the
/// database process dying right after it, so it is journaled and majority-acknowledged before it is answered.
pub fn durable() -> WriteConcern {
    WriteConcern::builder().w(Acknowledgment::Majority).journal(true).build()
}

/// The write concern of writes that only save work, and that a database crash may undo at no cost but repeated work:
/// an outbox entry deleted once its event is out (a lost delete publishes the event again, and consumers are
/// idempotent), a relay's heartbeat or claim (a lost one lets another replica publish an event twice), a record that
/// an announcement got out. Acknowledged once applied, without waiting for the journal: on the default engine every
/// journaled commit waits for its own fsync, so these writes would otherwise queue behind the disk with the ones a
/// 2xx depends on. Everything else keeps the client's [`durable`] write concern.
pub fn bookkeeping() -> WriteConcern {
    WriteConcern::builder().w(Acknowledgment::Nodes(1)).journal(false).build()
}

/// Errors that mean "the database cannot be reached right now" (→ 503, UNAVAILABLE, or retry), not "the
/// request is wrong".
pub fn is_unavailable(error: &Error) -> bool {
    matches!(
        *error.kind,
        ErrorKind::ServerSelection { .. }
            | ErrorKind::Io(_)
            | ErrorKind::ConnectionPoolCleared { .. }
            | ErrorKind::Shutdown
    ) || error.contains_label("RetryableWriteError")
        || error.contains_label("TransientTransactionError")
}

/// A unique index refused the write (code 11000).
pub fn is_duplicate_key(error: &Error) -> bool {
    match &*error.kind {
        ErrorKind::Write(WriteFailure::WriteError(write)) => write.code == 11000,
        ErrorKind::Command(command) => command.code == 11000,
        _ => false,
    }
}

/// The outcome of inserting one document: `duplicate` when a unique index refused it, the service's reading
/// of any other error.
pub fn insert_outcome<T, E: From<Error>>(result: Result<T, Error>, duplicate: E) -> Result<(), E> {
    match result {
        Ok(_) => Ok(()),
        Err(error) if is_duplicate_key(&error) => Err(duplicate),
        Err(error) => Err(error.into()),
    }
}

/// The outcome of each of the `count` documents of an unordered `insert_many`, in order: a write error is that
/// document's own (`duplicate` for a unique index); any other failure is every document's, because none is
/// known to be durably written.
pub fn insert_many_outcomes<T, E: From<Error> + Clone>(
    count: usize,
    result: Result<T, Error>,
    duplicate: E,
) -> Vec<Result<(), E>> {
    let error = match result {
        Ok(_) => return vec![Ok(()); count],
        Err(error) => error,
    };
    let ErrorKind::InsertMany(failure) = &*error.kind else {
        // Nothing is known to be written (network, timeout): every caller gets the error.
        return vec![Err(E::from(error)); count];
    };
    if failure.write_concern_error.is_some() {
        // Written, maybe, but not known durable: no caller may be told it succeeded.
        return vec![Err(E::from(error.clone())); count];
    }
    let mut outcomes = vec![Ok(()); count];
    for write_error in failure.write_errors.iter().flatten() {
        if let Some(outcome) = outcomes.get_mut(write_error.index) {
            *outcome = Err(if write_error.code == 11000 { duplicate.clone() } else { E::from(error.clone()) });
        }
    }
    outcomes
}

/// Inserts `documents` with one unordered `insert_many`, a document already there (a duplicate key) counting as
/// inserted: for copies that may have been made before (a migration run twice, or by two replicas at once). Any
/// other failure is returned.
pub async fn insert_many_unless_present<T>(collection: &Collection<T>, documents: &[T]) -> Result<(), Error>
where
    T: serde::Serialize + Send + Sync,
{
    if documents.is_empty() {
        return Ok(());
    }
    let Err(error) = collection.insert_many(documents).ordered(false).await else { return Ok(()) };
    match &*error.kind {
        ErrorKind::InsertMany(failure)
            if failure.write_concern_error.is_none()
                && failure.write_errors.iter().flatten().all(|write_error| write_error.code == 11000) =>
        {
            Ok(())
        }
        _ => Err(error),
    }
}

/// Which of `ids` are the `_id` of a document in `collection`: one command per [`UPDATE_CHUNK`] ids (none for no
/// ids). SecantusDB checks every document a find returns against its whole `$in` list, so a relay's check of a
/// 500-entry page in one command cost the engine 500 x 500 comparisons, in chunks a tenth of that.
pub async fn existing_ids<T: Send + Sync>(
    collection: &Collection<T>,
    ids: &[impl AsRef<str>],
) -> Result<std::collections::HashSet<String>, Error> {
    let ids: Vec<&str> = ids.iter().map(AsRef::as_ref).collect();
    let documents = collection.clone_with_type::<Document>();
    let mut existing = std::collections::HashSet::new();
    for chunk in ids.chunks(UPDATE_CHUNK) {
        let found: Vec<Document> =
            documents.find(doc! { "_id": { "$in": chunk } }).projection(doc! { "_id": 1 }).await?.try_collect().await?;
        existing.extend(found.into_iter().filter_map(|document| document.get_str("_id").ok().map(str::to_owned)));
    }
    Ok(existing)
}

/// When the UUID `id` was made, for a UUID that says (v7, as the services make them; v1 and v6 too); none for any
/// other id.
pub fn made_at(id: &str) -> Option<std::time::SystemTime> {
    let (seconds, nanos) = uuid::Uuid::parse_str(id).ok()?.get_timestamp()?.to_unix();
    Some(std::time::SystemTime::UNIX_EPOCH + Duration::new(seconds, nanos))
}

/// Whether the UUID v7 `id` was made `age` ago or more (an id that is no UUID v7 counts as old): an outbox entry
/// whose record is still missing that long after its id was made was written by a request that never stored it.
pub fn written_before(id: &str, age: Duration) -> bool {
    let Some(written) = made_at(id) else {
        return true;
    };
    std::time::SystemTime::now().duration_since(written).is_ok_and(|elapsed| elapsed >= age)
}

/// An outbox entry holding the events of several records (a group-commit batch's), each written before its record.
pub trait BatchEntry {
    type Event;
    fn id(&self) -> &str;
    fn events(&self) -> &[Self::Event];
    fn events_mut(&mut self) -> &mut Vec<Self::Event>;
    /// The `_id` of the record `event` announces.
    fn record_id(event: &Self::Event) -> &str;
}

/// What a relay may do with an outbox entry it read ([`with_stored_records`]): publish the events left in `ready`
/// (those whose record is stored), then take the entry out, or set `abandoned` aside in it.
#[derive(Debug, Clone)]
pub struct Readable<E: BatchEntry> {
    pub ready: E,
    /// The events whose record is still missing `abandoned_after` after the entry was made.
    pub abandoned: Vec<E::Event>,
}

/// What may be done with the outbox entries of `read`, in their order, on one look for their records in `records`
/// ([`existing_ids`]): an entry whose records are all stored is ready; one with records still missing waits for them
/// (it is left out) until `abandoned_after` after it was made (its id is a UUID v7), when the missing records'
/// events are abandoned and the others ready.
pub async fn with_stored_records<E: BatchEntry, R: Send + Sync>(
    records: &Collection<R>,
    read: Vec<E>,
    abandoned_after: Duration,
) -> Result<Vec<Readable<E>>, Error> {
    let ids: Vec<&str> = read.iter().flat_map(|entry| entry.events().iter().map(E::record_id)).collect();
    let stored = existing_ids(records, &ids).await?;
    let mut readable = Vec::with_capacity(read.len());
    for mut entry in read {
        let (ready, missing): (Vec<E::Event>, Vec<E::Event>) =
            std::mem::take(entry.events_mut()).into_iter().partition(|event| stored.contains(E::record_id(event)));
        if !missing.is_empty() && !written_before(entry.id(), abandoned_after) {
            continue;
        }
        *entry.events_mut() = ready;
        readable.push(Readable { ready: entry, abandoned: missing });
    }
    Ok(readable)
}

/// A replica's hold on outbox entries: its name (`REPLICA_ID`) and how long its relay's heartbeat keeps the entries
/// it holds (`OUTBOX_LEASE_MS`; see [`OutboxLeases`]).
#[derive(Debug, Clone)]
pub struct Lease {
    pub owner: String,
    pub duration: Duration,
    /// Whether this replica's heartbeat has been written ([`OutboxLeases::insert_held`]); shared by the clones.
    beating: Arc<AtomicBool>,
}

impl Lease {
    pub fn new(owner: impl Into<String>, duration: Duration) -> Self {
        Self { owner: owner.into(), duration, beating: Arc::default() }
    }

    /// Whether this replica's heartbeat has been written.
    pub fn is_beating(&self) -> bool {
        self.beating.load(Ordering::Acquire)
    }

    /// This replica's heartbeat has been written.
    pub fn beats(&self) {
        self.beating.store(true, Ordering::Release);
    }

    /// The `leaseOwner` that holds an entry for this replica. A replica writes it with the entries it creates, so
    /// that its own relay publishes them without claiming them first (a claim is one more write of every entry);
    /// another replica's relay takes them only once this replica's heartbeat has stopped, as it would claimed ones.
    pub fn held(&self) -> Document {
        doc! { "leaseOwner": &self.owner }
    }
}

/// The most documents one update filtered on `_id: {$in: [...]}` names; longer lists are written in chunks of this
/// size, one command each. SecantusDB checks every document an update finds against the whole list (and against
/// any per-document `$in` or `$indexOfArray` over it), so a document's cost grows with the list. Measured on the
/// Python server with the orders' four indexes: 0.50-0.65 ms per document in commands of 25-50 documents,
/// 0.63-1.13 ms in commands of 200 (the more the update itself compares, the more), 0.64-0.69 ms in commands of
/// 5-10 (the command's own cost spread over fewer documents).
pub const UPDATE_CHUNK: usize = 50;

/// How often a relay claims what no live lease holds: entries of a replica that stopped or died, and entries
/// written without a hold. In between it reads only what it holds already, which is what its own replica
/// wrote, and its own entries need no claim.
pub const CLAIM_INTERVAL: Duration = Duration::from_secs(1);

/// Which rounds of a relay do a periodic task (a claim every [`CLAIM_INTERVAL`], say): the first round, then the
/// first round once `interval` has passed since the task was last due.
#[derive(Debug)]
pub struct RoundSchedule {
    interval: Duration,
    last: Option<std::time::Instant>,
}

impl RoundSchedule {
    pub fn every(interval: Duration) -> Self {
        Self { interval, last: None }
    }

    /// Whether this round does the task (and if so, the next one is `interval` from now).
    pub fn due(&mut self) -> bool {
        if self.last.is_some_and(|last| last.elapsed() < self.interval) {
            return false;
        }
        self.last = Some(std::time::Instant::now());
        true
    }
}

/// Drops the index `name` of `collection` if it is there: one that an earlier version created and this one
/// replaced (several replicas starting at once may each try).
pub async fn drop_index_if_present<T: Send + Sync>(collection: &Collection<T>, name: &str) -> Result<(), Error> {
    match collection.drop_index(name).await {
        Err(error) if matches!(&*error.kind, ErrorKind::Command(command) if command.code == INDEX_NOT_FOUND) => Ok(()),
        other => other,
    }
}

/// The server's `IndexNotFound` error code.
const INDEX_NOT_FOUND: i32 = 27;

/// The leases of a transactional outbox kept in a service's own collection, so that with several replicas an event
/// is published once in the normal case. Documents with events to publish carry `outboxPending: true` and the
/// replica that holds them in `leaseOwner` (none: the field is absent). A replica's hold lasts as long as its
/// relay's heartbeat: one document per replica in the database's `outbox_relays` collection (`_id` the replica's
/// name, `aliveUntil`), which the relay writes again at every claim. A relay claims the entries no live replica
/// holds. Keeping a hold costs one write per heartbeat, whatever the backlog: a lease kept in each entry would
/// have to be written again in every entry, and a backlog of tens of thousands of orders would spend the engine
/// on that. Only the mechanism is shared here; each service keeps its collection, its documents and what it
/// publishes.
pub struct OutboxLeases {
    collection: Collection<Document>,
    relays: Collection<Document>,
}

/// The collection of the relays' heartbeats, in the database of the outbox.
pub const RELAYS: &str = "outbox_relays";

/// When a hold of `lease` taken at `now` ends.
pub fn lease_end(now: DateTime, lease: Duration) -> DateTime {
    DateTime::from_millis(now.timestamp_millis().saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX)))
}

/// Which of its pending entries a relay reads: the oldest `limit`, or the oldest `limit` after the entry `after`
/// (the last of the page before: ids sort by creation time).
#[derive(Debug, Clone, Copy)]
pub struct OutboxPage<'a> {
    pub limit: usize,
    pub after: Option<&'a str>,
}

impl OutboxPage<'_> {
    /// The oldest `limit`.
    pub fn first(limit: usize) -> Self {
        Self { limit, after: None }
    }
}

impl OutboxLeases {
    /// The name of [`OutboxLeases::index`].
    pub const INDEX: &str = "outbox_pending_by_owner";

    /// The leases of the outbox `collection`, whose relays' heartbeats are in `database`'s [`RELAYS`].
    pub fn new<T: Send + Sync>(database: &Database, collection: &Collection<T>) -> Self {
        Self { collection: collection.clone_with_type(), relays: database.collection(RELAYS) }
    }

    /// The index of pending entries by owner, then age: a claim walks only the entries of the replicas it takes
    /// over, and a relay's page only its own entries after the page before, not every pending entry. Its prefix
    /// serves every other read of the pending entries.
    pub fn index() -> IndexModel {
        IndexModel::builder()
            .keys(doc! { "outboxPending": 1, "leaseOwner": 1, "_id": 1 })
            .options(IndexOptions::builder().name(Self::INDEX.to_owned()).build())
            .build()
    }

    /// The filter of the pending entries `owner` holds.
    pub fn claimed_by(owner: &str) -> Document {
        doc! { "outboxPending": true, "leaseOwner": owner }
    }

    /// The filter of the pending entries held by any of `owners` (`null` among them: the entries no replica holds), a
    /// range of [`OutboxLeases::index`]. A claim names the replicas whose heartbeat ran out.
    pub fn held_by_any_of(owners: &[Bson]) -> Document {
        doc! { "outboxPending": true, "leaseOwner": { "$in": owners } }
    }

    /// Says that `owner` is alive until `lease` from now, and so holds its entries until then (one write).
    pub async fn heartbeat(&self, owner: &str, lease: Duration) -> Result<(), Error> {
        self.set_alive_until(owner, lease_end(DateTime::now(), lease)).await
    }

    async fn set_alive_until(&self, owner: &str, until: DateTime) -> Result<(), Error> {
        self.relays
            .update_one(doc! { "_id": owner }, doc! { "$set": { "aliveUntil": until } })
            .upsert(true)
            .write_concern(bookkeeping())
            .await?;
        Ok(())
    }

    /// Claims for `owner` every pending entry no live replica holds: those of replicas whose heartbeat stopped, and
    /// those written without a hold. Three commands (this replica's heartbeat, the stopped ones, the claim, which
    /// walks only the entries it takes); the caller then reads [`OutboxLeases::claimed_by`].
    pub async fn claim(&self, owner: &str, lease: Duration) -> Result<(), Error> {
        self.heartbeat(owner, lease).await?;
        let stopped = doc! { "aliveUntil": { "$lte": DateTime::now() }, "_id": { "$ne": owner } };
        let stopped: Vec<Document> =
            self.relays.find(stopped).projection(doc! { "_id": 1 }).await?.try_collect().await?;
        let mut owners = vec![Bson::Null];
        owners.extend(stopped.into_iter().filter_map(|relay| relay.get("_id").cloned()));
        self.collection
            .update_many(Self::held_by_any_of(&owners), doc! { "$set": { "leaseOwner": owner } })
            .write_concern(bookkeeping())
            .await?;
        Ok(())
    }

    /// Claims for `owner` (as [`OutboxLeases::claim`]), then reads the page `page` of its claimed entries (as
    /// [`OutboxLeases::oldest_claimed`]).
    pub async fn claim_oldest<T>(
        &self,
        owner: &str,
        lease: Duration,
        page: OutboxPage<'_>,
        projection: Option<Document>,
    ) -> Result<Vec<T>, Error>
    where
        T: serde::de::DeserializeOwned + Send + Sync,
    {
        self.claim(owner, lease).await?;
        self.oldest_claimed(owner, page, projection).await
    }

    /// The oldest `page.limit` of the pending entries `owner` holds (after `page.after`, when given), as `T` (only the
    /// fields of `projection`, when given), in one command: between two claims, a relay reads what its own replica
    /// wrote under its hold.
    pub async fn oldest_claimed<T>(
        &self,
        owner: &str,
        page: OutboxPage<'_>,
        projection: Option<Document>,
    ) -> Result<Vec<T>, Error>
    where
        T: serde::de::DeserializeOwned + Send + Sync,
    {
        let entries = self.collection.clone_with_type::<T>();
        let mut filter = Self::claimed_by(owner);
        if let Some(after) = page.after {
            filter.insert("_id", doc! { "$gt": after });
        }
        let mut find =
            entries.find(filter).sort(doc! { "_id": 1 }).limit(i64::try_from(page.limit).unwrap_or(i64::MAX));
        if let Some(projection) = projection {
            find = find.projection(projection);
        }
        find.await?.try_collect().await
    }

    /// Starts `owner`'s hold: its heartbeat, and one for every replica that holds pending entries and has none (a
    /// version that kept leases in the entries, or a replica that stopped before its first heartbeat), which ends a
    /// lease from now unless that replica beats again. A replica restarted under the same name holds its own
    /// leftovers again at once.
    pub async fn start(&self, owner: &str, lease: Duration) -> Result<(), Error> {
        let holders = self.collection.distinct("leaseOwner", doc! { "outboxPending": true }).await?;
        let until = lease_end(DateTime::now(), lease);
        for holder in holders.iter().filter_map(Bson::as_str).filter(|&holder| holder != owner) {
            self.relays
                .update_one(doc! { "_id": holder }, doc! { "$setOnInsert": { "aliveUntil": until } })
                .upsert(true)
                .write_concern(bookkeeping())
                .await?;
        }
        self.heartbeat(owner, lease).await
    }

    /// Inserts `entries` with one unordered `insert_many` (the client's write concern), held by `lease`'s owner when
    /// there is one ([`Lease::held`]): its replica's relay publishes them without claiming them. Before the first
    /// entries a lease holds, its owner's heartbeat is written (once per [`Lease`], one write): so every holder of an
    /// entry has a heartbeat, and what a replica that died before its relay's first beat wrote is taken over once
    /// that heartbeat runs out, not only when some relay starts ([`OutboxLeases::start`]).
    pub async fn insert_held<T>(&self, entries: &[T], lease: Option<&Lease>) -> Result<(), Error>
    where
        T: serde::Serialize + Send + Sync,
    {
        let mut documents = entries.iter().map(mongodb::bson::to_document).collect::<Result<Vec<_>, _>>()?;
        if let Some(lease) = lease {
            if !lease.beating.load(Ordering::Acquire) {
                self.heartbeat(&lease.owner, lease.duration).await?;
                lease.beating.store(true, Ordering::Release);
            }
            for document in &mut documents {
                document.extend(lease.held());
            }
        }
        self.collection.insert_many(documents).ordered(false).await.map(|_| ())
    }

    /// Takes these entries out of the outbox (their events are out, or their record was refused), one delete per
    /// [`UPDATE_CHUNK`] ids (the engine checks every entry a command finds against its whole `$in` list), as
    /// [`bookkeeping`]: an entry that a crash brings back is published again, and consumers are idempotent.
    /// Deleting one twice is harmless.
    pub async fn remove<S: AsRef<str>>(&self, ids: &[S]) -> Result<(), Error> {
        for chunk in ids.chunks(UPDATE_CHUNK) {
            let chunk: Vec<&str> = chunk.iter().map(AsRef::as_ref).collect();
            self.collection.delete_many(doc! { "_id": { "$in": chunk } }).write_concern(bookkeeping()).await?;
        }
        Ok(())
    }

    /// Sets a pending entry aside holding only `abandoned` (its field `events`), the events whose records were never
    /// stored (a crash between the entry's write and the records', or a write that failed; its other events are
    /// published): no relay reads it again unless one of those records appears ([`OutboxLeases::revive_any_stored`]).
    /// The fields named in `unset` go with it. One update, in this rare case only.
    pub async fn set_aside<V: serde::Serialize>(
        &self,
        entry_id: &str,
        events: &str,
        abandoned: &[V],
        unset: &[&str],
    ) -> Result<(), Error> {
        let abandoned = mongodb::bson::to_bson(abandoned)?;
        let mut dropped = doc! { "leaseOwner": "" };
        for field in unset {
            dropped.insert(*field, "");
        }
        self.collection
            .update_one(
                doc! { "_id": entry_id, "outboxPending": true },
                doc! {
                    "$set": { events: abandoned, "outboxPending": false, "setAsideAt": DateTime::now() },
                    "$unset": dropped,
                },
            )
            .await?;
        Ok(())
    }

    /// Puts back every entry set aside of which one of the records it names is stored in `records` by now (an entry
    /// holding several records' events: what is still missing is set aside again when it is read); how many. The
    /// entries are read as `E`, only the fields of `projection`; `entry_id` and `record_ids` say what they hold. One
    /// update per [`UPDATE_CHUNK`] entries put back.
    pub async fn revive_any_stored<E, R>(
        &self,
        records: &Collection<R>,
        projection: Document,
        entry_id: impl Fn(&E) -> &str,
        record_ids: impl Fn(&E) -> Vec<&str>,
    ) -> Result<usize, Error>
    where
        E: serde::de::DeserializeOwned + Send + Sync,
        R: Send + Sync,
    {
        let set_aside: Vec<E> = self
            .collection
            .clone_with_type::<E>()
            .find(doc! { "outboxPending": false, "setAsideAt": { "$exists": true } })
            .projection(projection)
            .await?
            .try_collect()
            .await?;
        let ids: Vec<&str> = set_aside.iter().flat_map(&record_ids).collect();
        let stored = existing_ids(records, &ids).await?;
        let revived: Vec<&str> = set_aside
            .iter()
            .filter(|entry| record_ids(entry).iter().any(|id| stored.contains(*id)))
            .map(&entry_id)
            .collect();
        for chunk in revived.chunks(UPDATE_CHUNK) {
            self.collection
                .update_many(
                    doc! { "_id": { "$in": chunk }, "outboxPending": false },
                    doc! { "$set": { "outboxPending": true }, "$unset": { "setAsideAt": "", "leaseOwner": "" } },
                )
                .await?;
        }
        Ok(revived.len())
    }

    /// Ends `owner`'s hold at once (at shutdown): the other replicas' relays take what it did not publish at their
    /// next claim, instead of waiting for its heartbeat to run out.
    pub async fn release(&self, owner: &str) -> Result<(), Error> {
        self.set_alive_until(owner, DateTime::from_millis(0)).await
    }
}

/// The entries a replica has just stored, with their events, handed to its own outbox relay so that it publishes them
/// without reading the outbox. Losing any of it costs time, never an event: the outbox stays the source of truth,
/// which the relay reads when the handover overflowed, at each claim and when idle.
pub struct OutboxHandover<T> {
    handed: std::sync::Mutex<Handed<T>>,
    limit: usize,
    wake: tokio::sync::Notify,
}

/// What a relay takes from its [`OutboxHandover`].
#[derive(Debug)]
pub struct Handed<T> {
    pub stored: Vec<T>,
    /// More was stored than the handover holds, or something was written outside it: read the outbox.
    pub read_outbox: bool,
}

impl<T> Default for Handed<T> {
    fn default() -> Self {
        Self { stored: Vec::new(), read_outbox: false }
    }
}

impl<T> OutboxHandover<T> {
    /// Holding at most `limit` entries until the relay takes them.
    pub fn new(limit: usize) -> Self {
        Self { handed: std::sync::Mutex::new(Handed::default()), limit, wake: tokio::sync::Notify::new() }
    }

    /// `entry` and its record are durable, held by this replica's lease: publish it.
    pub fn stored(&self, entry: T) {
        {
            let mut handed = self.handed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if handed.stored.len() < self.limit {
                handed.stored.push(entry);
            } else {
                handed.read_outbox = true;
            }
        }
        self.wake.notify_one();
    }

    /// Wakes the relay for a round without handing anything.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Entries were written outside the handover: the relay reads the outbox at its next round.
    pub fn read_outbox(&self) {
        self.handed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).read_outbox = true;
        self.wake.notify_one();
    }

    /// Everything handed since the last take.
    pub fn take(&self) -> Handed<T> {
        std::mem::take(&mut *self.handed.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Returns once something was handed (at once if it was since the last wait).
    pub async fn handed(&self) {
        self.wake.notified().await;
    }
}

/// The ids of the last entries a relay published from a read of its outbox, at most `limit`: a call hands its relay
/// what it stored just after storing it, so a read may get there first, and the handed copy is then not published
/// again ([`OutboxHandover`]).
pub struct PublishedByReads(crate::recent::Recent<()>);

impl PublishedByReads {
    pub fn new(limit: usize) -> Self {
        Self(crate::recent::Recent::new(limit))
    }

    /// A read published the entry `id`; the oldest beyond the limit are forgotten.
    pub fn add(&mut self, id: &str) {
        self.0.add(id, ());
    }

    pub fn contains(&self, id: &str) -> bool {
        self.0.contains(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_reads_published_is_remembered_up_to_a_limit_oldest_forgotten_first() {
        let mut published = PublishedByReads::new(2);
        published.add("a");
        published.add("b");
        published.add("a");
        assert!(published.contains("a") && published.contains("b"), "adding one twice keeps one");
        published.add("c");
        assert!(!published.contains("a") && published.contains("b") && published.contains("c"));
    }

    #[test]
    fn a_handover_keeps_what_was_stored_up_to_its_limit_and_past_it_asks_for_a_read() {
        let handover = OutboxHandover::new(2);
        handover.stored("a");
        handover.stored("b");
        let handed = handover.take();
        assert_eq!((handed.stored, handed.read_outbox), (vec!["a", "b"], false));
        for entry in ["c", "d", "e"] {
            handover.stored(entry);
        }
        let handed = handover.take();
        assert_eq!((handed.stored, handed.read_outbox), (vec!["c", "d"], true), "the third is left to a read");
        let handed = handover.take();
        assert!(handed.stored.is_empty() && !handed.read_outbox, "a take empties it");
        handover.read_outbox();
        assert!(handover.take().read_outbox);
    }

    #[tokio::test]
    async fn a_handover_wakes_its_relay_even_when_it_was_not_waiting_yet() {
        let handover = OutboxHandover::new(10);
        handover.stored(1);
        tokio::time::timeout(Duration::from_secs(5), handover.handed()).await.expect("woken by the earlier hand-over");
    }

    #[test]
    fn an_id_is_written_before_an_age_only_once_its_uuid_v7_time_is_that_old() {
        let age = Duration::from_secs(30);
        let now = uuid::Uuid::now_v7().to_string();
        assert!(!written_before(&now, age));
        let earlier = std::time::SystemTime::now() - age - Duration::from_secs(1);
        let since_epoch = earlier.duration_since(std::time::SystemTime::UNIX_EPOCH).unwrap();
        let timestamp = uuid::Timestamp::from_unix(uuid::NoContext, since_epoch.as_secs(), since_epoch.subsec_nanos());
        assert!(written_before(&uuid::Uuid::new_v7(timestamp).to_string(), age));
        assert!(written_before("not-a-uuid", age));
    }

    #[tokio::test]
    async fn an_unreachable_server_is_unavailable_and_answers_within_the_timeout() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let registry = Registry::new();
        let metrics = MongoMetrics::register(&registry);
        let client = connect(&format!("mongodb://127.0.0.1:{port}"), "test", Duration::from_millis(200), &metrics)
            .await
            .expect("creating a client does no I/O");
        let started = std::time::Instant::now();
        let error = client.database("d").run_command(mongodb::bson::doc! { "ping": 1 }).await.unwrap_err();
        assert!(is_unavailable(&error), "{error}");
        assert!(!is_duplicate_key(&error));
        assert!(started.elapsed() < Duration::from_secs(10), "gave up after the timeout, not the driver's 30 s");
    }

    /// How a service reads a refused insert, for the tests below.
    #[derive(Debug, Clone, PartialEq)]
    enum Refused {
        Duplicate,
        Unavailable,
        Other,
    }

    impl From<Error> for Refused {
        fn from(error: Error) -> Self {
            if is_unavailable(&error) { Self::Unavailable } else { Self::Other }
        }
    }

    #[test]
    fn a_batch_that_failed_as_a_whole_fails_every_document_with_the_services_reading_of_the_error() {
        assert_eq!(insert_many_outcomes(2, Ok(()), Refused::Duplicate), vec![Ok(()), Ok(())]);
        let lost = || Err::<(), _>(Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(insert_many_outcomes(3, lost(), Refused::Duplicate), vec![Err(Refused::Unavailable); 3]);
        assert_eq!(insert_outcome(lost(), Refused::Duplicate), Err(Refused::Unavailable));
        assert_eq!(insert_outcome(Ok(()), Refused::Duplicate), Ok(()));
    }

    #[test]
    fn a_relay_claims_at_its_first_round_then_once_per_interval() {
        let mut schedule = RoundSchedule::every(CLAIM_INTERVAL);
        assert!(schedule.due(), "the first round claims");
        assert!(!schedule.due(), "the next rounds read what they hold");
        schedule.last = Some(std::time::Instant::now() - CLAIM_INTERVAL);
        assert!(schedule.due(), "an interval later, a claim again");
        assert!(!schedule.due());
    }

    #[test]
    fn a_hold_names_its_owner() {
        let lease = Lease::new("replica-a", Duration::from_secs(30));
        assert_eq!(lease.held(), doc! { "leaseOwner": "replica-a" });
    }

    #[tokio::test]
    async fn a_malformed_uri_is_refused_at_once() {
        let metrics = MongoMetrics::register(&Registry::new());
        assert!(connect("postgres://nope", "test", Duration::from_secs(1), &metrics).await.is_err());
    }
}
