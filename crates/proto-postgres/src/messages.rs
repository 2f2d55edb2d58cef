//! Builders for the messages the gateway itself sends.

use bytes::{BufMut, BytesMut};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::data::DataRow;
use pgwire::messages::response::{ErrorResponse, NoticeResponse};

/// Fields of an error or notice the gateway generates.
pub(crate) fn error_response(severity: &str, code: &str, message: &str) -> PgWireBackendMessage {
    PgWireBackendMessage::ErrorResponse(ErrorResponse::new(vec![
        (b'S', severity.to_string()),
        (b'V', severity.to_string()),
        (b'C', code.to_string()),
        (b'M', message.to_string()),
    ]))
}

/// An error with a detail and a hint.
pub(crate) fn error_with_detail(code: &str, message: &str, detail: &str) -> PgWireBackendMessage {
    PgWireBackendMessage::ErrorResponse(ErrorResponse::new(vec![
        (b'S', "ERROR".to_string()),
        (b'V', "ERROR".to_string()),
        (b'C', code.to_string()),
        (b'M', message.to_string()),
        (b'D', detail.to_string()),
    ]))
}

/// A notice from the gateway.
pub(crate) fn notice(message: &str) -> PgWireBackendMessage {
    PgWireBackendMessage::NoticeResponse(NoticeResponse::new(vec![
        (b'S', "NOTICE".to_string()),
        (b'V', "NOTICE".to_string()),
        (b'C', "00000".to_string()),
        (b'M', message.to_string()),
    ]))
}

/// Encodes messages, ignoring none: an encoding failure is reported.
pub(crate) fn encode_all(msgs: &[PgWireBackendMessage], out: &mut BytesMut) -> Result<(), String> {
    for m in msgs {
        m.encode(out).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The SQLSTATE and message of an error or notice.
pub fn error_fields(fields: &[(u8, String)]) -> (String, String) {
    let mut code = String::new();
    let mut message = String::new();
    for (k, v) in fields {
        match k {
            b'C' => code.clone_from(v),
            b'M' => message.clone_from(v),
            _ => {}
        }
    }
    (code, message)
}

/// Splits a `DataRow` into its fields (`None` is NULL). `None` if the row is malformed.
pub(crate) fn split_fields(row: &DataRow) -> Option<Vec<Option<Vec<u8>>>> {
    let count = usize::try_from(row.field_count).ok()?;
    let mut fields = Vec::with_capacity(count);
    let mut rest: &[u8] = &row.data;
    for _ in 0..count {
        let (len, tail) = rest.split_first_chunk::<4>()?;
        let len = i32::from_be_bytes(*len);
        if len < 0 {
            fields.push(None);
            rest = tail;
        } else {
            let len = usize::try_from(len).ok()?;
            if tail.len() < len {
                return None;
            }
            let (value, tail) = tail.split_at(len);
            fields.push(Some(value.to_vec()));
            rest = tail;
        }
    }
    rest.is_empty().then_some(fields)
}

/// Builds a `DataRow` from fields.
pub(crate) fn join_fields(fields: &[Option<Vec<u8>>]) -> Option<DataRow> {
    let count = i16::try_from(fields.len()).ok()?;
    let mut data = BytesMut::new();
    for f in fields {
        match f {
            None => data.put_i32(-1),
            Some(v) => {
                data.put_i32(i32::try_from(v.len()).ok()?);
                data.put_slice(v);
            }
        }
    }
    Some(DataRow::new(data, count))
}

/// Rows affected according to a command tag (`INSERT 0 5`, `UPDATE 3`, `COPY 10`).
pub(crate) fn rows_affected(tag: &str) -> Option<u64> {
    let first = tag.split(' ').next()?;
    if matches!(first, "SELECT" | "FETCH" | "MOVE") {
        return None;
    }
    tag.rsplit(' ').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let fields = vec![Some(b"a".to_vec()), None, Some(Vec::new())];
        let row = join_fields(&fields).unwrap();
        assert_eq!(split_fields(&row).unwrap(), fields);
    }

    #[test]
    fn malformed_rows_are_detected() {
        let row = DataRow::new(BytesMut::from(&[0u8, 0, 0, 9, b'x'][..]), 1);
        assert!(split_fields(&row).is_none());
    }

    #[test]
    fn tags() {
        assert_eq!(rows_affected("INSERT 0 5"), Some(5));
        assert_eq!(rows_affected("UPDATE 3"), Some(3));
        assert_eq!(rows_affected("SELECT 3"), None);
        assert_eq!(rows_affected("BEGIN"), None);
    }
}
