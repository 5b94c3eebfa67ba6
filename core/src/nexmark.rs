//! Deterministic Nexmark event generator: the persons, auctions and bids Wire is measured on.
//!
//! Event `n` is a pure function of the [`GeneratorConfig`] and `n`: every event seeds its own
//! PRNG from `(seed, n)`, so a stream can be generated in any order, split across cores, or
//! regenerated later to check results. Ids, proportions and hot-key skew follow the reference
//! `NexmarkGenerator` (Apache Beam, `nexmark/nexmark`). Pure code: no clocks, IO or threads.
//!
//! ```
//! use wire_core::nexmark::{Event, Generator, GeneratorConfig};
//!
//! let generator = Generator::new(GeneratorConfig { seed: 7, ..GeneratorConfig::default() })?;
//! let bids = generator.events(0..50).filter(|e| matches!(e, Event::Bid(_))).count();
//! assert_eq!(bids, 46);
//! # Ok::<(), wire_core::nexmark::ConfigError>(())
//! ```

use std::ops::Range;

use self::ascii::{words, AsciiArray, AsciiText, AsciiWord};
use crate::error::Result;
use crate::record::batch::BatchBuilder;
use crate::record::row::ValueRef;
use crate::record::schema::{DataType, Field, Schema};

/// Id of the first person; person ids count up from here.
pub const FIRST_PERSON_ID: i64 = 1000;
/// Id of the first auction; auction ids count up from here.
pub const FIRST_AUCTION_ID: i64 = 1000;
/// The smallest category id; categories are `FIRST_CATEGORY_ID..FIRST_CATEGORY_ID + NUM_CATEGORIES`.
pub const FIRST_CATEGORY_ID: i64 = 10;
/// Number of auction categories, kept small so queries find results in short runs.
pub const NUM_CATEGORIES: u64 = 5;
/// How many not-yet-created person ids a bid or auction may refer to.
pub const PERSON_ID_LEAD: u64 = 10;
/// How many not-yet-created auction ids a bid may refer to.
pub const AUCTION_ID_LEAD: u64 = 10;
/// Hot auctions are the first of each run of this many auction ids.
pub const HOT_AUCTION_RATIO: u64 = 100;
/// Hot sellers are the first of each run of this many person ids.
pub const HOT_SELLER_RATIO: u64 = 100;
/// Hot bidders are the second of each run of this many person ids.
pub const HOT_BIDDER_RATIO: u64 = 100;
/// Largest sum of the three proportions [`GeneratorConfig::validate`] accepts.
pub const PROPORTION_MAX: u64 = 1 << 32;
/// Largest event number [`Generator::event`] accepts; it keeps every id inside `i64`.
pub const EVENT_NUMBER_MAX: u64 = 1 << 62;

const US_STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
const US_CITIES: [&str; 10] = [
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];
const FIRST_NAMES: [&str; 11] = [
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];
const LAST_NAMES: [&str; 9] = [
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
];
/// Channels with a name; every other bid comes from a numbered `channel-<k>`.
const NAMED_CHANNELS: [&str; 4] = ["apple", "google", "facebook", "baidu"];
/// A bid comes from a named channel when `below(10) < NAMED_CHANNEL_TENTHS`.
const NAMED_CHANNEL_TENTHS: u64 = 4;
const NUMBERED_CHANNELS: u64 = 10_000;
const URL_PREFIX: &str = "https://www.nexmark.com/";
const URL_SUFFIX: &str = "item.htm?query=1";
/// The word lists above as [`AsciiWord`]s (checked at compile time), which the generator
/// appends to its text without UTF-8 validation.
const US_STATE_WORDS: [AsciiWord; 6] = words(US_STATES);
const US_CITY_WORDS: [AsciiWord; 10] = words(US_CITIES);
const FIRST_NAME_WORDS: [AsciiWord; 11] = words(FIRST_NAMES);
const LAST_NAME_WORDS: [AsciiWord; 9] = words(LAST_NAMES);
const NAMED_CHANNEL_WORDS: [AsciiWord; 4] = words(NAMED_CHANNELS);
/// A bid URL with its three groups of five letters still to be written (`xxxxx/` each).
const URL_TEMPLATE: AsciiArray<{ URL_PREFIX.len() + 3 * 6 + URL_SUFFIX.len() }> =
    AsciiArray::concat(&[
        AsciiWord::new(URL_PREFIX),
        AsciiWord::new("xxxxx/xxxxx/xxxxx/"),
        AsciiWord::new(URL_SUFFIX),
    ]);
/// What joins a numbered channel's URL to its number.
const CHANNEL_ID_PARAM: AsciiWord = AsciiWord::new("&channel_id=");
/// What a numbered channel's name starts with.
const CHANNEL_PREFIX: AsciiWord = AsciiWord::new("channel-");
const SPACE: AsciiWord = AsciiWord::new(" ");
const AT: AsciiWord = AsciiWord::new("@");
const DOT_COM: AsciiWord = AsciiWord::new(".com");
/// Why a count or ratio that must be positive was refused.
const POSITIVE: &str = "must be at least 1";
/// Serialized-size estimate of one numeric field (id, price, timestamp), as the reference uses.
const NUMERIC_FIELD_BYTES: usize = 8;
/// Salt that gives the timestamp jitter its own PRNG stream, so enabling out-of-orderness
/// leaves every other field of an event unchanged.
const JITTER_STREAM: u64 = 0x6a69_7474_6572_0001;
/// How close to a `.5` tie a fast price estimate must be to be recomputed exactly: a hundred
/// times the largest gap between the estimate and the exact value.
const PRICE_TIE_GUARD: f64 = 1e-4;

/// Knobs of the generator; [`Default`] gives the reference defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratorConfig {
    /// Seed of every event's PRNG; the same seed gives the same stream.
    pub seed: u64,
    /// Number of the first event; its timestamp is `first_event_time_ms`.
    pub first_event_id: u64,
    /// Event time of event `first_event_id`, in milliseconds since the Unix epoch.
    pub first_event_time_ms: i64,
    /// Events per second of event time (not of wall-clock time).
    pub events_per_second: u64,
    /// Persons out of every `person + auction + bid` proportion events.
    pub person_proportion: u64,
    /// Auctions out of every `person + auction + bid` proportion events.
    pub auction_proportion: u64,
    /// Bids out of every `person + auction + bid` proportion events.
    pub bid_proportion: u64,
    /// Average serialized size of a person, reached by padding `extra`.
    pub avg_person_bytes: u32,
    /// Average serialized size of an auction, reached by padding `extra`.
    pub avg_auction_bytes: u32,
    /// Average serialized size of a bid, reached by padding `extra`.
    pub avg_bid_bytes: u32,
    /// A bid goes to a hot auction with probability `1 - 1 / hot_auction_ratio`.
    pub hot_auction_ratio: u64,
    /// An auction has a hot seller with probability `1 - 1 / hot_sellers_ratio`.
    pub hot_sellers_ratio: u64,
    /// A bid comes from a hot bidder with probability `1 - 1 / hot_bidders_ratio`.
    pub hot_bidders_ratio: u64,
    /// Bids for a cold auction pick among this many most recent auctions.
    pub num_in_flight_auctions: u64,
    /// Cold sellers and bidders are picked among this many most recent persons.
    pub num_active_people: u64,
    /// When positive, each event's timestamp moves back by a deterministic jitter in
    /// `[0, out_of_order_ms]`, so the stream holds out-of-order events.
    pub out_of_order_ms: i64,
}

impl Default for GeneratorConfig {
    fn default() -> GeneratorConfig {
        GeneratorConfig {
            seed: 0,
            first_event_id: 0,
            first_event_time_ms: 1_700_000_000_000,
            events_per_second: 10_000,
            person_proportion: 1,
            auction_proportion: 3,
            bid_proportion: 46,
            avg_person_bytes: 200,
            avg_auction_bytes: 500,
            avg_bid_bytes: 100,
            hot_auction_ratio: 2,
            hot_sellers_ratio: 4,
            hot_bidders_ratio: 4,
            num_in_flight_auctions: 100,
            num_active_people: 1000,
            out_of_order_ms: 0,
        }
    }
}

/// A configuration the generator cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid nexmark generator config: `{field}` {reason}")]
pub struct ConfigError {
    /// The offending [`GeneratorConfig`] field.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Which of the three event types an event number produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A new person registers.
    Person,
    /// A person opens an auction.
    Auction,
    /// A person bids on an auction.
    Bid,
}

/// A person registering; fields as in the reference schema, in snake case.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Person {
    /// Person id, consecutive from [`FIRST_PERSON_ID`].
    pub id: i64,
    /// First and last name.
    pub name: String,
    /// E-mail address.
    pub email_address: String,
    /// Credit card number: four groups of four digits.
    pub credit_card: String,
    /// US city.
    pub city: String,
    /// US state code.
    pub state: String,
    /// Event time, milliseconds since the Unix epoch.
    pub date_time: i64,
    /// Padding up to the configured average size.
    pub extra: String,
}

/// An auction being opened; fields as in the reference schema, in snake case.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Auction {
    /// Auction id, consecutive from [`FIRST_AUCTION_ID`].
    pub id: i64,
    /// Item name.
    pub item_name: String,
    /// Item description.
    pub description: String,
    /// Opening price.
    pub initial_bid: i64,
    /// Reserve price, always above `initial_bid`.
    pub reserve: i64,
    /// Event time, milliseconds since the Unix epoch.
    pub date_time: i64,
    /// Closing time, always after `date_time`.
    pub expires: i64,
    /// Person id of the seller.
    pub seller: i64,
    /// Category id.
    pub category: i64,
    /// Padding up to the configured average size.
    pub extra: String,
}

/// A bid on an auction; fields as in the reference schema, in snake case.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Bid {
    /// Auction id bid on.
    pub auction: i64,
    /// Person id of the bidder.
    pub bidder: i64,
    /// Bid price.
    pub price: i64,
    /// Channel the bid came through: a named channel or `channel-<k>`.
    pub channel: String,
    /// Item URL; for `channel-<k>` it ends with `&channel_id=<k>`.
    pub url: String,
    /// Event time, milliseconds since the Unix epoch.
    pub date_time: i64,
    /// Padding up to the configured average size.
    pub extra: String,
}

/// One generated event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Event {
    /// A person registering.
    Person(Person),
    /// An auction being opened.
    Auction(Auction),
    /// A bid.
    Bid(Bid),
}

/// Generates events by number; cheap to share, holds only the configuration and values
/// derived from it once.
#[derive(Debug, Clone)]
pub struct Generator {
    config: GeneratorConfig,
    total_proportion: u64,
    /// `mix64(seed)`: the key of every event's PRNG.
    rng_key: u64,
    /// `mix64(seed ^ JITTER_STREAM)`: the key of every event's jitter PRNG.
    jitter_key: u64,
    /// Events until `num_in_flight_auctions` more auctions exist (see `auction_length_ms`).
    auction_events_ahead: u64,
    /// Division by `total_proportion`, once per event.
    per_epoch: Divisor,
    /// Division by `events_per_second`, once per event time.
    per_second: Divisor,
}

/// Which fields of an event's row a reader needs, by position in its kind's schema (at most
/// 16): [`Generator::push_fields_of`] leaves the rest NULL and skips generating them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadFields(u16);

impl ReadFields {
    /// Every field.
    pub const ALL: ReadFields = ReadFields(u16::MAX);

    /// The fields whose entry in `read` is true; fields past its end are read.
    pub fn of(read: &[bool]) -> ReadFields {
        let mut bits = u16::MAX;
        for (index, _) in read.iter().enumerate().take(16).filter(|(_, r)| !**r) {
            bits &= !(1 << index);
        }
        ReadFields(bits)
    }

    fn any(self, fields: u16) -> bool {
        self.0 & fields != 0
    }

    /// `values` with the fields not read replaced by NULL.
    fn mask<'a, const N: usize>(self, mut values: [ValueRef<'a>; N]) -> [ValueRef<'a>; N] {
        if self != ReadFields::ALL {
            for (index, value) in values.iter_mut().enumerate() {
                if index < 16 && self.0 & (1 << index) == 0 {
                    *value = ValueRef::Null;
                }
            }
        }
        values
    }
}

/// Where an event kind's strings fall in its random draws, as field bits: `strings` are the
/// fields drawn from the first string on (the numbers drawn between them too), `extra` the
/// last, padding field. Nothing is drawn after `extra`, so either can be skipped whole.
struct DrawOrder {
    strings: u16,
    extra: u16,
}

/// Person: name, email_address, credit_card, city, state, then extra (field 7).
const PERSON_DRAWS: DrawOrder = DrawOrder {
    strings: 0b1011_1110,
    extra: 1 << 7,
};
/// Auction: item_name, description, reserve (field 4), then extra (field 9).
const AUCTION_DRAWS: DrawOrder = DrawOrder {
    strings: 0b10_0001_0110,
    extra: 1 << 9,
};
/// Bid: channel, url, then extra (field 6).
const BID_DRAWS: DrawOrder = DrawOrder {
    strings: 0b101_1000,
    extra: 1 << 6,
};

/// A bid's numbers, as field bits: drawn in this order, before its strings.
const BID_AUCTION: u16 = 1;
const BID_BIDDER: u16 = 1 << 1;
const BID_PRICE: u16 = 1 << 2;

/// Which of an event's draws to make.
#[derive(Clone, Copy)]
struct Draws {
    strings: bool,
    extra: bool,
}

impl Draws {
    fn of(read: ReadFields, order: &DrawOrder) -> Draws {
        Draws {
            strings: read.any(order.strings),
            extra: read.any(order.extra),
        }
    }
}

/// Reusable string buffers for [`Generator::push_event`]: events are generated straight into
/// them and pushed as rows that borrow them, so once the buffers have grown to the largest
/// event, generating and pushing an event does not allocate. Keep one per source instance.
#[derive(Debug, Default, Clone)]
pub struct EventScratch {
    name: AsciiText,
    email_address: AsciiText,
    credit_card: AsciiText,
    item_name: AsciiText,
    description: AsciiText,
    channel: AsciiText,
    url: AsciiText,
    extra: AsciiText,
}

/// Division of 64-bit numbers by a divisor fixed when the generator is built, by a 128-bit
/// multiply-high instead of a hardware divide: with `magic = ceil(2^128 / d)`,
/// `floor(magic * n / 2^128) = floor(n / d)` for every 64-bit `n`, because
/// `magic * d - 2^128 < d <= 2^64` (Lemire, Kaser and Kurz, "Faster remainder by direct
/// computation", 2019, theorem 1).
#[derive(Debug, Clone, Copy)]
struct Divisor {
    /// `ceil(2^128 / d)`, or 0 for `d = 1` (where it would be `2^128`).
    magic: u128,
}

/// A SplitMix64 stream, seeded per event so events can be generated in any order.
#[derive(Debug, Clone)]
struct Rng {
    state: u64,
}

/// Where event `n` falls among the epochs of `total_proportion` events.
#[derive(Debug, Clone, Copy)]
struct Slot {
    n: u64,
    epoch: u64,
    offset: u64,
    kind: EventKind,
}

/// An event's fields other than the strings it leaves in an [`EventScratch`].
#[derive(Debug, Clone, Copy)]
enum Parts {
    Person(PersonParts),
    Auction(AuctionParts),
    Bid(BidParts),
}

#[derive(Debug, Clone, Copy)]
struct PersonParts {
    id: i64,
    city: &'static str,
    state: &'static str,
    date_time: i64,
}

#[derive(Debug, Clone, Copy)]
struct AuctionParts {
    id: i64,
    initial_bid: i64,
    reserve: i64,
    date_time: i64,
    expires: i64,
    seller: i64,
    category: i64,
}

#[derive(Debug, Clone, Copy)]
struct BidParts {
    auction: i64,
    bidder: i64,
    price: i64,
    /// A named channel, or `None` for a numbered one written to the scratch.
    named_channel: Option<&'static str>,
    date_time: i64,
}

/// A person row with borrowed strings: the one place its column order is written.
struct PersonRow<'a> {
    id: i64,
    name: &'a str,
    email_address: &'a str,
    credit_card: &'a str,
    city: &'a str,
    state: &'a str,
    date_time: i64,
    extra: &'a str,
}

/// An auction row with borrowed strings: the one place its column order is written.
struct AuctionRow<'a> {
    parts: AuctionParts,
    item_name: &'a str,
    description: &'a str,
    extra: &'a str,
}

/// A bid row with borrowed strings: the one place its column order is written.
struct BidRow<'a> {
    auction: i64,
    bidder: i64,
    price: i64,
    channel: &'a str,
    url: &'a str,
    date_time: i64,
    extra: &'a str,
}

impl GeneratorConfig {
    /// Checks that the generator can run with this configuration.
    ///
    /// ```
    /// use wire_core::nexmark::GeneratorConfig;
    /// let config = GeneratorConfig { events_per_second: 0, ..GeneratorConfig::default() };
    /// assert_eq!(config.validate().unwrap_err().field, "events_per_second");
    /// ```
    pub fn validate(&self) -> std::result::Result<(), ConfigError> {
        // Bounding the total keeps every id computation inside `i64`.
        let proportions = [
            self.person_proportion,
            self.auction_proportion,
            self.bid_proportion,
        ];
        let total_fits = proportions.iter().all(|&p| p <= PROPORTION_MAX)
            && proportions.iter().sum::<u64>() <= PROPORTION_MAX;
        check(self.events_per_second > 0, "events_per_second", POSITIVE)?;
        check(self.person_proportion > 0, "person_proportion", POSITIVE)?;
        check(self.auction_proportion > 0, "auction_proportion", POSITIVE)?;
        let sum = "person_proportion + auction_proportion + bid_proportion";
        check(total_fits, sum, "exceeds 2^32")?;
        check(self.hot_auction_ratio > 0, "hot_auction_ratio", POSITIVE)?;
        check(self.hot_sellers_ratio > 0, "hot_sellers_ratio", POSITIVE)?;
        check(self.hot_bidders_ratio > 0, "hot_bidders_ratio", POSITIVE)?;
        check(
            self.out_of_order_ms >= 0,
            "out_of_order_ms",
            "must not be negative",
        )
    }
}

impl Event {
    /// The event time in milliseconds since the Unix epoch.
    pub fn date_time(&self) -> i64 {
        match self {
            Event::Person(person) => person.date_time,
            Event::Auction(auction) => auction.date_time,
            Event::Bid(bid) => bid.date_time,
        }
    }

    /// Which type of event this is.
    pub fn kind(&self) -> EventKind {
        match self {
            Event::Person(_) => EventKind::Person,
            Event::Auction(_) => EventKind::Auction,
            Event::Bid(_) => EventKind::Bid,
        }
    }
}

impl Person {
    /// Appends this person as a row of [`person_schema`], with `date_time` as event time.
    /// Strings are borrowed, not copied.
    pub fn push_to(&self, builder: &mut BatchBuilder) -> Result<()> {
        PersonRow {
            id: self.id,
            name: &self.name,
            email_address: &self.email_address,
            credit_card: &self.credit_card,
            city: &self.city,
            state: &self.state,
            date_time: self.date_time,
            extra: &self.extra,
        }
        .push_to(ReadFields::ALL, builder)
    }
}

impl Auction {
    /// Appends this auction as a row of [`auction_schema`], with `date_time` as event time.
    /// Strings are borrowed, not copied.
    pub fn push_to(&self, builder: &mut BatchBuilder) -> Result<()> {
        let parts = AuctionParts {
            id: self.id,
            initial_bid: self.initial_bid,
            reserve: self.reserve,
            date_time: self.date_time,
            expires: self.expires,
            seller: self.seller,
            category: self.category,
        };
        AuctionRow {
            parts,
            item_name: &self.item_name,
            description: &self.description,
            extra: &self.extra,
        }
        .push_to(ReadFields::ALL, builder)
    }
}

impl Bid {
    /// Appends this bid as a row of [`bid_schema`], with `date_time` as event time.
    /// Strings are borrowed, not copied.
    ///
    /// ```
    /// use wire_core::nexmark::{bid_schema, Event, Generator, GeneratorConfig};
    /// use wire_core::{BatchBuilder, PartitionId, StreamId};
    ///
    /// let generator = Generator::new(GeneratorConfig::default())?;
    /// let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
    /// for event in generator.events(0..100) {
    ///     if let Event::Bid(bid) = event {
    ///         bid.push_to(&mut builder)?;
    ///     }
    /// }
    /// let batch = builder.finish();
    /// assert_eq!(batch.row_count(), 92);
    /// batch.view().check_schema(&bid_schema())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn push_to(&self, builder: &mut BatchBuilder) -> Result<()> {
        BidRow {
            auction: self.auction,
            bidder: self.bidder,
            price: self.price,
            channel: &self.channel,
            url: &self.url,
            date_time: self.date_time,
            extra: &self.extra,
        }
        .push_to(ReadFields::ALL, builder)
    }
}

impl PersonRow<'_> {
    fn push_to(&self, read: ReadFields, builder: &mut BatchBuilder) -> Result<()> {
        let values = [
            ValueRef::I64(self.id),
            ValueRef::Str(self.name),
            ValueRef::Str(self.email_address),
            ValueRef::Str(self.credit_card),
            ValueRef::Str(self.city),
            ValueRef::Str(self.state),
            ValueRef::Timestamp(self.date_time),
            ValueRef::Str(self.extra),
        ];
        builder.push_with_time(&read.mask(values), self.date_time)
    }
}

impl AuctionRow<'_> {
    fn push_to(&self, read: ReadFields, builder: &mut BatchBuilder) -> Result<()> {
        let parts = &self.parts;
        let values = [
            ValueRef::I64(parts.id),
            ValueRef::Str(self.item_name),
            ValueRef::Str(self.description),
            ValueRef::I64(parts.initial_bid),
            ValueRef::I64(parts.reserve),
            ValueRef::Timestamp(parts.date_time),
            ValueRef::Timestamp(parts.expires),
            ValueRef::I64(parts.seller),
            ValueRef::I64(parts.category),
            ValueRef::Str(self.extra),
        ];
        builder.push_with_time(&read.mask(values), parts.date_time)
    }
}

impl BidRow<'_> {
    fn push_to(&self, read: ReadFields, builder: &mut BatchBuilder) -> Result<()> {
        let values = [
            ValueRef::I64(self.auction),
            ValueRef::I64(self.bidder),
            ValueRef::I64(self.price),
            ValueRef::Str(self.channel),
            ValueRef::Str(self.url),
            ValueRef::Timestamp(self.date_time),
            ValueRef::Str(self.extra),
        ];
        builder.push_with_time(&read.mask(values), self.date_time)
    }
}

impl Parts {
    fn kind(&self) -> EventKind {
        match self {
            Parts::Person(_) => EventKind::Person,
            Parts::Auction(_) => EventKind::Auction,
            Parts::Bid(_) => EventKind::Bid,
        }
    }

    /// Appends the event as a row whose strings borrow `scratch`, NULL in the fields not `read`.
    fn push_to(
        &self,
        scratch: &EventScratch,
        read: ReadFields,
        builder: &mut BatchBuilder,
    ) -> Result<()> {
        match *self {
            Parts::Person(p) => PersonRow {
                id: p.id,
                name: scratch.name.as_str(),
                email_address: scratch.email_address.as_str(),
                credit_card: scratch.credit_card.as_str(),
                city: p.city,
                state: p.state,
                date_time: p.date_time,
                extra: scratch.extra.as_str(),
            }
            .push_to(read, builder),
            Parts::Auction(parts) => AuctionRow {
                parts,
                item_name: scratch.item_name.as_str(),
                description: scratch.description.as_str(),
                extra: scratch.extra.as_str(),
            }
            .push_to(read, builder),
            Parts::Bid(b) => BidRow {
                auction: b.auction,
                bidder: b.bidder,
                price: b.price,
                channel: b.named_channel.unwrap_or(scratch.channel.as_str()),
                url: scratch.url.as_str(),
                date_time: b.date_time,
                extra: scratch.extra.as_str(),
            }
            .push_to(read, builder),
        }
    }

    /// The owned event, moving the strings out of `scratch`.
    fn into_event(self, scratch: &mut EventScratch) -> Event {
        let take = AsciiText::take_string;
        match self {
            Parts::Person(p) => Event::Person(Person {
                id: p.id,
                name: take(&mut scratch.name),
                email_address: take(&mut scratch.email_address),
                credit_card: take(&mut scratch.credit_card),
                city: p.city.to_owned(),
                state: p.state.to_owned(),
                date_time: p.date_time,
                extra: take(&mut scratch.extra),
            }),
            Parts::Auction(a) => Event::Auction(Auction {
                id: a.id,
                item_name: take(&mut scratch.item_name),
                description: take(&mut scratch.description),
                initial_bid: a.initial_bid,
                reserve: a.reserve,
                date_time: a.date_time,
                expires: a.expires,
                seller: a.seller,
                category: a.category,
                extra: take(&mut scratch.extra),
            }),
            Parts::Bid(b) => Event::Bid(Bid {
                auction: b.auction,
                bidder: b.bidder,
                price: b.price,
                channel: match b.named_channel {
                    Some(name) => name.to_owned(),
                    None => take(&mut scratch.channel),
                },
                url: take(&mut scratch.url),
                date_time: b.date_time,
                extra: take(&mut scratch.extra),
            }),
        }
    }
}

impl Generator {
    /// A generator for `config`, once [`GeneratorConfig::validate`] accepts it.
    ///
    /// ```
    /// use wire_core::nexmark::{Generator, GeneratorConfig};
    /// let generator = Generator::new(GeneratorConfig { seed: 1, ..GeneratorConfig::default() })?;
    /// assert_eq!(generator.event(0).date_time(), 1_700_000_000_000);
    /// # Ok::<(), wire_core::nexmark::ConfigError>(())
    /// ```
    pub fn new(config: GeneratorConfig) -> std::result::Result<Generator, ConfigError> {
        config.validate()?;
        let total_proportion =
            config.person_proportion + config.auction_proportion + config.bid_proportion;
        let auction_events_ahead = config
            .num_in_flight_auctions
            .saturating_mul(total_proportion)
            / config.auction_proportion;
        Ok(Generator {
            rng_key: mix64(config.seed),
            jitter_key: mix64(config.seed ^ JITTER_STREAM),
            per_epoch: Divisor::new(total_proportion),
            per_second: Divisor::new(config.events_per_second),
            config,
            total_proportion,
            auction_events_ahead,
        })
    }

    /// The configuration this generator runs with.
    pub fn config(&self) -> &GeneratorConfig {
        &self.config
    }

    /// Which type of event number `n` is, by `n` modulo the total proportion. Cheap: it
    /// generates nothing.
    pub fn kind(&self, n: u64) -> EventKind {
        self.slot(n).kind
    }

    /// Event number `n` (absolute, not relative to `first_event_id`). The result depends only on
    /// the configuration and `n`, never on which events were generated before.
    ///
    /// # Panics
    /// If `n > EVENT_NUMBER_MAX`.
    pub fn event(&self, n: u64) -> Event {
        let mut scratch = EventScratch::default();
        self.generate(self.slot(n), ReadFields::ALL, &mut scratch)
            .into_event(&mut scratch)
    }

    /// Appends event `n` to `builder` as a row of its kind's schema, the same row
    /// `self.event(n)`'s `push_to` appends, and returns its kind. The strings are generated
    /// into `scratch` and borrowed from it, so once `scratch` has warmed up this does not
    /// allocate.
    ///
    /// ```
    /// use wire_core::nexmark::{EventKind, EventScratch, Generator, GeneratorConfig};
    /// use wire_core::{BatchBuilder, PartitionId, StreamId};
    ///
    /// let generator = Generator::new(GeneratorConfig::default())?;
    /// let mut scratch = EventScratch::default();
    /// let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
    /// assert_eq!(generator.push_event(0, &mut scratch, &mut builder)?, EventKind::Person);
    /// assert_eq!(builder.row_count(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Panics
    /// If `n > EVENT_NUMBER_MAX`.
    pub fn push_event(
        &self,
        n: u64,
        scratch: &mut EventScratch,
        builder: &mut BatchBuilder,
    ) -> Result<EventKind> {
        let parts = self.generate(self.slot(n), ReadFields::ALL, scratch);
        parts.push_to(scratch, ReadFields::ALL, builder)?;
        Ok(parts.kind())
    }

    /// Like [`Generator::push_event`], but only if event `n` is a `kind` event; any other
    /// event is skipped without being generated. Returns whether a row was pushed.
    ///
    /// # Panics
    /// If `n > EVENT_NUMBER_MAX` and event `n` is a `kind` event.
    pub fn push_event_of(
        &self,
        kind: EventKind,
        n: u64,
        scratch: &mut EventScratch,
        builder: &mut BatchBuilder,
    ) -> Result<bool> {
        self.push_fields_of(kind, ReadFields::ALL, n, scratch, builder)
    }

    /// Like [`Generator::push_event_of`], but the row has only the fields in `read`: the
    /// others are NULL, and the strings among them are not generated (when no field after
    /// them in the event's draws is read). The fields in `read` equal the full row's.
    ///
    /// ```
    /// use wire_core::nexmark::{EventKind, EventScratch, Generator, GeneratorConfig, ReadFields};
    /// use wire_core::{BatchBuilder, PartitionId, StreamId, Value};
    ///
    /// let generator = Generator::new(GeneratorConfig::default())?;
    /// // A bid's auction and date_time only.
    /// let read = ReadFields::of(&[true, false, false, false, false, true, false]);
    /// let mut scratch = EventScratch::default();
    /// let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
    /// assert!(generator.push_fields_of(EventKind::Bid, read, 10, &mut scratch, &mut builder)?);
    /// let batch = builder.finish();
    /// let row = batch.view().row(0).to_values();
    /// assert_eq!(row[2], Value::Null);
    /// assert_eq!(row[6], Value::Null);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn push_fields_of(
        &self,
        kind: EventKind,
        read: ReadFields,
        n: u64,
        scratch: &mut EventScratch,
        builder: &mut BatchBuilder,
    ) -> Result<bool> {
        let slot = self.slot(n);
        if slot.kind != kind {
            return Ok(false);
        }
        (self.generate(slot, read, scratch)).push_to(scratch, read, builder)?;
        Ok(true)
    }

    /// Events numbered `range`, in order; each equals [`Generator::event`] of its number.
    ///
    /// ```
    /// use wire_core::nexmark::{Generator, GeneratorConfig};
    /// let generator = Generator::new(GeneratorConfig::default())?;
    /// let events: Vec<_> = generator.events(10..20).collect();
    /// assert_eq!(events[3], generator.event(13));
    /// # Ok::<(), wire_core::nexmark::ConfigError>(())
    /// ```
    pub fn events(&self, range: Range<u64>) -> impl DoubleEndedIterator<Item = Event> + '_ {
        range.map(move |n| self.event(n))
    }

    /// Event `slot.n`: its numbers, with its strings written into `scratch`; strings that
    /// neither `read` nor a field drawn after them needs are left out.
    fn generate(&self, slot: Slot, read: ReadFields, scratch: &mut EventScratch) -> Parts {
        let n = slot.n;
        assert!(
            n <= EVENT_NUMBER_MAX,
            "event number {n} exceeds {EVENT_NUMBER_MAX}"
        );
        let date_time = self.event_time_ms(n);
        let mut rng = Rng::for_event(self.rng_key, n);
        match slot.kind {
            EventKind::Person => {
                let draws = Draws::of(read, &PERSON_DRAWS);
                Parts::Person(self.person(slot, &mut rng, date_time, draws, scratch))
            }
            EventKind::Auction => {
                let draws = Draws::of(read, &AUCTION_DRAWS);
                Parts::Auction(self.auction(slot, &mut rng, date_time, draws, scratch))
            }
            EventKind::Bid => {
                let draws = Draws::of(read, &BID_DRAWS);
                Parts::Bid(self.bid(slot, &mut rng, (date_time, read), draws, scratch))
            }
        }
    }

    /// Event `n`'s epoch, offset within it, and kind; one division.
    fn slot(&self, n: u64) -> Slot {
        let epoch = self.per_epoch.divide(n);
        let offset = n - epoch * self.total_proportion;
        let config = &self.config;
        let kind = if offset < config.person_proportion {
            EventKind::Person
        } else if offset < config.person_proportion + config.auction_proportion {
            EventKind::Auction
        } else {
            EventKind::Bid
        };
        Slot {
            n,
            epoch,
            offset,
            kind,
        }
    }

    /// Event time of event `n`: `first_event_time_ms` plus `(n - first_event_id)` events at
    /// `events_per_second`, minus the optional out-of-order jitter.
    fn event_time_ms(&self, n: u64) -> i64 {
        let base = self.base_time_ms(n);
        if self.config.out_of_order_ms == 0 {
            return base;
        }
        let bound = self.config.out_of_order_ms.unsigned_abs() + 1;
        let jitter = Rng::for_event(self.jitter_key, n).below(bound);
        base.saturating_sub(jitter as i64)
    }

    /// Event time of event `n` before jitter; non-decreasing in `n`. Computed in 64 bits
    /// when `n` is at or after `first_event_id` and nothing overflows (always, for sane
    /// configurations), else in `i128` with clamping; both give the same value.
    fn base_time_ms(&self, n: u64) -> i64 {
        let config = &self.config;
        let fast = (|| {
            let offset = n.checked_sub(config.first_event_id)?;
            let scaled = i64::try_from(offset.checked_mul(1000)?).ok()?;
            let elapsed_ms = self.per_second.divide(scaled as u64) as i64;
            config.first_event_time_ms.checked_add(elapsed_ms)
        })();
        fast.unwrap_or_else(|| {
            let offset = i128::from(n) - i128::from(config.first_event_id);
            let elapsed_ms = (offset * 1000).div_euclid(i128::from(config.events_per_second));
            let time = i128::from(config.first_event_time_ms) + elapsed_ms;
            time.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
        })
    }

    fn person(
        &self,
        slot: Slot,
        rng: &mut Rng,
        date_time: i64,
        draws: Draws,
        scratch: &mut EventScratch,
    ) -> PersonParts {
        let id = FIRST_PERSON_ID + self.last_base0_person_id(slot) as i64;
        let mut parts = PersonParts {
            id,
            city: "",
            state: "",
            date_time,
        };
        if !draws.strings {
            return parts;
        }
        let name = &mut scratch.name;
        name.clear();
        name.push_word(pick(rng, &FIRST_NAME_WORDS));
        name.push_word(SPACE);
        name.push_word(pick(rng, &LAST_NAME_WORDS));
        scratch.email_address.clear();
        push_email_address(rng, &mut scratch.email_address);
        scratch.credit_card.clear();
        push_credit_card(rng, &mut scratch.credit_card);
        let city = pick(rng, &US_CITY_WORDS);
        let state = pick(rng, &US_STATE_WORDS);
        (parts.city, parts.state) = (city.as_str(), state.as_str());
        if draws.extra {
            let size = 2 * NUMERIC_FIELD_BYTES
                + scratch.name.len()
                + scratch.email_address.len()
                + scratch.credit_card.len()
                + city.len()
                + state.len();
            scratch.extra.clear();
            push_extra(rng, size, self.config.avg_person_bytes, &mut scratch.extra);
        }
        parts
    }

    fn auction(
        &self,
        slot: Slot,
        rng: &mut Rng,
        date_time: i64,
        draws: Draws,
        scratch: &mut EventScratch,
    ) -> AuctionParts {
        let id = FIRST_AUCTION_ID + self.last_base0_auction_id(slot) as i64;
        let seller = FIRST_PERSON_ID + self.next_seller(slot, rng) as i64;
        let category = FIRST_CATEGORY_ID + rng.below(NUM_CATEGORIES) as i64;
        let initial_bid = next_price(rng);
        let expires = date_time.saturating_add(self.auction_length_ms(slot.n, rng));
        let mut parts = AuctionParts {
            id,
            initial_bid,
            reserve: 0,
            date_time,
            expires,
            seller,
            category,
        };
        if !draws.strings {
            return parts;
        }
        scratch.item_name.clear();
        push_letters(rng, &mut scratch.item_name, 20);
        scratch.description.clear();
        push_letters(rng, &mut scratch.description, 100);
        parts.reserve = initial_bid + next_price(rng);
        if draws.extra {
            let size =
                7 * NUMERIC_FIELD_BYTES + scratch.item_name.len() + scratch.description.len();
            scratch.extra.clear();
            push_extra(rng, size, self.config.avg_auction_bytes, &mut scratch.extra);
        }
        parts
    }

    /// A bid's numbers, and its strings when `draws` asks. A number that is not `read` is 0
    /// (its field is NULL in the row): its draws are skipped when nothing is drawn after
    /// them, and a price is only drawn, not computed, when the strings after it are.
    fn bid(
        &self,
        slot: Slot,
        rng: &mut Rng,
        (date_time, read): (i64, ReadFields),
        draws: Draws,
        scratch: &mut EventScratch,
    ) -> BidParts {
        let price_drawn = draws.strings || read.any(BID_PRICE);
        let bidder_drawn = price_drawn || read.any(BID_BIDDER);
        let auction = match bidder_drawn || read.any(BID_AUCTION) {
            true => FIRST_AUCTION_ID + self.next_bid_auction(slot, rng) as i64,
            false => 0,
        };
        let bidder = match bidder_drawn {
            true => FIRST_PERSON_ID + self.next_bidder(slot, rng) as i64,
            false => 0,
        };
        let price = match (price_drawn, read.any(BID_PRICE)) {
            (_, true) => next_price(rng),
            (true, false) => {
                rng.next_u64();
                0
            }
            (false, false) => 0,
        };
        let mut parts = BidParts {
            auction,
            bidder,
            price,
            named_channel: None,
            date_time,
        };
        if !draws.strings {
            return parts;
        }
        scratch.channel.clear();
        scratch.url.clear();
        parts.named_channel = push_channel_and_url(rng, &mut scratch.channel, &mut scratch.url);
        if draws.extra {
            let channel_len = parts.named_channel.map_or(scratch.channel.len(), str::len);
            let size = 4 * NUMERIC_FIELD_BYTES + channel_len + scratch.url.len();
            scratch.extra.clear();
            push_extra(rng, size, self.config.avg_bid_bytes, &mut scratch.extra);
        }
        parts
    }

    /// The last person id (base 0) created at or before the event; its own id for a person.
    fn last_base0_person_id(&self, slot: Slot) -> u64 {
        let offset = slot.offset.min(self.config.person_proportion - 1);
        slot.epoch * self.config.person_proportion + offset
    }

    /// The last auction id (base 0) created at or before the event; its own id for an
    /// auction. Before the first auction this is 0, as ids are unsigned (the reference gives -1).
    fn last_base0_auction_id(&self, slot: Slot) -> u64 {
        let config = &self.config;
        let mut epoch = slot.epoch as i64;
        let mut offset = slot.offset;
        if offset < config.person_proportion {
            // A person: the last auction is the last one of the previous epoch.
            epoch -= 1;
            offset = config.auction_proportion - 1;
        } else if offset >= config.person_proportion + config.auction_proportion {
            // A bid: the last auction is the last one of this epoch.
            offset = config.auction_proportion - 1;
        } else {
            offset -= config.person_proportion;
        }
        let id = epoch * config.auction_proportion as i64 + offset as i64;
        id.max(0) as u64
    }

    /// A cold person id (base 0): one of the `num_active_people` latest persons, or up to
    /// [`PERSON_ID_LEAD`] persons not yet created.
    fn next_base0_person_id(&self, slot: Slot, rng: &mut Rng) -> u64 {
        let num_people = self.last_base0_person_id(slot) + 1;
        let active = num_people.min(self.config.num_active_people);
        num_people - active + rng.below(active + PERSON_ID_LEAD)
    }

    /// A cold auction id (base 0): one of the `num_in_flight_auctions` latest auctions, or up
    /// to [`AUCTION_ID_LEAD`] auctions not yet created.
    fn next_base0_auction_id(&self, slot: Slot, rng: &mut Rng) -> u64 {
        let max = self.last_base0_auction_id(slot);
        let min = max.saturating_sub(self.config.num_in_flight_auctions);
        min + rng.below(max - min + 1 + AUCTION_ID_LEAD)
    }

    fn next_seller(&self, slot: Slot, rng: &mut Rng) -> u64 {
        if rng.below(self.config.hot_sellers_ratio) > 0 {
            (self.last_base0_person_id(slot) / HOT_SELLER_RATIO) * HOT_SELLER_RATIO
        } else {
            self.next_base0_person_id(slot, rng)
        }
    }

    fn next_bid_auction(&self, slot: Slot, rng: &mut Rng) -> u64 {
        if rng.below(self.config.hot_auction_ratio) > 0 {
            (self.last_base0_auction_id(slot) / HOT_AUCTION_RATIO) * HOT_AUCTION_RATIO
        } else {
            self.next_base0_auction_id(slot, rng)
        }
    }

    fn next_bidder(&self, slot: Slot, rng: &mut Rng) -> u64 {
        if rng.below(self.config.hot_bidders_ratio) > 0 {
            // The second person of the hot run, so hot bidders and hot sellers differ.
            (self.last_base0_person_id(slot) / HOT_BIDDER_RATIO) * HOT_BIDDER_RATIO + 1
        } else {
            self.next_base0_person_id(slot, rng)
        }
    }

    /// Auction length, as the reference: the horizon is the event time until
    /// `num_in_flight_auctions` more auctions have been created, and the length is uniform in
    /// `[1, 2 * horizon]`, so on average about that many auctions are open. With the defaults
    /// the horizon is 1,666 events, 166 ms of event time. Always at least 1 ms.
    fn auction_length_ms(&self, n: u64, rng: &mut Rng) -> i64 {
        let future = self.base_time_ms(n.saturating_add(self.auction_events_ahead));
        let horizon_ms = future.saturating_sub(self.base_time_ms(n));
        let bound = horizon_ms.saturating_mul(2).max(1) as u64;
        1 + rng.below(bound) as i64
    }
}

impl Rng {
    const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

    /// The stream of event `n` under `key`, which is `mix64` of the seed (hoisted out of the
    /// per-event path). `mix64` is a bijection, so for one key every event number starts
    /// from a distinct state.
    fn for_event(key: u64, n: u64) -> Rng {
        Rng {
            state: mix64(key ^ n),
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(Rng::GOLDEN_GAMMA);
        mix64(self.state)
    }

    /// Uniform in `[0, bound)` by multiply-high (bias below `bound / 2^64`); 0 when `bound` is 0.
    fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }
}

impl Divisor {
    fn new(divisor: u64) -> Divisor {
        assert!(divisor > 0, "division by zero");
        // `u128::MAX / d + 1` is `ceil(2^128 / d)` for every `d >= 2`, powers of two included.
        let magic = match divisor {
            1 => 0,
            d => u128::MAX / u128::from(d) + 1,
        };
        Divisor { magic }
    }

    /// `n / d`.
    #[inline]
    fn divide(self, n: u64) -> u64 {
        if self.magic == 0 {
            return n;
        }
        // `magic * n / 2^128` from two 64-by-64-bit products; the sum stays below 2^128.
        let n = u128::from(n);
        let low = (u128::from(self.magic as u64) * n) >> 64;
        (((self.magic >> 64) * n + low) >> 64) as u64
    }
}

/// The schema of [`Person::push_to`] rows.
pub fn person_schema() -> Schema {
    Schema::new(vec![
        Field::new("id", DataType::I64),
        Field::new("name", DataType::String),
        Field::new("email_address", DataType::String),
        Field::new("credit_card", DataType::String),
        Field::new("city", DataType::String),
        Field::new("state", DataType::String),
        Field::new("date_time", DataType::Timestamp),
        Field::new("extra", DataType::String),
    ])
}

/// The schema of [`Auction::push_to`] rows.
pub fn auction_schema() -> Schema {
    Schema::new(vec![
        Field::new("id", DataType::I64),
        Field::new("item_name", DataType::String),
        Field::new("description", DataType::String),
        Field::new("initial_bid", DataType::I64),
        Field::new("reserve", DataType::I64),
        Field::new("date_time", DataType::Timestamp),
        Field::new("expires", DataType::Timestamp),
        Field::new("seller", DataType::I64),
        Field::new("category", DataType::I64),
        Field::new("extra", DataType::String),
    ])
}

/// The schema of [`Bid::push_to`] rows.
///
/// ```
/// use wire_core::nexmark::bid_schema;
/// assert_eq!(bid_schema().index_of("price"), Some(2));
/// ```
pub fn bid_schema() -> Schema {
    Schema::new(vec![
        Field::new("auction", DataType::I64),
        Field::new("bidder", DataType::I64),
        Field::new("price", DataType::I64),
        Field::new("channel", DataType::String),
        Field::new("url", DataType::String),
        Field::new("date_time", DataType::Timestamp),
        Field::new("extra", DataType::String),
    ])
}

/// SplitMix64's finalizer: a bijection on `u64` that spreads every input bit over the output.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `Ok` when `ok`, otherwise the error naming `field`.
fn check(
    ok: bool,
    field: &'static str,
    reason: &'static str,
) -> std::result::Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError { field, reason })
    }
}

fn pick<T: Copy>(rng: &mut Rng, items: &[T]) -> T {
    items[rng.below(items.len() as u64) as usize]
}

/// A price as the reference draws it: `round(10^(6u) * 100)`, so from 100 to 100,000,000,
/// log-uniform.
///
/// The value is defined by the exact [`pow10`], which is slow (a 20-term series).
/// [`price_estimate`] agrees with it to within about 1e-14 relative, i.e. 1e-6 absolute at
/// most here, so its rounding is the same unless the scaled value lies within
/// [`PRICE_TIE_GUARD`] of a `.5` tie; only then (about 0.02% of draws) is `pow10` computed.
#[inline]
fn next_price(rng: &mut Rng) -> i64 {
    let draw = rng.next_u64() >> 11;
    let approx = price_estimate(draw);
    // Adding 1.5 * 2^52 rounds `approx` (positive, below 2^51) to the nearest integer, which
    // lands in the low mantissa bits: no float-integer conversions on the dependency chain.
    let shifted = approx + ROUNDING_SHIFT;
    let nearest = (shifted.to_bits() & ((1 << 52) - 1)) as i64 - (1 << 51);
    let off_by = approx - (shifted - ROUNDING_SHIFT);
    if 0.5 - off_by.abs() > PRICE_TIE_GUARD {
        // Not near a tie, so the nearest integer is what `round` gives.
        nearest
    } else {
        exact_price(price_exponent(draw))
    }
}

/// `100 * 10^x` for `x = 6 * draw / 2^53` in `[0, 6)` to within about 1e-14 relative,
/// without a call, a division or a float-integer conversion on its dependency chain:
/// `10^x = 2^(k / 256) * 2^g`, with `2^(k / 256)` from [`EXP2_256THS`] and its exponent
/// bits, and `2^g` for `|g| <= 1/512` by a degree-4 series evaluated in Estrin's scheme
/// (error below 2e-15).
fn price_estimate(draw: u64) -> f64 {
    // `t = 256 * log2(10^x)`, in one multiplication; `t < 5,200`.
    let t = draw as f64 * (6.0 * 256.0 * std::f64::consts::LOG2_10 / (1u64 << 53) as f64);
    // Adding 1.5 * 2^52 rounds `t` to the nearest integer `k`, held in the low mantissa bits.
    let shifted = t + ROUNDING_SHIFT;
    let k = shifted.to_bits() & 0xffff;
    let g = (t - (shifted - ROUNDING_SHIFT)) * (std::f64::consts::LN_2 / 256.0);
    let g2 = g * g;
    let series = (1.0 + g) + g2 * ((1.0 / 2.0 + g * (1.0 / 6.0)) + g2 * (1.0 / 24.0));
    // `2^(k / 256)`: the table entry times `2^(k >> 8)`, by adding to its exponent bits.
    let scale = f64::from_bits(EXP2_256THS[(k & 255) as usize].to_bits() + ((k >> 8) << 52));
    scale * 100.0 * series
}

/// Adding this to a float in `[0, 2^51)` rounds it to an integer stored in the low bits.
const ROUNDING_SHIFT: f64 = (3u64 << 51) as f64;

/// `2^(j / 256)` for `j` in `0..256`, by a 25-term series at compile time.
const EXP2_256THS: [f64; 256] = {
    let mut table = [1.0; 256];
    let mut j = 1;
    while j < 256 {
        let r = j as f64 / 256.0 * std::f64::consts::LN_2;
        let (mut term, mut sum, mut k) = (1.0, 1.0, 1);
        while k < 25 {
            term *= r / k as f64;
            sum += term;
            k += 1;
        }
        table[j] = sum;
        j += 1;
    }
    table
};

/// `x = 6u` for `u = draw / 2^53`, uniform in `[0, 1)` with 53 random bits.
fn price_exponent(draw: u64) -> f64 {
    draw as f64 * (1.0 / (1u64 << 53) as f64) * 6.0
}

/// The price for `x = 6u`, by definition.
fn exact_price(x: f64) -> i64 {
    (pow10(x) * 100.0).round() as i64
}

/// `10^x` for `x` in `[0, 6]`, from IEEE `+` and `*` only: `libm`'s `pow` may differ by an ulp
/// between platforms, which would make rounded prices platform-dependent.
fn pow10(x: f64) -> f64 {
    let y = x * std::f64::consts::LN_10;
    let whole = (y / std::f64::consts::LN_2).floor();
    let r = y - whole * std::f64::consts::LN_2;
    // exp(r) for r in [0, ln 2) by its Taylor series; 20 terms leave an error below 1e-19.
    let mut term = 1.0;
    let mut sum = 1.0;
    for k in 1..20 {
        term *= r / f64::from(k);
        sum += term;
    }
    sum * (1u64 << whole as u32) as f64
}

/// Appends `count` random lower-case letters, 12 from each 64-bit draw as base-26 digits
/// (26^12 < 2^64 / 190, so each letter is uniform to within 0.6%). Each call starts with a
/// fresh draw.
#[inline]
fn push_letters(rng: &mut Rng, out: &mut AsciiText, count: usize) {
    out.push_letters(count, || rng.next_u64());
}

/// Appends seven letters, `@`, five letters, `.com`.
fn push_email_address(rng: &mut Rng, out: &mut AsciiText) {
    out.push_letter_group::<7>(rng.next_u64());
    out.push_word(AT);
    out.push_letter_group::<5>(rng.next_u64());
    out.push_word(DOT_COM);
}

/// Appends four groups of four digits separated by spaces.
fn push_credit_card(rng: &mut Rng, out: &mut AsciiText) {
    for group in 0..4 {
        if group > 0 {
            out.push_word(SPACE);
        }
        out.push_decimal(rng.below(10_000), 4);
    }
}

/// A bid's channel and URL: 40% a named channel, returned, with a plain item URL; otherwise
/// `channel-<k>` for `k < 10,000`, appended to `channel`, whose URL ends with
/// `&channel_id=<k>`. The URL is appended to `url`.
fn push_channel_and_url(
    rng: &mut Rng,
    channel: &mut AsciiText,
    url: &mut AsciiText,
) -> Option<&'static str> {
    let numbered = if rng.below(10) < NAMED_CHANNEL_TENTHS {
        None
    } else {
        Some(rng.below(NUMBERED_CHANNELS))
    };
    let mut template = URL_TEMPLATE;
    for group in 0..3 {
        template.set_letters::<5>(URL_PREFIX.len() + 6 * group, rng.next_u64());
    }
    url.push_array(&template);
    match numbered {
        None => Some(pick(rng, &NAMED_CHANNEL_WORDS).as_str()),
        Some(k) => {
            url.push_word(CHANNEL_ID_PARAM);
            let k_start = url.len();
            url.push_decimal(k, 1);
            // `k` in decimal ends the URL.
            channel.push_word(CHANNEL_PREFIX);
            channel.push_tail_of(url, k_start);
            None
        }
    }
}

/// Appends padding so that `current_bytes` plus its length averages `avg_bytes`, as the
/// reference's `nextExtra`: uniform within 20% of the missing size, empty when nothing is
/// missing.
fn push_extra(rng: &mut Rng, current_bytes: usize, avg_bytes: u32, out: &mut AsciiText) {
    let avg_bytes = avg_bytes as usize;
    if current_bytes >= avg_bytes {
        return;
    }
    let target = avg_bytes - current_bytes;
    // round(target * 0.2); target / 5 never ends in .5, so this is exact.
    let delta = (target + 2) / 5;
    let spread = if delta == 0 {
        0
    } else {
        rng.below(2 * delta as u64) as usize
    };
    push_letters(rng, out, target - delta + spread);
}

mod ascii;
#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;
