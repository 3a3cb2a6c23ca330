//! A strict reader of canonical leaf bytes and its error type.

use time::OffsetDateTime;

/// Why a leaf does not decode. Each variant names the field and, where it
/// applies, the byte offset, so that a damaged leaf can be found with a
/// hex viewer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LeafError {
    /// The leaf does not start with "MGLR".
    #[error("leaf does not start with the magic MGLR (found {found:02x?})")]
    BadMagic {
        /// The first four bytes.
        found: [u8; 4],
    },
    /// The version byte is not one this build reads.
    #[error("leaf has encoding version {version}, but this mmgen reads versions 1 and 2")]
    UnknownVersion {
        /// The version byte.
        version: u8,
    },
    /// The kind byte is not one this version defines.
    #[error("leaf has unknown kind code {code} for encoding version {version}")]
    UnknownKind {
        /// Encoding version of the leaf.
        version: u8,
        /// The kind byte.
        code: u8,
    },
    /// The leaf ends inside a field.
    #[error("leaf ends at byte {offset} inside field {field}")]
    Truncated {
        /// Field being read.
        field: &'static str,
        /// Length of the leaf.
        offset: usize,
    },
    /// Bytes remain after the last field.
    #[error("leaf has {extra} bytes after its last field")]
    TrailingBytes {
        /// Number of bytes left over.
        extra: usize,
    },
    /// A field's value is outside what `append` writes.
    #[error("leaf field {field} at byte {offset} is invalid: {reason}")]
    InvalidField {
        /// Field that failed.
        field: &'static str,
        /// Offset of the field in the leaf.
        offset: usize,
        /// What is wrong with it.
        reason: String,
    },
}

/// A cursor over leaf bytes whose reads fail with [`LeafError`].
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, offset: 0 }
    }

    /// Offset of the next byte to read.
    pub fn offset(&self) -> usize {
        self.offset
    }

    fn take(&mut self, field: &'static str, length: usize) -> Result<&'a [u8], LeafError> {
        let end = self
            .offset
            .checked_add(length)
            .filter(|&end| end <= self.bytes.len())
            .ok_or(LeafError::Truncated {
                field,
                offset: self.bytes.len(),
            })?;
        let slice = &self.bytes[self.offset..end];
        self.offset = end;
        Ok(slice)
    }

    pub fn fixed<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], LeafError> {
        let slice = self.take(field, N)?;
        let mut out = [0; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    pub fn u8(&mut self, field: &'static str) -> Result<u8, LeafError> {
        Ok(self.fixed::<1>(field)?[0])
    }

    pub fn u32(&mut self, field: &'static str) -> Result<u32, LeafError> {
        Ok(u32::from_be_bytes(self.fixed(field)?))
    }

    pub fn u64(&mut self, field: &'static str) -> Result<u64, LeafError> {
        Ok(u64::from_be_bytes(self.fixed(field)?))
    }

    /// Reads a length-prefixed byte string of `min..=max` bytes.
    pub fn var(
        &mut self,
        field: &'static str,
        min: usize,
        max: usize,
    ) -> Result<&'a [u8], LeafError> {
        let start = self.offset;
        let length = self.u32(field)? as usize;
        if !(min..=max).contains(&length) {
            return Err(self.invalid(
                field,
                start,
                format!("length {length} is outside {min} to {max} bytes"),
            ));
        }
        self.take(field, length)
    }

    /// Reads a length-prefixed UTF-8 string of `min..=max` bytes.
    pub fn text(
        &mut self,
        field: &'static str,
        min: usize,
        max: usize,
    ) -> Result<String, LeafError> {
        let start = self.offset;
        let bytes = self.var(field, min, max)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|error| self.invalid(field, start, format!("not UTF-8 ({error})")))
    }

    /// Reads i64 seconds and u32 nanoseconds since the epoch.
    pub fn time(&mut self, field: &'static str) -> Result<OffsetDateTime, LeafError> {
        let start = self.offset;
        let seconds = i64::from_be_bytes(self.fixed(field)?);
        let nanos = self.u32(field)?;
        if nanos >= 1_000_000_000 {
            return Err(self.invalid(
                field,
                start,
                format!("nanoseconds {nanos} exceed 999999999"),
            ));
        }
        let total = i128::from(seconds) * 1_000_000_000 + i128::from(nanos);
        // `append` stores times as i64 nanoseconds, years 1677 to 2262.
        if i64::try_from(total).is_err() {
            return Err(self.invalid(field, start, format!("{seconds} s is out of range")));
        }
        OffsetDateTime::from_unix_timestamp_nanos(total)
            .map_err(|error| self.invalid(field, start, error.to_string()))
    }

    /// Reads a finite IEEE 754 binary64.
    pub fn finite_f64(&mut self, field: &'static str) -> Result<f64, LeafError> {
        let start = self.offset;
        let value = f64::from_bits(self.u64(field)?);
        if !value.is_finite() {
            return Err(self.invalid(field, start, format!("{value} is not finite")));
        }
        Ok(value)
    }

    pub fn invalid(&self, field: &'static str, offset: usize, reason: String) -> LeafError {
        LeafError::InvalidField {
            field,
            offset,
            reason,
        }
    }

    /// Rejects bytes after the last field.
    pub fn finish(&self) -> Result<(), LeafError> {
        let extra = self.bytes.len() - self.offset;
        if extra > 0 {
            return Err(LeafError::TrailingBytes { extra });
        }
        Ok(())
    }
}
