//! Reading JSON that other programs write, field by field.

use serde::{Deserialize, Deserializer};

/// A field read as `T` when it has `T`'s shape, else as absent: one type
/// serves objects whose same-named field differs (velero's `status.errors`
/// is a count on a Backup or Restore and a list of strings on a
/// DeleteBackupRequest: velero pkg/apis/velero/v1 backup_types.go,
/// restore_types.go, delete_backup_request_types.go), and a field of an
/// unexpected shape is skipped as the untyped reads skipped it, instead of
/// failing the whole list. Use with `#[serde(default, deserialize_with =
/// "lenient")]` on an `Option<T>`.
pub fn lenient<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let v = serde_json::Value::deserialize(d)?;
    Ok(serde_json::from_value(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug, PartialEq)]
    struct S {
        #[serde(default, deserialize_with = "lenient")]
        errors: Option<Vec<String>>,
    }

    #[test]
    fn a_field_of_another_shape_reads_as_absent() {
        let r = |j: &str| serde_json::from_str::<S>(j).unwrap().errors;
        assert_eq!(
            r(r#"{"errors":["a","b"]}"#),
            Some(vec!["a".into(), "b".into()])
        );
        assert_eq!(r(r#"{"errors":2}"#), None);
        assert_eq!(r(r#"{"errors":null}"#), None);
        assert_eq!(r(r#"{}"#), None);
        // Malformed JSON is still an error.
        assert!(serde_json::from_str::<S>(r#"{"errors":[}"#).is_err());
    }
}
