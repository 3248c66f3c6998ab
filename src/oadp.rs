//! `oadp lint`: OADP `Backup`/`Restore` CRs for an image-based upgrade must
//! carry the LVM Storage (TopoLVM) fields, or persistent-volume contents are
//! silently lost across the pivot. Parsing is pure and separate from the
//! command.

use serde::Serialize;
use serde_yaml_ng::Value;

pub const LV: &str = "logicalvolumes.topolvm.io";

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Finding {
    pub file: String,
    /// First line of the document holding the object (1-based).
    pub line: usize,
    pub kind: String,
    pub name: String,
    pub field: String,
    pub problem: String,
    /// The YAML to add, indented as in the object.
    pub add: String,
}

/// Unreadable input, with its position.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ParseError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// The documents of a multi-document YAML (or JSON) text with the line each
/// starts on.
fn documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut start = 1;
    let mut cur = String::new();
    for (i, line) in text.lines().enumerate() {
        if line.starts_with("---") {
            if !cur.trim().is_empty() {
                docs.push((start, std::mem::take(&mut cur)));
            }
            cur.clear();
            start = i + 2;
            continue;
        }
        if cur.is_empty() && line.trim().is_empty() {
            start = i + 2;
            continue;
        }
        cur.push_str(line);
        cur.push('\n');
    }
    if !cur.trim().is_empty() {
        docs.push((start, cur));
    }
    docs
}

fn list<'a>(v: &'a Value, path: &[&str]) -> Option<Vec<&'a str>> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    Some(
        cur.as_sequence()?
            .iter()
            .filter_map(Value::as_str)
            .collect(),
    )
}

fn has_lv(items: &[&str]) -> bool {
    items.iter().any(|i| {
        i.eq_ignore_ascii_case(LV) || i.eq_ignore_ascii_case("logicalvolumes") || *i == "*"
    })
}

/// Whether a Backup takes persistent volume claims: it names them, or it
/// takes whole namespaces without narrowing the resources.
fn takes_pvcs(spec: &Value) -> bool {
    let named = ["includedNamespaceScopedResources", "includedResources"]
        .iter()
        .filter_map(|f| list(spec, &[f]))
        .flatten()
        .any(|r| {
            let r = r.to_ascii_lowercase();
            r == "persistentvolumeclaims" || r == "pvc" || r == "persistentvolumeclaim" || r == "*"
        });
    let whole_namespaces = list(spec, &["includedNamespaces"]).is_some_and(|n| !n.is_empty())
        && list(spec, &["includedNamespaceScopedResources"]).is_none()
        && list(spec, &["includedResources"]).is_none();
    named || whole_namespaces
}

fn check(file: &str, line: usize, obj: &Value, out: &mut Vec<Finding>) {
    if let Some(items) = obj.get("items").and_then(Value::as_sequence) {
        for i in items {
            check(file, line, i, out);
        }
        return;
    }
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    let api = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !api.starts_with("velero.io/") {
        return;
    }
    let name = format!(
        "{}/{}",
        obj.pointer_str("metadata", "namespace").unwrap_or("-"),
        obj.pointer_str("metadata", "name").unwrap_or("?")
    );
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    match kind {
        "Backup" if takes_pvcs(&spec) => {
            let cluster = list(&spec, &["includedClusterScopedResources"]).unwrap_or_default();
            let old = list(&spec, &["includedResources"]).unwrap_or_default();
            if !has_lv(&cluster) && !has_lv(&old) {
                out.push(Finding {
                    file: file.into(),
                    line,
                    kind: kind.into(),
                    name,
                    field: "spec.includedClusterScopedResources".into(),
                    problem: format!(
                        "the Backup takes persistent volume claims but not the LVM Storage volumes behind them ({LV})"
                    ),
                    add: format!("spec:\n  includedClusterScopedResources:\n  - persistentVolumes\n  - {LV}\n"),
                });
            }
        }
        "Restore" => {
            let st = list(&spec, &["restoreStatus", "includedResources"]).unwrap_or_default();
            if !has_lv(&st) {
                out.push(Finding {
                    file: file.into(),
                    line,
                    kind: kind.into(),
                    name,
                    field: "spec.restoreStatus.includedResources".into(),
                    problem: "the Restore does not keep the status of the LVM Storage volumes"
                        .into(),
                    add: "spec:\n  restoreStatus:\n    includedResources:\n    - logicalvolumes\n"
                        .into(),
                });
            }
        }
        _ => {}
    }
}

trait PointerStr {
    fn pointer_str(&self, a: &str, b: &str) -> Option<&str>;
}

impl PointerStr for Value {
    fn pointer_str(&self, a: &str, b: &str) -> Option<&str> {
        self.get(a)?.get(b)?.as_str()
    }
}

/// Lint one file's text.
pub fn lint(file: &str, text: &str) -> Result<Vec<Finding>, ParseError> {
    let mut out = Vec::new();
    for (start, doc) in documents(text) {
        let v: Value = serde_yaml_ng::from_str(&doc).map_err(|e| {
            let (l, c) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
            ParseError {
                file: file.into(),
                line: start + l.saturating_sub(1),
                column: c,
                message: e.to_string(),
            }
        })?;
        check(file, start, &v, &mut out);
    }
    Ok(out)
}

pub fn render(findings: &[Finding]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    for f in findings {
        let _ = writeln!(
            s,
            "{}:{}: {} {}: {}: {}",
            f.file, f.line, f.kind, f.name, f.field, f.problem
        );
        let _ = writeln!(s, "  add:");
        for l in f.add.lines() {
            let _ = writeln!(s, "    {l}");
        }
    }
    if findings.is_empty() {
        s.push_str("no findings\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD_BACKUP: &str = "apiVersion: velero.io/v1
kind: Backup
metadata:
  name: small-app
  namespace: openshift-adp
spec:
  includedNamespaces:
  - test
  includedNamespaceScopedResources:
  - secrets
  - persistentvolumeclaims
  includedClusterScopedResources:
  - persistentVolumes
  - volumesnapshotcontents
  - logicalvolumes.topolvm.io
";

    #[test]
    fn good_and_bad_objects() {
        assert!(lint("a.yaml", GOOD_BACKUP).unwrap().is_empty());
        let bad = GOOD_BACKUP.replace("  - logicalvolumes.topolvm.io\n", "");
        let text = format!("# apps\n---\n{bad}---\napiVersion: velero.io/v1\nkind: Restore\nmetadata:\n  name: r\n  namespace: openshift-adp\nspec:\n  backupName: small-app\n");
        let f = lint("b.yaml", &text).unwrap();
        assert_eq!(f.len(), 2, "{f:#?}");
        assert_eq!((f[0].line, f[0].kind.as_str()), (3, "Backup"));
        assert_eq!(f[0].name, "openshift-adp/small-app");
        assert_eq!(
            (f[1].line, f[1].field.as_str()),
            (18, "spec.restoreStatus.includedResources")
        );
        // A Backup of other resources only needs nothing.
        let cm = "apiVersion: velero.io/v1\nkind: Backup\nmetadata: {name: c}\nspec:\n  includedNamespaces: [x]\n  includedNamespaceScopedResources: [configmaps]\n";
        assert!(lint("c.yaml", cm).unwrap().is_empty());
        // Whole namespaces take their PVCs.
        let ns = "apiVersion: velero.io/v1\nkind: Backup\nmetadata: {name: n}\nspec:\n  includedNamespaces: [x]\n";
        assert_eq!(lint("n.yaml", ns).unwrap().len(), 1);
    }

    #[test]
    fn json_and_errors_with_positions() {
        let j = r#"{"apiVersion":"velero.io/v1","kind":"Restore","metadata":{"name":"r"},"spec":{"restoreStatus":{"includedResources":["logicalvolumes"]}}}"#;
        assert!(lint("r.json", j).unwrap().is_empty());
        let e = lint("x.yaml", "a: 1\n---\nkind: Backup\n  bad: [\n").unwrap_err();
        assert_eq!(e.file, "x.yaml");
        assert!(e.line >= 3, "{e}");
    }
}
