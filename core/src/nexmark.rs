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

use crate::batch::BatchBuilder;
use crate::error::Result;
use crate::row::ValueRef;
use crate::schema::{DataType, Field, Schema};

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
/// Why a count or ratio that must be positive was refused.
const POSITIVE: &str = "must be at least 1";
/// Serialized-size estimate of one numeric field (id, price, timestamp), as the reference uses.
const NUMERIC_FIELD_BYTES: usize = 8;
/// Salt that gives the timestamp jitter its own PRNG stream, so enabling out-of-orderness
/// leaves every other field of an event unchanged.
const JITTER_STREAM: u64 = 0x6a69_7474_6572_0001;

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

/// Generates events by number; cheap to share, holds only the configuration.
#[derive(Debug, Clone)]
pub struct Generator {
    config: GeneratorConfig,
    total_proportion: u64,
}

/// A SplitMix64 stream, seeded per event so events can be generated in any order.
#[derive(Debug, Clone)]
struct Rng {
    state: u64,
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
        let values = [
            ValueRef::I64(self.id),
            ValueRef::Str(&self.name),
            ValueRef::Str(&self.email_address),
            ValueRef::Str(&self.credit_card),
            ValueRef::Str(&self.city),
            ValueRef::Str(&self.state),
            ValueRef::Timestamp(self.date_time),
            ValueRef::Str(&self.extra),
        ];
        builder.push_with_time(&values, self.date_time)
    }
}

impl Auction {
    /// Appends this auction as a row of [`auction_schema`], with `date_time` as event time.
    /// Strings are borrowed, not copied.
    pub fn push_to(&self, builder: &mut BatchBuilder) -> Result<()> {
        let values = [
            ValueRef::I64(self.id),
            ValueRef::Str(&self.item_name),
            ValueRef::Str(&self.description),
            ValueRef::I64(self.initial_bid),
            ValueRef::I64(self.reserve),
            ValueRef::Timestamp(self.date_time),
            ValueRef::Timestamp(self.expires),
            ValueRef::I64(self.seller),
            ValueRef::I64(self.category),
            ValueRef::Str(&self.extra),
        ];
        builder.push_with_time(&values, self.date_time)
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
        let values = [
            ValueRef::I64(self.auction),
            ValueRef::I64(self.bidder),
            ValueRef::I64(self.price),
            ValueRef::Str(&self.channel),
            ValueRef::Str(&self.url),
            ValueRef::Timestamp(self.date_time),
            ValueRef::Str(&self.extra),
        ];
        builder.push_with_time(&values, self.date_time)
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
        Ok(Generator {
            config,
            total_proportion,
        })
    }

    /// The configuration this generator runs with.
    pub fn config(&self) -> &GeneratorConfig {
        &self.config
    }

    /// Which type of event number `n` is, by `n` modulo the total proportion.
    pub fn kind(&self, n: u64) -> EventKind {
        let rem = n % self.total_proportion;
        if rem < self.config.person_proportion {
            EventKind::Person
        } else if rem < self.config.person_proportion + self.config.auction_proportion {
            EventKind::Auction
        } else {
            EventKind::Bid
        }
    }

    /// Event number `n` (absolute, not relative to `first_event_id`). The result depends only on
    /// the configuration and `n`, never on which events were generated before.
    ///
    /// # Panics
    /// If `n > EVENT_NUMBER_MAX`.
    pub fn event(&self, n: u64) -> Event {
        assert!(
            n <= EVENT_NUMBER_MAX,
            "event number {n} exceeds {EVENT_NUMBER_MAX}"
        );
        let date_time = self.event_time_ms(n);
        let mut rng = Rng::for_event(self.config.seed, n);
        match self.kind(n) {
            EventKind::Person => Event::Person(self.person(n, &mut rng, date_time)),
            EventKind::Auction => Event::Auction(self.auction(n, &mut rng, date_time)),
            EventKind::Bid => Event::Bid(self.bid(n, &mut rng, date_time)),
        }
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

    /// Event time of event `n`: `first_event_time_ms` plus `(n - first_event_id)` events at
    /// `events_per_second`, minus the optional out-of-order jitter.
    fn event_time_ms(&self, n: u64) -> i64 {
        let base = self.base_time_ms(n);
        if self.config.out_of_order_ms == 0 {
            return base;
        }
        let bound = self.config.out_of_order_ms.unsigned_abs() + 1;
        let jitter = Rng::for_event(self.config.seed ^ JITTER_STREAM, n).below(bound);
        base.saturating_sub(jitter as i64)
    }

    /// Event time of event `n` before jitter; non-decreasing in `n`.
    fn base_time_ms(&self, n: u64) -> i64 {
        let offset = i128::from(n) - i128::from(self.config.first_event_id);
        let elapsed_ms = (offset * 1000).div_euclid(i128::from(self.config.events_per_second));
        let time = i128::from(self.config.first_event_time_ms) + elapsed_ms;
        time.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }

    fn person(&self, n: u64, rng: &mut Rng, date_time: i64) -> Person {
        let id = FIRST_PERSON_ID + self.last_base0_person_id(n) as i64;
        let mut name = String::with_capacity(16);
        name.push_str(pick(rng, &FIRST_NAMES));
        name.push(' ');
        name.push_str(pick(rng, &LAST_NAMES));
        let email_address = email_address(rng);
        let credit_card = credit_card(rng);
        let city = pick(rng, &US_CITIES).to_owned();
        let state = pick(rng, &US_STATES).to_owned();
        let strings = [&name, &email_address, &credit_card, &city, &state];
        let size = 2 * NUMERIC_FIELD_BYTES + strings.iter().map(|s| s.len()).sum::<usize>();
        let extra = next_extra(rng, size, self.config.avg_person_bytes);
        Person {
            id,
            name,
            email_address,
            credit_card,
            city,
            state,
            date_time,
            extra,
        }
    }

    fn auction(&self, n: u64, rng: &mut Rng, date_time: i64) -> Auction {
        let id = FIRST_AUCTION_ID + self.last_base0_auction_id(n) as i64;
        let seller = FIRST_PERSON_ID + self.next_seller(n, rng) as i64;
        let category = FIRST_CATEGORY_ID + rng.below(NUM_CATEGORIES) as i64;
        let initial_bid = next_price(rng);
        let expires = date_time.saturating_add(self.auction_length_ms(n, rng));
        let item_name = letters(rng, 20);
        let description = letters(rng, 100);
        let reserve = initial_bid + next_price(rng);
        let size = 7 * NUMERIC_FIELD_BYTES + item_name.len() + description.len();
        let extra = next_extra(rng, size, self.config.avg_auction_bytes);
        Auction {
            id,
            item_name,
            description,
            initial_bid,
            reserve,
            date_time,
            expires,
            seller,
            category,
            extra,
        }
    }

    fn bid(&self, n: u64, rng: &mut Rng, date_time: i64) -> Bid {
        let auction = FIRST_AUCTION_ID + self.next_bid_auction(n, rng) as i64;
        let bidder = FIRST_PERSON_ID + self.next_bidder(n, rng) as i64;
        let price = next_price(rng);
        let (channel, url) = channel_and_url(rng);
        let size = 4 * NUMERIC_FIELD_BYTES + channel.len() + url.len();
        let extra = next_extra(rng, size, self.config.avg_bid_bytes);
        Bid {
            auction,
            bidder,
            price,
            channel,
            url,
            date_time,
            extra,
        }
    }

    /// The last person id (base 0) created at or before event `n`; `n`'s own id for a person.
    fn last_base0_person_id(&self, n: u64) -> u64 {
        let epoch = n / self.total_proportion;
        let offset = (n % self.total_proportion).min(self.config.person_proportion - 1);
        epoch * self.config.person_proportion + offset
    }

    /// The last auction id (base 0) created at or before event `n`; `n`'s own id for an
    /// auction. Before the first auction this is 0, as ids are unsigned (the reference gives -1).
    fn last_base0_auction_id(&self, n: u64) -> u64 {
        let config = &self.config;
        let mut epoch = (n / self.total_proportion) as i64;
        let mut offset = n % self.total_proportion;
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
    fn next_base0_person_id(&self, n: u64, rng: &mut Rng) -> u64 {
        let num_people = self.last_base0_person_id(n) + 1;
        let active = num_people.min(self.config.num_active_people);
        num_people - active + rng.below(active + PERSON_ID_LEAD)
    }

    /// A cold auction id (base 0): one of the `num_in_flight_auctions` latest auctions, or up
    /// to [`AUCTION_ID_LEAD`] auctions not yet created.
    fn next_base0_auction_id(&self, n: u64, rng: &mut Rng) -> u64 {
        let max = self.last_base0_auction_id(n);
        let min = max.saturating_sub(self.config.num_in_flight_auctions);
        min + rng.below(max - min + 1 + AUCTION_ID_LEAD)
    }

    fn next_seller(&self, n: u64, rng: &mut Rng) -> u64 {
        if rng.below(self.config.hot_sellers_ratio) > 0 {
            (self.last_base0_person_id(n) / HOT_SELLER_RATIO) * HOT_SELLER_RATIO
        } else {
            self.next_base0_person_id(n, rng)
        }
    }

    fn next_bid_auction(&self, n: u64, rng: &mut Rng) -> u64 {
        if rng.below(self.config.hot_auction_ratio) > 0 {
            (self.last_base0_auction_id(n) / HOT_AUCTION_RATIO) * HOT_AUCTION_RATIO
        } else {
            self.next_base0_auction_id(n, rng)
        }
    }

    fn next_bidder(&self, n: u64, rng: &mut Rng) -> u64 {
        if rng.below(self.config.hot_bidders_ratio) > 0 {
            // The second person of the hot run, so hot bidders and hot sellers differ.
            (self.last_base0_person_id(n) / HOT_BIDDER_RATIO) * HOT_BIDDER_RATIO + 1
        } else {
            self.next_base0_person_id(n, rng)
        }
    }

    /// Auction length, as the reference: the horizon is the event time until
    /// `num_in_flight_auctions` more auctions have been created, and the length is uniform in
    /// `[1, 2 * horizon]`, so on average about that many auctions are open. With the defaults
    /// the horizon is 1,666 events, 166 ms of event time. Always at least 1 ms.
    fn auction_length_ms(&self, n: u64, rng: &mut Rng) -> i64 {
        let events_ahead = self
            .config
            .num_in_flight_auctions
            .saturating_mul(self.total_proportion)
            / self.config.auction_proportion;
        let future = self.base_time_ms(n.saturating_add(events_ahead));
        let horizon_ms = future.saturating_sub(self.base_time_ms(n));
        let bound = horizon_ms.saturating_mul(2).max(1) as u64;
        1 + rng.below(bound) as i64
    }
}

impl Rng {
    const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

    /// The stream of event `n`. `mix64` is a bijection, so for one seed every event number
    /// starts from a distinct state.
    fn for_event(seed: u64, n: u64) -> Rng {
        Rng {
            state: mix64(mix64(seed) ^ n),
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

    /// Uniform in `[0, 1)` with 53 random bits.
    fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
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

fn pick(rng: &mut Rng, items: &[&'static str]) -> &'static str {
    items[rng.below(items.len() as u64) as usize]
}

/// A price as the reference draws it: `round(10^(6u) * 100)`, so from 100 to 100,000,000,
/// log-uniform.
fn next_price(rng: &mut Rng) -> i64 {
    (pow10(rng.f64() * 6.0) * 100.0).round() as i64
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

/// `count` random lower-case letters.
fn letters(rng: &mut Rng, count: usize) -> String {
    let mut out = String::with_capacity(count);
    push_letters(rng, &mut out, count);
    out
}

/// Appends `count` random lower-case letters, taking 12 from each 64-bit draw as base-26
/// digits (26^12 < 2^64 / 190, so each letter is uniform to within 0.6%).
fn push_letters(rng: &mut Rng, out: &mut String, count: usize) {
    const LETTERS_PER_DRAW: u32 = 12;
    let mut bits = 0u64;
    let mut left = 0u32;
    for _ in 0..count {
        if left == 0 {
            bits = rng.next_u64();
            left = LETTERS_PER_DRAW;
        }
        let wide = u128::from(bits) * 26;
        out.push(char::from(b'a' + (wide >> 64) as u8));
        bits = wide as u64;
        left -= 1;
    }
}

/// Appends `value` in decimal, zero-padded to at least `width` digits.
fn push_decimal(out: &mut String, value: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut at = digits.len();
    let mut rest = value;
    while rest > 0 || digits.len() - at < width.clamp(1, digits.len()) {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.extend(digits[at..].iter().map(|&d| char::from(d)));
}

/// Seven letters, `@`, five letters, `.com`.
fn email_address(rng: &mut Rng) -> String {
    let mut out = String::with_capacity(17);
    push_letters(rng, &mut out, 7);
    out.push('@');
    push_letters(rng, &mut out, 5);
    out.push_str(".com");
    out
}

/// Four groups of four digits separated by spaces.
fn credit_card(rng: &mut Rng) -> String {
    let mut out = String::with_capacity(19);
    for group in 0..4 {
        if group > 0 {
            out.push(' ');
        }
        push_decimal(&mut out, rng.below(10_000), 4);
    }
    out
}

/// A bid's channel and URL: 40% a named channel with a plain item URL, otherwise
/// `channel-<k>` for `k < 10,000`, whose URL ends with `&channel_id=<k>`.
fn channel_and_url(rng: &mut Rng) -> (String, String) {
    let numbered = if rng.below(10) < NAMED_CHANNEL_TENTHS {
        None
    } else {
        Some(rng.below(NUMBERED_CHANNELS))
    };
    let mut url = String::with_capacity(90);
    url.push_str(URL_PREFIX);
    for _ in 0..3 {
        push_letters(rng, &mut url, 5);
        url.push('/');
    }
    url.push_str(URL_SUFFIX);
    let channel = match numbered {
        None => pick(rng, &NAMED_CHANNELS).to_owned(),
        Some(k) => {
            url.push_str("&channel_id=");
            push_decimal(&mut url, k, 1);
            let mut channel = String::from("channel-");
            push_decimal(&mut channel, k, 1);
            channel
        }
    };
    (channel, url)
}

/// Padding so that `current_bytes` plus its length averages `avg_bytes`, as the reference's
/// `nextExtra`: uniform within 20% of the missing size, empty when nothing is missing.
fn next_extra(rng: &mut Rng, current_bytes: usize, avg_bytes: u32) -> String {
    let avg_bytes = avg_bytes as usize;
    if current_bytes >= avg_bytes {
        return String::new();
    }
    let target = avg_bytes - current_bytes;
    // round(target * 0.2); target / 5 never ends in .5, so this is exact.
    let delta = (target + 2) / 5;
    let spread = if delta == 0 {
        0
    } else {
        rng.below(2 * delta as u64) as usize
    };
    letters(rng, target - delta + spread)
}

#[cfg(test)]
mod tests;
