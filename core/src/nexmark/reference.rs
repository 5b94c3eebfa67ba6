//! The generator as it was before its text went into [`super::ascii`] buffers and its divisions
//! became multiplications: the parts that changed, kept verbatim in logic as the test oracle
//! the current generator must equal byte for byte. It shares what did not change (the PRNG,
//! prices, id choices). Test-only.

use super::*;

/// Letters taken from one 64-bit draw: 26^12 < 2^64.
const LETTERS_PER_DRAW: usize = 12;
/// Letters [`push_letters`] generates on the stack before appending them: four draws.
const LETTER_BLOCK_BYTES: usize = 4 * LETTERS_PER_DRAW;
/// Longest bid URL: prefix, three `xxxxx/` groups, suffix and `&channel_id=9999`.
const URL_BYTES_MAX: usize = URL_PREFIX.len() + 18 + URL_SUFFIX.len() + 16;

/// The old generation of the events of `generator`'s configuration.
pub(super) struct Reference<'a> {
    generator: &'a Generator,
}

/// ASCII text built on the stack, appended to a `String` with one copy.
struct Ascii<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<'a> Reference<'a> {
    pub(super) fn new(generator: &'a Generator) -> Reference<'a> {
        Reference { generator }
    }

    /// Event number `n`, as `Generator::event` gave it.
    pub(super) fn event(&self, n: u64) -> Event {
        assert!(n <= EVENT_NUMBER_MAX);
        let slot = self.slot(n);
        let date_time = self.event_time_ms(n);
        let mut rng = Rng::for_event(self.generator.rng_key, n);
        match slot.kind {
            EventKind::Person => Event::Person(self.person(slot, &mut rng, date_time)),
            EventKind::Auction => Event::Auction(self.auction(slot, &mut rng, date_time)),
            EventKind::Bid => Event::Bid(self.bid(slot, &mut rng, date_time)),
        }
    }

    /// Event `n`'s epoch, offset within it, and kind; one division.
    pub(super) fn slot(&self, n: u64) -> Slot {
        let total_proportion = self.generator.total_proportion;
        let epoch = n / total_proportion;
        let offset = n - epoch * total_proportion;
        let config = &self.generator.config;
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

    fn event_time_ms(&self, n: u64) -> i64 {
        let config = &self.generator.config;
        let base = self.base_time_ms(n);
        if config.out_of_order_ms == 0 {
            return base;
        }
        let bound = config.out_of_order_ms.unsigned_abs() + 1;
        let jitter = Rng::for_event(self.generator.jitter_key, n).below(bound);
        base.saturating_sub(jitter as i64)
    }

    pub(super) fn base_time_ms(&self, n: u64) -> i64 {
        let config = &self.generator.config;
        let fast = (|| {
            let offset = i64::try_from(n)
                .ok()?
                .checked_sub(i64::try_from(config.first_event_id).ok()?)?;
            let events_per_second = i64::try_from(config.events_per_second).ok()?;
            let elapsed_ms = offset.checked_mul(1000)?.div_euclid(events_per_second);
            config.first_event_time_ms.checked_add(elapsed_ms)
        })();
        fast.unwrap_or_else(|| {
            let offset = i128::from(n) - i128::from(config.first_event_id);
            let elapsed_ms = (offset * 1000).div_euclid(i128::from(config.events_per_second));
            let time = i128::from(config.first_event_time_ms) + elapsed_ms;
            time.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
        })
    }

    fn person(&self, slot: Slot, rng: &mut Rng, date_time: i64) -> Person {
        let generator = self.generator;
        let id = FIRST_PERSON_ID + generator.last_base0_person_id(slot) as i64;
        let mut name = String::new();
        name.push_str(pick(rng, &FIRST_NAMES));
        name.push(' ');
        name.push_str(pick(rng, &LAST_NAMES));
        let mut email_address = String::new();
        push_email_address(rng, &mut email_address);
        let mut credit_card = String::new();
        push_credit_card(rng, &mut credit_card);
        let city = pick(rng, &US_CITIES);
        let state = pick(rng, &US_STATES);
        let size = 2 * NUMERIC_FIELD_BYTES
            + name.len()
            + email_address.len()
            + credit_card.len()
            + city.len()
            + state.len();
        let mut extra = String::new();
        push_extra(rng, size, generator.config.avg_person_bytes, &mut extra);
        Person {
            id,
            name,
            email_address,
            credit_card,
            city: city.to_owned(),
            state: state.to_owned(),
            date_time,
            extra,
        }
    }

    fn auction(&self, slot: Slot, rng: &mut Rng, date_time: i64) -> Auction {
        let generator = self.generator;
        let id = FIRST_AUCTION_ID + generator.last_base0_auction_id(slot) as i64;
        let seller = FIRST_PERSON_ID + generator.next_seller(slot, rng) as i64;
        let category = FIRST_CATEGORY_ID + rng.below(NUM_CATEGORIES) as i64;
        let initial_bid = next_price(rng);
        let expires = date_time.saturating_add(self.auction_length_ms(slot.n, rng));
        let mut item_name = String::new();
        push_letters(rng, &mut item_name, 20);
        let mut description = String::new();
        push_letters(rng, &mut description, 100);
        let reserve = initial_bid + next_price(rng);
        let size = 7 * NUMERIC_FIELD_BYTES + item_name.len() + description.len();
        let mut extra = String::new();
        push_extra(rng, size, generator.config.avg_auction_bytes, &mut extra);
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

    fn bid(&self, slot: Slot, rng: &mut Rng, date_time: i64) -> Bid {
        let generator = self.generator;
        let auction = FIRST_AUCTION_ID + generator.next_bid_auction(slot, rng) as i64;
        let bidder = FIRST_PERSON_ID + generator.next_bidder(slot, rng) as i64;
        let price = next_price(rng);
        let mut channel = String::new();
        let mut url = String::new();
        let named_channel = push_channel_and_url(rng, &mut channel, &mut url);
        let channel_len = named_channel.map_or(channel.len(), str::len);
        let size = 4 * NUMERIC_FIELD_BYTES + channel_len + url.len();
        let mut extra = String::new();
        push_extra(rng, size, generator.config.avg_bid_bytes, &mut extra);
        Bid {
            auction,
            bidder,
            price,
            channel: named_channel.map_or(channel, str::to_owned),
            url,
            date_time,
            extra,
        }
    }

    fn auction_length_ms(&self, n: u64, rng: &mut Rng) -> i64 {
        let ahead = self.generator.auction_events_ahead;
        let future = self.base_time_ms(n.saturating_add(ahead));
        let horizon_ms = future.saturating_sub(self.base_time_ms(n));
        let bound = horizon_ms.saturating_mul(2).max(1) as u64;
        1 + rng.below(bound) as i64
    }
}

/// `26^i` for `i` in `0..LETTERS_PER_DRAW`.
const POWERS_OF_26: [u64; LETTERS_PER_DRAW] = {
    let mut powers = [1u64; LETTERS_PER_DRAW];
    let mut i = 1;
    while i < LETTERS_PER_DRAW {
        powers[i] = powers[i - 1] * 26;
        i += 1;
    }
    powers
};

fn push_letters(rng: &mut Rng, out: &mut String, count: usize) {
    let mut left = count;
    while left > 0 {
        let mut block = Ascii::<LETTER_BLOCK_BYTES>::new();
        let take = left.min(LETTER_BLOCK_BYTES);
        block.push_letters(rng, take);
        out.push_str(block.as_str());
        left -= take;
    }
}

fn base26_letters(bits: u64, letters: &mut [u8]) {
    debug_assert!(letters.len() <= LETTERS_PER_DRAW);
    for (letter, power) in letters.iter_mut().zip(POWERS_OF_26) {
        let fraction = bits.wrapping_mul(power);
        *letter = b'a' + ((u128::from(fraction) * 26) >> 64) as u8;
    }
}

fn push_decimal(out: &mut String, value: u64, width: usize) {
    let mut text = Ascii::<20>::new();
    text.push_decimal(value, width);
    out.push_str(text.as_str());
}

impl<const N: usize> Ascii<N> {
    fn new() -> Self {
        Ascii {
            bytes: [0; N],
            len: 0,
        }
    }

    fn push_bytes(&mut self, bytes: &[u8]) {
        self.bytes[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    fn push_letters(&mut self, rng: &mut Rng, count: usize) {
        let end = self.len + count;
        for chunk in self.bytes[self.len..end].chunks_mut(LETTERS_PER_DRAW) {
            base26_letters(rng.next_u64(), chunk);
        }
        self.len = end;
    }

    fn push_decimal(&mut self, value: u64, width: usize) {
        let mut digits = [b'0'; 20];
        let mut at = digits.len();
        let mut rest = value;
        while rest > 0 || digits.len() - at < width.clamp(1, digits.len()) {
            at -= 1;
            digits[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        self.push_bytes(&digits[at..]);
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).expect("only ASCII is pushed")
    }
}

fn push_email_address(rng: &mut Rng, out: &mut String) {
    push_letters(rng, out, 7);
    out.push('@');
    push_letters(rng, out, 5);
    out.push_str(".com");
}

fn push_credit_card(rng: &mut Rng, out: &mut String) {
    for group in 0..4 {
        if group > 0 {
            out.push(' ');
        }
        push_decimal(out, rng.below(10_000), 4);
    }
}

fn push_channel_and_url(
    rng: &mut Rng,
    channel: &mut String,
    url: &mut String,
) -> Option<&'static str> {
    let numbered = if rng.below(10) < NAMED_CHANNEL_TENTHS {
        None
    } else {
        Some(rng.below(NUMBERED_CHANNELS))
    };
    let mut text = Ascii::<URL_BYTES_MAX>::new();
    let mut k_start = 0;
    text.push_bytes(URL_PREFIX.as_bytes());
    for _ in 0..3 {
        text.push_letters(rng, 5);
        text.push_bytes(b"/");
    }
    text.push_bytes(URL_SUFFIX.as_bytes());
    let named = match numbered {
        None => Some(pick(rng, &NAMED_CHANNELS)),
        Some(k) => {
            text.push_bytes(b"&channel_id=");
            k_start = url.len() + text.len;
            text.push_decimal(k, 1);
            None
        }
    };
    url.push_str(text.as_str());
    if named.is_none() {
        channel.push_str("channel-");
        channel.push_str(&url[k_start..]);
    }
    named
}

fn push_extra(rng: &mut Rng, current_bytes: usize, avg_bytes: u32, out: &mut String) {
    let avg_bytes = avg_bytes as usize;
    if current_bytes >= avg_bytes {
        return;
    }
    let target = avg_bytes - current_bytes;
    let delta = (target + 2) / 5;
    let spread = if delta == 0 {
        0
    } else {
        rng.below(2 * delta as u64) as usize
    };
    push_letters(rng, out, target - delta + spread);
}
