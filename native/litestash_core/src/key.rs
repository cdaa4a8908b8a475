//! Keys: validation, the BLAKE2b-512 `key_hash`, and routing to a shard
//! file and table (contract sections 1 to 3).

use crate::error::{Error, ErrorKind, Result};
use blake2::{Blake2b512, Digest};
use once_cell::sync::Lazy;

/// The longest key, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 1024;

/// Number of shard files in a data dir.
pub const SHARD_COUNT: usize = 16;

/// Number of tables in one shard file.
pub const TABLES_PER_SHARD: usize = 4;

/// The 16 shard names, in the contract's order. The file of shard `s` is
/// `<data_dir>/<s>/<s>.db`.
pub const SHARDS: [&str; SHARD_COUNT] = [
    "tables_03",
    "tables_47",
    "tables_89hu",
    "tables_ab",
    "tables_cd",
    "tables_ef",
    "tables_gh",
    "tables_ij",
    "tables_kl",
    "tables_mn",
    "tables_op",
    "tables_qr",
    "tables_st",
    "tables_uv",
    "tables_wx",
    "tables_yz",
];

/// Where a key lives: the index of its shard in [`SHARDS`] and of its table
/// within that shard (see [`table_names`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Index into [`SHARDS`].
    pub shard: usize,
    /// Index into `table_names(shard)`.
    pub table: usize,
}

/// The first characters of `key_hash` that route to each shard, in table order.
const SHARD_CHARS: [[u8; TABLES_PER_SHARD]; SHARD_COUNT] = [
    *b"0123", *b"4567", *b"89-_", *b"abAB", *b"cdCD", *b"efEF", *b"ghGH", *b"ijIJ", *b"klKL",
    *b"mnMN", *b"opOP", *b"qrQR", *b"stST", *b"uvUV", *b"wxWX", *b"yzYZ",
];

fn table_name_for(shard: &str, c: u8) -> String {
    match c {
        b'-' => format!("{shard}_hash_hyphen"),
        b'_' => format!("{shard}_hash_underscore"),
        b'a'..=b'z' => format!("{shard}_lower_hash_{}", c as char),
        b'A'..=b'Z' => format!("{shard}_upper_hash_{}", c.to_ascii_lowercase() as char),
        _ => format!("{shard}_hash_{}", c as char),
    }
}

static TABLE_NAMES: Lazy<Vec<[String; TABLES_PER_SHARD]>> = Lazy::new(|| {
    SHARDS
        .iter()
        .zip(SHARD_CHARS.iter())
        .map(|(shard, chars)| chars.map(|c| table_name_for(shard, c)))
        .collect()
});

/// Route of every ASCII byte that starts a key hash; `None` for the others.
static ROUTES: Lazy<[Option<Route>; 128]> = Lazy::new(|| {
    let mut routes = [None; 128];
    for (shard, chars) in SHARD_CHARS.iter().enumerate() {
        for (table, &c) in chars.iter().enumerate() {
            routes[c as usize] = Some(Route { shard, table });
        }
    }
    routes
});

/// The names of the 4 tables of shard `shard` (an index into [`SHARDS`]).
pub fn table_names(shard: usize) -> &'static [String; TABLES_PER_SHARD] {
    &TABLE_NAMES[shard % SHARD_COUNT]
}

/// Checks that `key` is 1 to 1024 bytes of UTF-8 and returns it as text.
///
/// # Errors
/// [`ErrorKind::InvalidKey`] with a message that says which rule failed.
pub fn validate(key: &[u8]) -> Result<&str> {
    if key.is_empty() {
        return Err(Error::new(ErrorKind::InvalidKey, "key is empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::new(
            ErrorKind::InvalidKey,
            format!("key is {} bytes, the limit is {MAX_KEY_BYTES}", key.len()),
        ));
    }
    std::str::from_utf8(key).map_err(|e| {
        Error::new(
            ErrorKind::InvalidKey,
            format!("key is not valid UTF-8 (at byte {})", e.valid_up_to()),
        )
    })
}

const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Padded base64url (RFC 4648 section 5) of `bytes`.
fn base64url(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextets = [(n >> 18) & 63, (n >> 12) & 63, (n >> 6) & 63, n & 63];
        for (i, s) in sextets.iter().enumerate() {
            if i <= chunk.len() {
                out.push(BASE64URL[*s as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The contract's `key_hash`: padded base64url of the 64-byte BLAKE2b digest
/// of the key's UTF-8 bytes, always 88 characters.
///
/// ```
/// let h = litestash_core::key_hash("user:1001");
/// assert_eq!(h.len(), 88);
/// assert!(h.ends_with("=="));
/// ```
pub fn key_hash(key: &str) -> String {
    base64url(&Blake2b512::digest(key.as_bytes()))
}

/// The shard and table that a key hash routes to, by its first character.
///
/// # Errors
/// [`ErrorKind::Internal`] when `hash` does not start with a base64url
/// character (never the case for a hash from [`key_hash`]).
pub fn route(hash: &str) -> Result<Route> {
    hash.as_bytes()
        .first()
        .and_then(|&c| ROUTES.get(c as usize).copied().flatten())
        .ok_or_else(|| Error::new(ErrorKind::Internal, format!("unroutable key hash {hash:?}")))
}

/// A validated key with its hash and route, computed once.
#[derive(Debug, Clone)]
pub struct Key {
    /// The key as given.
    pub text: String,
    /// Its `key_hash`.
    pub hash: String,
    /// Where it lives.
    pub route: Route,
}

impl Key {
    /// Validates `key`, hashes and routes it.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidKey`] when the key breaks section 1 of the contract.
    pub fn new(key: &[u8]) -> Result<Key> {
        Key::of_valid(validate(key)?)
    }

    /// As [`Key::new`] for a key [`validate`] already passed.
    pub(crate) fn of_valid(text: &str) -> Result<Key> {
        let hash = key_hash(text);
        let route = route(&hash)?;
        Ok(Key {
            text: text.to_owned(),
            hash,
            route,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_pads_like_rfc_4648() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg==");
        assert_eq!(base64url(b"fo"), "Zm8=");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8=");
    }

    #[test]
    fn every_base64url_character_routes_and_nothing_else_does() {
        for c in 0u8..128 {
            let routed = route(&(c as char).to_string()).is_ok();
            assert_eq!(routed, BASE64URL.contains(&c), "char {c}");
        }
        assert!(route("").is_err());
    }

    #[test]
    fn validate_rejects_empty_long_and_non_utf8_keys() {
        assert_eq!(validate(b"").unwrap_err().kind(), ErrorKind::InvalidKey);
        assert!(validate(&[b'x'; 1024]).is_ok());
        assert_eq!(
            validate(&[b'x'; 1025]).unwrap_err().kind(),
            ErrorKind::InvalidKey
        );
        assert_eq!(
            validate(&[0xff, 0xfe]).unwrap_err().kind(),
            ErrorKind::InvalidKey
        );
    }
}
