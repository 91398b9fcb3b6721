//! The protobuf wire format, read without a schema: field keys, varints, fixed-width numbers
//! and length-delimited bytes. Every read is bounds-checked; nothing here can panic.

use crate::error::WireProblem;

pub(crate) const WIRE_VARINT: u8 = 0;
pub(crate) const WIRE_FIXED64: u8 = 1;
pub(crate) const WIRE_LEN: u8 = 2;
pub(crate) const WIRE_FIXED32: u8 = 5;

/// Largest field number protobuf allows (2^29 - 1).
const MAX_FIELD_NUMBER: u64 = (1 << 29) - 1;

/// One field value as it appears on the wire.
#[derive(Clone, Copy, Debug)]
pub(crate) enum WireValue<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Bytes(&'a [u8]),
}

impl WireValue<'_> {
    pub(crate) fn wire_type(&self) -> u8 {
        match self {
            WireValue::Varint(_) => WIRE_VARINT,
            WireValue::Fixed64(_) => WIRE_FIXED64,
            WireValue::Fixed32(_) => WIRE_FIXED32,
            WireValue::Bytes(_) => WIRE_LEN,
        }
    }
}

/// Iterates over the `(field number, value)` pairs of one encoded message.
pub(crate) struct FieldReader<'a> {
    rest: &'a [u8],
}

impl<'a> FieldReader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> FieldReader<'a> {
        FieldReader { rest: bytes }
    }

    fn read_field(&mut self) -> Result<(u32, WireValue<'a>), WireProblem> {
        let key = read_varint(&mut self.rest)?;
        let number = key >> 3;
        if number == 0 || number > MAX_FIELD_NUMBER {
            return Err(WireProblem::InvalidFieldNumber(number));
        }
        let tag = u32::try_from(number).map_err(|_| WireProblem::InvalidFieldNumber(number))?;
        let wire_type = (key & 7) as u8;
        let value = match wire_type {
            WIRE_VARINT => WireValue::Varint(read_varint(&mut self.rest)?),
            WIRE_FIXED64 => WireValue::Fixed64(u64::from_le_bytes(take_array(&mut self.rest)?)),
            WIRE_FIXED32 => WireValue::Fixed32(u32::from_le_bytes(take_array(&mut self.rest)?)),
            WIRE_LEN => {
                let length = read_varint(&mut self.rest)?;
                let length = usize::try_from(length).map_err(|_| WireProblem::Truncated)?;
                if length > self.rest.len() {
                    return Err(WireProblem::Truncated);
                }
                let (bytes, rest) = self.rest.split_at(length);
                self.rest = rest;
                WireValue::Bytes(bytes)
            }
            // Groups (3, 4) are a proto2 feature Kubernetes never uses; 6 and 7 do not exist.
            _ => return Err(WireProblem::UnsupportedWireType { tag, wire_type }),
        };
        Ok((tag, value))
    }
}

impl<'a> Iterator for FieldReader<'a> {
    type Item = Result<(u32, WireValue<'a>), WireProblem>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let field = self.read_field();
        if field.is_err() {
            // Stop after the first error rather than resynchronising on garbage.
            self.rest = &[];
        }
        Some(field)
    }
}

pub(crate) fn read_varint(bytes: &mut &[u8]) -> Result<u64, WireProblem> {
    let mut value: u64 = 0;
    for index in 0..10 {
        let (&byte, rest) = bytes.split_first().ok_or(WireProblem::Truncated)?;
        *bytes = rest;
        // The tenth byte may only carry the top bit of a 64-bit value.
        if index == 9 && byte > 1 {
            return Err(WireProblem::VarintOverflow);
        }
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(WireProblem::VarintOverflow)
}

fn take_array<const N: usize>(bytes: &mut &[u8]) -> Result<[u8; N], WireProblem> {
    let (head, rest) = bytes
        .split_first_chunk::<N>()
        .ok_or(WireProblem::Truncated)?;
    *bytes = rest;
    Ok(*head)
}

/// Splits a packed repeated field of fixed 8-byte values.
pub(crate) fn packed_fixed64(bytes: &[u8]) -> Result<Vec<u64>, WireProblem> {
    let (chunks, remainder) = bytes.as_chunks::<8>();
    if !remainder.is_empty() {
        return Err(WireProblem::Truncated);
    }
    Ok(chunks
        .iter()
        .map(|chunk| u64::from_le_bytes(*chunk))
        .collect())
}

/// Splits a packed repeated field of varints.
pub(crate) fn packed_varints(mut bytes: &[u8]) -> Result<Vec<u64>, WireProblem> {
    let mut values = Vec::new();
    while !bytes.is_empty() {
        values.push(read_varint(&mut bytes)?);
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_of_each_wire_type() {
        // field 1 varint 150, field 2 bytes "hi", field 3 fixed64 1, field 4 fixed32 2
        let bytes = [
            0x08, 0x96, 0x01, 0x12, 0x02, b'h', b'i', 0x19, 1, 0, 0, 0, 0, 0, 0, 0, 0x25, 2, 0, 0,
            0,
        ];
        let fields = FieldReader::new(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .expect("valid fields");
        assert!(matches!(fields[0], (1, WireValue::Varint(150))));
        assert!(matches!(fields[1], (2, WireValue::Bytes(b"hi"))));
        assert!(matches!(fields[2], (3, WireValue::Fixed64(1))));
        assert!(matches!(fields[3], (4, WireValue::Fixed32(2))));
    }

    #[test]
    fn rejects_truncation_overflow_and_groups() {
        let truncated = FieldReader::new(&[0x12, 0x05, b'a'])
            .next()
            .expect("one result");
        assert!(matches!(truncated, Err(WireProblem::Truncated)));
        let overflow = [
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
        ];
        assert!(matches!(
            FieldReader::new(&overflow).next().expect("one result"),
            Err(WireProblem::VarintOverflow)
        ));
        assert!(matches!(
            FieldReader::new(&[0x0b]).next().expect("one result"),
            Err(WireProblem::UnsupportedWireType {
                tag: 1,
                wire_type: 3
            })
        ));
        assert!(matches!(
            FieldReader::new(&[0x00]).next().expect("one result"),
            Err(WireProblem::InvalidFieldNumber(0))
        ));
    }

    #[test]
    fn reads_the_largest_varint() {
        let mut bytes: &[u8] = &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(read_varint(&mut bytes).expect("valid varint"), u64::MAX);
    }
}
