//! `oadp lint`: the OADP `Backup`/`Restore` CRs given to the Lifecycle Agent
//! for an image-based upgrade, checked the way LCA's documentation asks.
//!
//! Facts from openshift-kni/lifecycle-agent:
//! - `docs/backuprestore-with-oadp.md` ("Application backup and restore CRs"):
//!   a Backup that takes persistent volume claims provided by LVM Storage
//!   must include `persistentVolumes` and `logicalvolumes.topolvm.io` in
//!   `spec.includedClusterScopedResources`; its Restore needs
//!   `restorePVs: true` and `restoreStatus.includedResources: [logicalvolumes]`.
//!   With the Local Storage Operator the Backup excludes `persistentVolumes`
//!   and needs none of that. The platform CRs (ACM klusterlet, LVMS
//!   `lvmcluster`) take no claims.
//! - `internal/backuprestore/common.go` (`ExtractBackupSpecsFromConfigmaps`):
//!   LCA reads the CRs out of the data values of the ConfigMaps named in the
//!   IBU's `spec.oadpContent`, each value a YAML or multi-document YAML.
//! - `internal/backuprestore/restore.go` (`StartOrTrackRestore`): a Restore
//!   waits for the Backup named by its `spec.backupName`; a Restore naming a
//!   Backup that is not in the set never runs.
//!
//! Parsing is pure and separate from the command, and linear in its input:
//! libyaml's scanner is quadratic in the nesting depth of flow collections
//! (a 176 KB file of nested `[` took 30 s), so a linear pre-scan refuses
//! documents nested deeper than [`MAX_DEPTH`] before the YAML parser sees them.

use serde::Serialize;
use serde_yaml_ng::Value;

pub const LV: &str = "logicalvolumes.topolvm.io";
/// Deepest flow/block nesting accepted; the CRs LCA reads are 4 levels deep.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Finding {
    pub file: String,
    /// First line of the object in `file` (1-based).
    pub line: usize,
    /// Line in `file` below which the lines in `add` go (the `spec:` line,
    /// or the list that lacks an item).
    pub add_after_line: usize,
    /// When the lines in `add` take the place of a key already written:
    /// that key's line (its value may follow on the next lines).
    pub replaces_line: Option<usize>,
    pub kind: String,
    pub name: String,
    /// The ConfigMap (and data key) the object was read from, if any.
    pub within: Option<String>,
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
/// starts on (1-based).
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
        if cur.is_empty() && (line.trim().is_empty() || line.trim_start().starts_with('#')) {
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

/// One pass over the text: the flow nesting (`[`/`{` outside quoted
/// scalars and comments, as libyaml's scanner tokenizes them) and the run of
/// block sequence entries (`- - -`) opening a line. Refuses the document past
/// [`MAX_DEPTH`] with the (line, column) where it gets there.
fn check_depth(text: &str) -> Result<(), (usize, usize)> {
    let mut depth = 0usize;
    let (mut in_s, mut in_d) = (false, false);
    for (ln, line) in text.lines().enumerate() {
        let b = line.as_bytes();
        let mut dashes = 0usize;
        let mut lead = true;
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            let prev_sep = i == 0 || matches!(b[i - 1], b' ' | b'\t' | b'[' | b'{' | b',');
            if in_d {
                match c {
                    b'\\' => i += 1,
                    b'"' => in_d = false,
                    _ => {}
                }
                i += 1;
                continue;
            }
            if in_s {
                if c == b'\'' {
                    if b.get(i + 1) == Some(&b'\'') {
                        i += 1; // '' is a quote inside the scalar
                    } else {
                        in_s = false;
                    }
                }
                i += 1;
                continue;
            }
            match c {
                b'#' if prev_sep => break,
                b'"' if prev_sep || lead => in_d = true,
                b'\'' if prev_sep || lead => in_s = true,
                b'[' | b'{' => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err((ln + 1, i + 1));
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                b'-' if lead && matches!(b.get(i + 1), None | Some(b' ')) => {
                    dashes += 1;
                    if dashes > MAX_DEPTH {
                        return Err((ln + 1, i + 1));
                    }
                }
                b' ' | b'\t' => {}
                _ => lead = false,
            }
            if c != b' ' && c != b'-' {
                lead = false;
            }
            i += 1;
        }
        // Out of flow context, a quoted scalar does not go on past its line in
        // the CRs read here, and a quote in a block scalar's text is text.
        if depth == 0 {
            in_s = false;
            in_d = false;
        }
    }
    Ok(())
}

fn seq<'a>(v: &'a Value, key: &str) -> Option<Vec<&'a str>> {
    Some(
        v.get(key)?
            .as_sequence()?
            .iter()
            .filter_map(Value::as_str)
            .collect(),
    )
}

fn has(items: &[&str], wanted: &[&str]) -> bool {
    items
        .iter()
        .any(|i| *i == "*" || wanted.iter().any(|w| i.eq_ignore_ascii_case(w)))
}

const PVC: &[&str] = &["persistentvolumeclaims", "persistentvolumeclaim", "pvc"];
const PV: &[&str] = &["persistentvolumes", "persistentvolume", "pv"];
const LVS: &[&str] = &[LV, "logicalvolumes", "logicalvolume"];

/// One Backup or Restore with where it came from.
struct Obj {
    file: String,
    within: Option<String>,
    /// Indentation of the object's text in `file` (a ConfigMap's block scalar).
    base_indent: usize,
    /// The object's text and the file line of each of its lines.
    lines: Vec<(usize, String)>,
    kind: String,
    namespace: String,
    name: String,
    spec: Value,
}

impl Obj {
    fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    fn line(&self) -> usize {
        self.lines.first().map_or(1, |l| l.0)
    }

    /// File line and indentation of the key at `path` (block style), found by
    /// walking down the indentation; None when it is not written as a key.
    fn key_line(&self, path: &[&str]) -> Option<(usize, usize)> {
        let mut from = 0;
        let mut parent_indent: Option<usize> = None;
        let mut found = None;
        for key in path {
            let mut hit = None;
            for (i, (_, l)) in self.lines.iter().enumerate().skip(from) {
                let t = l.trim_start();
                if t.is_empty() || t.starts_with('#') {
                    continue;
                }
                let ind = l.len() - t.len();
                if parent_indent.is_some_and(|p| ind <= p) && i > from {
                    break;
                }
                let k = t.trim_start_matches("- ");
                if k.strip_prefix(key).is_some_and(|r| r.starts_with(':')) {
                    hit = Some((i, ind));
                    break;
                }
            }
            let (i, ind) = hit?;
            from = i + 1;
            parent_indent = Some(ind);
            found = Some((self.lines[i].0, ind));
        }
        found
    }

    fn finding(&self, field: &str, problem: String, path: &[&str], add: String) -> Finding {
        // Below the deepest key of `path` that is written; else below `spec:`.
        let last = self.lines.last().map_or(self.line(), |l| l.0);
        let mut at = (
            if path.is_empty() { last } else { self.line() },
            0usize,
            0usize,
        );
        for n in (1..=path.len()).rev() {
            if let Some((l, ind)) = self.key_line(&path[..n]) {
                at = (l, ind, n);
                break;
            }
        }
        let (add_after_line, indent, depth) = at;
        // `add` is written from `spec:` down, two spaces a level; keep the
        // lines below the deepest key that exists, at that key's indentation.
        let body: Vec<String> = add
            .lines()
            .skip(depth)
            .map(|l| {
                let t = l.trim_start();
                let own = l.len() - t.len();
                let shift = if depth == 0 {
                    own
                } else {
                    (indent + own).saturating_sub(2 * (depth - 1))
                };
                format!("{}{t}", " ".repeat(self.base_indent + shift))
            })
            .collect();
        Finding {
            file: self.file.clone(),
            line: self.line(),
            add_after_line,
            replaces_line: None,
            kind: self.kind.clone(),
            name: self.id(),
            within: self.within.clone(),
            field: field.into(),
            problem,
            add: body.join("\n") + "\n",
        }
    }
}

fn parse_error(file: &str, line: usize, column: usize, message: String) -> ParseError {
    ParseError {
        file: file.into(),
        line,
        column,
        message,
    }
}

/// The Backups and Restores of one text whose line `i` (0-based) is file
/// line `map(i)`; ConfigMaps are opened and their data values read in turn.
fn collect(
    file: &str,
    text: &str,
    map: &dyn Fn(usize) -> usize,
    within: Option<(&str, usize)>,
    out: &mut Vec<Obj>,
) -> Result<(), ParseError> {
    for (start, doc) in documents(text) {
        let first = map(start - 1);
        check_depth(&doc).map_err(|(l, c)| {
            parse_error(
                file,
                map(start - 1 + l - 1),
                c,
                format!("nested deeper than {MAX_DEPTH} levels; no Backup or Restore is"),
            )
        })?;
        let v: Value = serde_yaml_ng::from_str(&doc).map_err(|e| {
            let (l, c) = e.location().map_or((1, 0), |l| (l.line(), l.column()));
            parse_error(file, map(start - 1 + l.max(1) - 1), c, e.to_string())
        })?;
        let lines: Vec<(usize, String)> = doc
            .lines()
            .enumerate()
            .map(|(i, l)| (map(start - 1 + i), l.to_string()))
            .collect();
        visit(file, &v, &lines, first, within, out)?;
    }
    Ok(())
}

fn visit(
    file: &str,
    v: &Value,
    lines: &[(usize, String)],
    first: usize,
    within: Option<(&str, usize)>,
    out: &mut Vec<Obj>,
) -> Result<(), ParseError> {
    let s = |v: &Value, a: &str, b: &str| {
        v.get(a)
            .and_then(|x| x.get(b))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let kind = v.get("kind").and_then(Value::as_str).unwrap_or_default();
    let api = v
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if let Some(items) = v.get("items").and_then(Value::as_sequence) {
        // A List (e.g. `oc get -o yaml`): no per-item lines.
        for i in items {
            visit(file, i, &lines[..lines.len().min(1)], first, within, out)?;
        }
        return Ok(());
    }
    if kind == "ConfigMap" && api == "v1" && within.is_none() {
        let cm = format!(
            "ConfigMap {}/{}",
            s(v, "metadata", "namespace"),
            s(v, "metadata", "name")
        );
        let Some(data) = v.get("data").and_then(Value::as_mapping) else {
            return Ok(());
        };
        for (k, val) in data {
            let (Some(k), Some(text)) = (k.as_str(), val.as_str()) else {
                continue;
            };
            let key_at = key_in_data(lines, k);
            // A literal block scalar (`key: |`): value line i is key line + 1 + i.
            let literal = key_at.is_some_and(|(_, block, _)| block);
            let key_line = key_at.map_or(first, |(l, _, _)| l);
            let indent = key_at.map_or(0, |(_, _, i)| i);
            let map = move |i: usize| if literal { key_line + 1 + i } else { key_line };
            let w = format!("{cm} data[{k}]");
            collect(file, text, &map, Some((&w, indent)), out)?;
        }
        return Ok(());
    }
    if !api.starts_with("velero.io/") || !(kind == "Backup" || kind == "Restore") {
        return Ok(());
    }
    out.push(Obj {
        file: file.into(),
        within: within.map(|w| w.0.to_string()),
        base_indent: within.map_or(0, |w| w.1),
        lines: lines.to_vec(),
        kind: kind.into(),
        namespace: {
            let n = s(v, "metadata", "namespace");
            if n.is_empty() {
                "-".into()
            } else {
                n
            }
        },
        name: {
            let n = s(v, "metadata", "name");
            if n.is_empty() {
                "?".into()
            } else {
                n
            }
        },
        spec: v.get("spec").cloned().unwrap_or(Value::Null),
    });
    Ok(())
}

/// The file line of data key `k` below `data:`, whether its value is a
/// literal block scalar (`|`, `|-`, `|+`), and the indentation of its text.
fn key_in_data(lines: &[(usize, String)], k: &str) -> Option<(usize, bool, usize)> {
    let data = lines.iter().position(|(_, l)| l.trim_end() == "data:")?;
    let (i, n, literal) = lines[data + 1..]
        .iter()
        .enumerate()
        .find_map(|(i, (n, l))| {
            let t = l.trim_start();
            let rest = t
                .strip_prefix(k)
                .or_else(|| t.strip_prefix(&format!("\"{k}\"")))
                .or_else(|| t.strip_prefix(&format!("'{k}'")))?;
            let rest = rest.strip_prefix(':')?.trim();
            Some((data + 1 + i, *n, rest.starts_with('|')))
        })?;
    let indent = lines[i + 1..]
        .iter()
        .map(|(_, l)| l.as_str())
        .find(|l| !l.trim().is_empty())
        .map_or(0, |l| l.len() - l.trim_start().len());
    Some((n, literal, if literal { indent } else { 0 }))
}

/// Whether a Backup takes persistent volume claims provided by LVM Storage:
/// it names claims (or takes whole namespaces while the set uses LVM
/// Storage), and does not exclude persistent volumes (the LSO form).
fn lvms_backup(spec: &Value, set_uses_lvms: bool) -> bool {
    let ns_res = seq(spec, "includedNamespaceScopedResources");
    let old_res = seq(spec, "includedResources");
    let named = ns_res.iter().chain(old_res.iter()).any(|r| has(r, PVC));
    let whole = seq(spec, "includedNamespaces").is_some_and(|n| !n.is_empty())
        && ns_res.is_none()
        && old_res.is_none()
        && seq(spec, "labelSelector").is_none();
    let excludes_pv = ["excludedClusterScopedResources", "excludedResources"]
        .iter()
        .filter_map(|k| seq(spec, k))
        .any(|r| {
            r.iter()
                .any(|i| PV.iter().any(|w| i.eq_ignore_ascii_case(w)))
        });
    let cluster = seq(spec, "includedClusterScopedResources").unwrap_or_default();
    let mentions_lv = has(&cluster, LVS);
    (named || (whole && set_uses_lvms) || mentions_lv) && !excludes_pv
}

fn check_set(objs: &[Obj], out: &mut Vec<Finding>) {
    let backups: Vec<&Obj> = objs.iter().filter(|o| o.kind == "Backup").collect();
    let restores: Vec<&Obj> = objs.iter().filter(|o| o.kind == "Restore").collect();
    let set_uses_lvms = backups.iter().any(|b| {
        let r = seq(&b.spec, "includedNamespaceScopedResources").unwrap_or_default();
        let c = seq(&b.spec, "includedClusterScopedResources").unwrap_or_default();
        r.iter().any(|x| x.eq_ignore_ascii_case("lvmclusters")) || has(&c, LVS)
    });
    let backup_name = |r: &Obj| {
        r.spec
            .get("backupName")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let mut lvms_names = std::collections::HashSet::new();
    for b in &backups {
        if !lvms_backup(&b.spec, set_uses_lvms) {
            continue;
        }
        lvms_names.insert(b.name.clone());
        let cluster = seq(&b.spec, "includedClusterScopedResources").unwrap_or_default();
        let old = seq(&b.spec, "includedResources").unwrap_or_default();
        for (want, item) in [(PV, "persistentVolumes"), (LVS, LV)] {
            if !has(&cluster, want) && !has(&old, want) {
                out.push(b.finding(
                    "spec.includedClusterScopedResources",
                    format!(
                        "the Backup takes persistent volume claims of LVM Storage but not `{item}`: their contents are lost across the upgrade"
                    ),
                    &["spec", "includedClusterScopedResources"],
                    format!("spec:\n  includedClusterScopedResources:\n  - {item}\n"),
                ));
            }
        }
    }
    for r in &restores {
        let bn = backup_name(r);
        if !lvms_names.contains(&bn) {
            continue;
        }
        if r.spec.get("restorePVs").and_then(Value::as_bool) != Some(true) {
            out.push(r.finding(
                "spec.restorePVs",
                format!("the Restore of Backup {bn} (LVM Storage claims) does not restore the persistent volumes"),
                &["spec", "restorePVs"],
                "spec:\n  restorePVs: true\n".into(),
            ));
        }
        let st = r
            .spec
            .get("restoreStatus")
            .and_then(|s| seq(s, "includedResources"))
            .unwrap_or_default();
        if !has(&st, LVS) {
            out.push(r.finding(
                "spec.restoreStatus.includedResources",
                format!("the Restore of Backup {bn} (LVM Storage claims) does not keep the status of the logical volumes: the volumes come back empty"),
                &["spec", "restoreStatus", "includedResources"],
                "spec:\n  restoreStatus:\n    includedResources:\n    - logicalvolumes\n".into(),
            ));
        }
    }
    // Pairing: every Restore names a Backup of the set; every Backup is restored.
    if backups.is_empty() && restores.is_empty() {
        return;
    }
    // Sets, so that the check stays linear in the number of objects.
    let backup_names: std::collections::HashSet<&str> =
        backups.iter().map(|b| b.name.as_str()).collect();
    let restored: std::collections::HashSet<String> =
        restores.iter().map(|r| backup_name(r)).collect();
    let unpaired: Vec<&str> = backups
        .iter()
        .filter(|b| !restored.contains(&b.name))
        .map(|b| b.name.as_str())
        .take(5)
        .collect();
    for r in &restores {
        let bn = backup_name(r);
        if !backup_names.contains(bn.as_str()) {
            let suggest = unpaired.first().copied().unwrap_or("<name of a Backup>");
            out.push(r.finding(
                "spec.backupName",
                format!(
                    "the Restore names Backup `{bn}`, which is not in this set{}: LCA waits for it and the restore never runs",
                    if unpaired.is_empty() {
                        String::new()
                    } else {
                        format!(" (Backups without a Restore: {})", unpaired.join(", "))
                    },
                ),
                &["spec"],
                format!("spec:\n  backupName: {suggest}\n"),
            ));
            if let (Some(f), Some((l, _))) = (out.last_mut(), r.key_line(&["spec", "backupName"])) {
                f.replaces_line = Some(l);
            }
        }
    }
    for b in &backups {
        if !restored.contains(&b.name) {
            out.push(b.finding(
                "metadata.name",
                "no Restore of this set names this Backup: what it saves is not restored after the upgrade".into(),
                &[],
                format!(
                    "---\napiVersion: velero.io/v1\nkind: Restore\nmetadata:\n  name: {0}\n  namespace: {1}\nspec:\n  backupName: {0}\n",
                    b.name, b.namespace
                ),
            ));
        }
    }
}

/// Lint a set of files (Backups and Restores pair up across the set).
pub fn lint_set(files: &[(String, String)]) -> Result<Vec<Finding>, ParseError> {
    let mut objs = Vec::new();
    for (name, text) in files {
        collect(name, text, &|i| i + 1, None, &mut objs)?;
    }
    let mut out = Vec::new();
    check_set(&objs, &mut out);
    out.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    Ok(out)
}

/// Lint one file's text.
#[cfg(test)]
pub fn lint(file: &str, text: &str) -> Result<Vec<Finding>, ParseError> {
    lint_set(&[(file.to_string(), text.to_string())])
}

/// `oadp lint FILE...`: read the files, check them as one set; an unreadable
/// or unparsable file is a usage error (exit 2).
pub fn lint_files(files: &[std::path::PathBuf]) -> anyhow::Result<Vec<Finding>> {
    use crate::util::error::Fail;
    let mut set = Vec::new();
    for f in files {
        let name = f.display().to_string();
        let text = read_cr_file(f).map_err(|e| Fail::Usage(format!("{name}: {e}")))?;
        set.push((name, text));
    }
    Ok(lint_set(&set).map_err(|e| Fail::Usage(e.to_string()))?)
}

/// The most a CR file may hold: 1 MiB, what a ConfigMap holds (the
/// Lifecycle Agent reads these CRs from the ConfigMaps of
/// `spec.oadpContent`, and Kubernetes refuses a ConfigMap whose data add
/// up to more than `MaxSecretSize`, 1 MiB: kubernetes
/// pkg/apis/core/validation/validation.go `ValidateConfigMap`).
pub const MAX_CR_FILE: u64 = 1 << 20;

/// Read one file given to `oadp lint`: a regular file only (opened without
/// blocking, so a FIFO is refused at once instead of waited on; a device
/// such as /dev/zero is refused instead of read forever), at most
/// [`MAX_CR_FILE`] bytes, UTF-8.
fn read_cr_file(f: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY).bits() as i32)
        .open(f)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other(
            "is not a regular file (give the Backup/Restore CRs as YAML or JSON files)",
        ));
    }
    let mut v = Vec::new();
    file.take(MAX_CR_FILE + 1).read_to_end(&mut v)?;
    if v.len() as u64 > MAX_CR_FILE {
        return Err(std::io::Error::other(format!(
            "is larger than {MAX_CR_FILE} bytes (1 MiB, what a ConfigMap of spec.oadpContent can hold)"
        )));
    }
    String::from_utf8(v).map_err(|_| std::io::Error::other("is not UTF-8 text"))
}

pub fn render(findings: &[Finding]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    for f in findings {
        let _ = writeln!(
            s,
            "{}:{}: {} {}{}: {}: {}",
            f.file,
            f.line,
            f.kind,
            f.name,
            f.within
                .as_deref()
                .map(|w| format!(" (in {w})"))
                .unwrap_or_default(),
            f.field,
            f.problem
        );
        match f.replaces_line {
            Some(l) => {
                let _ = writeln!(s, "  replace line {l} (and its value) with:");
            }
            None => {
                let _ = writeln!(s, "  add after line {}:", f.add_after_line);
            }
        }
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

    #[test]
    fn depth_is_refused_in_linear_time() {
        let deep = format!("a: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
        let e = lint("d.yaml", &deep).unwrap_err();
        assert!(e.message.contains("nested deeper"), "{e}");
        assert_eq!(e.line, 1);
        // Brackets inside quotes and comments do not count.
        let ok = format!(
            "a: \"{}\"\nb: 'x{}' # {}\n",
            "[".repeat(200),
            "{".repeat(200),
            "[".repeat(200)
        );
        assert!(lint("q.yaml", &ok).unwrap().is_empty());
        let dashes = format!("{}x\n", "- ".repeat(100_000));
        assert!(lint("s.yaml", &dashes).is_err());
        // A line of dashes in a block scalar is text, not nesting.
        let rule = format!("a: |\n  {}\n", "-".repeat(200));
        assert!(lint("r.yaml", &rule).unwrap().is_empty());
        // Closing brackets inside quoted scalars do not hide the nesting,
        // nor does a lone quote in a block scalar's text.
        let hidden = format!("a: |\n  \"\nb: {}1\n", "[ \"]\", ".repeat(100));
        assert!(lint("h.yaml", &hidden).is_err());
        let esc = format!("b: {}1\n", "[ 'it''s]', ".repeat(100));
        assert!(lint("e.yaml", &esc).is_err());
    }

    #[test]
    fn json_and_errors_with_positions() {
        let j = r#"{"apiVersion":"velero.io/v1","kind":"Restore","metadata":{"name":"r"},"spec":{"backupName":"b"}}
---
{"apiVersion":"velero.io/v1","kind":"Backup","metadata":{"name":"b"},"spec":{"includedNamespaces":["x"],"includedNamespaceScopedResources":["configmaps"]}}"#;
        assert_eq!(lint("r.json", j).unwrap(), vec![]);
        let e = lint("x.yaml", "a: 1\n---\nkind: Backup\n  bad: [\n").unwrap_err();
        assert_eq!(e.file, "x.yaml");
        assert!(e.line >= 3, "{e}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]
        /// No input panics the OADP YAML reader: any bytes, and YAML-ish text.
        #[test]
        fn lint_never_panics(s in "\\PC{0,400}") {
            let _ = lint("p.yaml", &s);
        }

        #[test]
        fn lint_never_panics_on_yamlish(
            parts in proptest::collection::vec(proptest::prop_oneof![
                proptest::strategy::Just("apiVersion: velero.io/v1\n".to_string()),
                proptest::strategy::Just("apiVersion: v1\nkind: ConfigMap\ndata:\n  a.yaml: |\n".to_string()),
                proptest::strategy::Just("kind: Backup\n".to_string()),
                proptest::strategy::Just("kind: Restore\n".to_string()),
                proptest::strategy::Just("spec:\n  backupName: x\n".to_string()),
                proptest::strategy::Just("  includedNamespaceScopedResources: [persistentvolumeclaims]\n".to_string()),
                proptest::strategy::Just("---\n".to_string()),
                proptest::strategy::Just("    kind: Backup\n".to_string()),
                "[ \\[\\]{}:,'\"#|>-]{0,12}\n",
                "[a-z: -]{0,20}\n",
            ], 0..24)
        ) {
            let _ = lint("p.yaml", &parts.concat());
        }
    }
}
