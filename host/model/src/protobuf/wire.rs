//! The protobuf wire format: varints, field keys and length-delimited payloads.

/// One field's payload as it appears on the wire.
pub(super) enum Payload<'a> {
    Varint(u64),
    Fixed64(u64),
    /// A 4-byte value; no Kubernetes message has one, so only ever skipped.
    Fixed32,
    Len(&'a [u8]),
}

/// The fields of one message, in wire order: `(tag, payload)` or the reason the bytes are malformed.
pub(super) struct Fields<'a> {
    buf: &'a [u8],
}

impl<'a> Fields<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Fields { buf }
    }

    fn next_field(&mut self) -> Result<(u32, Payload<'a>), &'static str> {
        let key = varint(&mut self.buf)?;
        let tag = u32::try_from(key >> 3).map_err(|_| "field number out of range")?;
        if tag == 0 {
            return Err("field number 0");
        }
        let payload = match key & 7 {
            0 => Payload::Varint(varint(&mut self.buf)?),
            1 => Payload::Fixed64(u64::from_le_bytes(
                take(&mut self.buf, 8)?
                    .try_into()
                    .map_err(|_| "truncated fixed64")?,
            )),
            2 => {
                let len =
                    usize::try_from(varint(&mut self.buf)?).map_err(|_| "length out of range")?;
                Payload::Len(take(&mut self.buf, len)?)
            }
            5 => {
                take(&mut self.buf, 4)?;
                Payload::Fixed32
            }
            _ => return Err("unsupported wire type (groups are not used by Kubernetes)"),
        };
        Ok((tag, payload))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Payload<'a>), &'static str>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        let item = self.next_field();
        if item.is_err() {
            // Stop after the first error: the rest of the buffer cannot be framed.
            self.buf = &[];
        }
        Some(item)
    }
}

/// Reads one base-128 varint from the front of `buf`.
pub(super) fn varint(buf: &mut &[u8]) -> Result<u64, &'static str> {
    let mut value = 0u64;
    for (i, byte) in buf.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *buf = &buf[i + 1..];
            return Ok(value);
        }
    }
    Err(if buf.len() < 10 {
        "truncated varint"
    } else {
        "varint longer than 10 bytes"
    })
}

fn take<'a>(buf: &mut &'a [u8], len: usize) -> Result<&'a [u8], &'static str> {
    if buf.len() < len {
        return Err("truncated field");
    }
    let (head, rest) = buf.split_at(len);
    *buf = rest;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        let mut buf: &[u8] = &[0x96, 0x01, 0x05];
        assert_eq!(varint(&mut buf), Ok(150));
        assert_eq!(buf, &[0x05]);
        let mut truncated: &[u8] = &[0x96];
        assert_eq!(varint(&mut truncated), Err("truncated varint"));
        let mut long: &[u8] = &[0xff; 11];
        assert_eq!(varint(&mut long), Err("varint longer than 10 bytes"));
    }

    #[test]
    fn fields_in_order_and_errors_stop() {
        // 1: varint 1; 2: "hi"; 5 (fixed32); 3: fixed64 2
        let buf = [
            0x08, 0x01, 0x12, 0x02, b'h', b'i', 0x2d, 0, 0, 0, 0, 0x19, 2, 0, 0, 0, 0, 0, 0, 0,
        ];
        let tags: Vec<u32> = Fields::new(&buf)
            .map(|f| f.map(|(t, _)| t))
            .collect::<Result<_, _>>()
            .unwrap_or_default();
        assert_eq!(tags, [1, 2, 5, 3]);
        let bad = [0x12, 0x05, b'h'];
        let items: Vec<_> = Fields::new(&bad).collect();
        assert_eq!(items.len(), 1);
        assert!(matches!(items[0], Err("truncated field")));
    }
}
