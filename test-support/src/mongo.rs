//! A MongoDB client that records the write commands it sends, so a test can check which writes wait for the
//! journal: the services' durable default (`platform::mongo::durable`) or a write's own write concern.
use std::sync::{Arc, Mutex, PoisonError};

use mongodb::{
    Client,
    event::{EventHandler, command::CommandEvent},
    options::ClientOptions,
};

/// One write command as sent: `insert`, `update` or `delete`, its collection, and its `writeConcern.j`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteCommand {
    pub command: String,
    pub collection: String,
    pub journal: Option<bool>,
}

/// The write commands a [`recording_client`] sent so far.
#[derive(Debug, Clone, Default)]
pub struct RecordedWrites(Arc<Mutex<Vec<WriteCommand>>>);

impl RecordedWrites {
    /// `writeConcern.j` of each `command` sent to `collection`, in order.
    pub fn journal_of(&self, command: &str, collection: &str) -> Vec<Option<bool>> {
        self.all()
            .into_iter()
            .filter(|write| write.command == command && write.collection == collection)
            .map(|write| write.journal)
            .collect()
    }

    pub fn all(&self) -> Vec<WriteCommand> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// A client of `uri` with the services' durable default write concern, recording its write commands.
pub async fn recording_client(uri: &str) -> (Client, RecordedWrites) {
    let mut options = ClientOptions::parse(uri).await.expect("a MongoDB URI");
    options.write_concern = Some(platform::mongo::durable());
    let recorded = RecordedWrites::default();
    let writes = recorded.0.clone();
    options.command_event_handler = Some(EventHandler::callback(move |event| {
        if let CommandEvent::Started(started) = event
            && ["insert", "update", "delete"].contains(&started.command_name.as_str())
        {
            let collection = started.command.get_str(&started.command_name).unwrap_or_default().to_owned();
            let journal =
                started.command.get_document("writeConcern").ok().and_then(|concern| concern.get_bool("j").ok());
            writes.lock().unwrap_or_else(PoisonError::into_inner).push(WriteCommand {
                command: started.command_name.clone(),
                collection,
                journal,
            });
        }
    }));
    (Client::with_options(options).expect("a client"), recorded)
}
