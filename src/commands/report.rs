//! `report --to FILE.tar.gz`: the node-side facts support asks for, in one
//! bundle. Never key material: only what is listed here is collected, and
//! every text is scrubbed of PEM private keys and token-shaped strings.

use crate::node::cmd::{self, Tools};
use crate::node::host::Host;
use crate::{commands::ibu, commands::stateroot, commands::status, store::manifest, store::verify};
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::Path;

#[derive(Debug, Serialize)]
pub struct Item {
    pub name: String,
    pub collected: bool,
    pub note: String,
}

/// Replace secrets with `<redacted>`: PEM private keys (also base64-encoded,
/// as kubeconfig `client-key-data`), the values of secret-named keys
/// (`token`, `password`, `secret`, AWS `aws_secret_access_key`, dockercfg
/// `auth`, ... in YAML, JSON, `k=v`, and JSON inside JSON strings, escapes
/// and all), `Bearer` tokens, credentials in URLs, AWS access key ids and
/// secret-shaped words, OpenShift `sha256~` tokens and JWTs.
pub fn scrub(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_key = false;
    // The indentation of a secret-named key whose value is on the lines
    // below it (`tls.key: |`, `signingKey:` with a map): lines indented
    // deeper are its value.
    let mut block: Option<usize> = None;
    // The line before ended in a redacted value: base64 lines right after
    // it are the rest of that value, wrapped.
    let mut wrapped = false;
    for line in text.split_inclusive('\n') {
        if in_key {
            // Up to the end marker; what follows it on its line stays.
            if let Some(e) = line.find("-----END") {
                in_key = false;
                let a = e + 8;
                let after = line[a..].find("-----").map_or(line.len(), |k| a + k + 5);
                if !line[after..].trim().is_empty() {
                    out.push_str(&scrub_line(&line[after..]));
                }
            }
            continue;
        }
        let body = line.trim_start_matches([' ', '\t']);
        let indent = line.len() - body.len();
        let body = body.trim_end();
        if let Some(n) = block {
            if body.is_empty() || indent > n {
                out.push_str(&line[..indent]);
                out.push_str(R);
                out.push_str(&line[indent + body.len()..]);
                continue;
            }
            block = None;
        }
        if wrapped && base64_line(body) {
            out.push_str(&line[..indent]);
            out.push_str(R);
            out.push_str(&line[indent + body.len()..]);
            continue;
        }
        wrapped = false;
        // A PEM private key (PGP's too) that goes on past this line; one
        // whose end marker is on the same line is cut out by scrub_line
        // and the lines after it stay.
        if let Some(b) = private_key_begin(line, 0) {
            if !line[b..].contains("-----END") {
                in_key = true;
                out.push_str(&scrub_line(&line[..b]));
                out.push_str("<redacted private key>\n");
                continue;
            }
        }
        if secret_block_key(body) {
            block = Some(indent);
            out.push_str(line);
            continue;
        }
        let s = scrub_line(line);
        wrapped = s.trim_end().trim_end_matches(['"', '\'', ',']).ends_with(R);
        out.push_str(&s);
    }
    out
}

/// Where the begin marker of a private key (`-----BEGIN ... PRIVATE KEY
/// ...-----`, PGP's `PRIVATE KEY BLOCK` too) starts, at or after `from`.
fn private_key_begin(line: &str, from: usize) -> Option<usize> {
    let mut at = from;
    while let Some(k) = line.get(at..)?.find("-----BEGIN") {
        let b = at + k;
        let m = b + 10;
        let close = line[m..].find("-----").map_or(line.len(), |c| m + c);
        if line[m..close].contains("PRIVATE KEY") {
            return Some(b);
        }
        at = m;
    }
    None
}

/// `key: |`, `key: >-`, `key:` (a map or a list below): a secret-named key
/// whose value is on the lines below.
fn secret_block_key(body: &str) -> bool {
    let body = body.strip_prefix("- ").unwrap_or(body);
    let Some((k, v)) = body.split_once(':') else {
        return false;
    };
    let k = k.trim().trim_matches(['"', '\'']);
    let v = v.trim();
    !k.is_empty()
        && !k.contains(' ')
        && secret_key(k)
        && (v.is_empty() || ((v.starts_with('|') || v.starts_with('>')) && v.len() <= 3))
}

/// A line that is only base64 (a wrapped value's continuation).
fn base64_line(body: &str) -> bool {
    body.len() >= 16
        && body
            .trim_end_matches('=')
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
}

const R: &str = "<redacted>";

/// Whether a key's value is a secret.
fn secret_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    // Key files by name (`tls.key`, `ca.key` in a Secret's data), signing
    // keys, Azure storage keys and SAS signatures, docker config blobs.
    if k.ends_with(".key")
        || k.ends_with(".pem")
        || [
            "signingkey",
            "signing_key",
            "signing-key",
            "accountkey",
            "sharedaccesskey",
            "dockerconfig",
            "dockercfg",
            "cookie",
            "passphrase",
            "pwd",
            "privkey",
        ]
        .iter()
        .any(|w| k.contains(w))
        || k == "sig"
    {
        return true;
    }
    let k = k.rsplit('.').next().unwrap_or(&k);
    [
        "token",
        "password",
        "passwd",
        "secret",
        "bearer",
        "credential",
        "apikey",
        "api_key",
        "api-key",
        "private-key",
        "private_key",
        "privatekey",
        "key-data",
        "key_data",
        "authorization",
    ]
    .iter()
    .any(|w| k.contains(w))
        || k == "auth"
        || k.ends_with("_auth")
        || k == "identity"
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"_.-".contains(&b)
}

/// The byte range of the value that starts at `i` (after `key: `), and
/// how to know where it ends: quoted (honouring escapes), quoted with
/// escaped quotes (JSON inside a JSON string), or a bare word. None for
/// a map or list.
fn value_span(line: &[u8], i: usize) -> Option<(usize, usize)> {
    let rest = &line[i..];
    if rest.starts_with(b"\\\"") {
        // JSON inside a JSON string: the inner string ends at `\"` (one
        // backslash); an inner escaped quote is `\\\"` (three).
        let start = i + 2;
        let mut j = start;
        while j < line.len() {
            if line[j] == b'\\' {
                let n = line[j..].iter().take_while(|&&c| c == b'\\').count();
                if n == 1 && line.get(j + 1) == Some(&b'"') {
                    return Some((start, j));
                }
                j += n + 1;
            } else {
                j += 1;
            }
        }
        return Some((start, line.len()));
    }
    match rest.first()? {
        b'"' | b'\'' => {
            let q = rest[0];
            let start = i + 1;
            let mut j = start;
            while j < line.len() && line[j] != q {
                j += if line[j] == b'\\' { 2 } else { 1 };
            }
            Some((start, j.min(line.len())))
        }
        b'{' | b'[' | b'\n' | b'\r' => None,
        _ => {
            let len = rest
                .iter()
                .position(|b| b.is_ascii_whitespace() || b",;}]&\"'".contains(b));
            Some((i, len.map_or(line.len(), |l| i + l)))
        }
    }
}

/// Values of secret-named keys: `key: v`, `key=v`, `"key": "v"`,
/// `\"key\":\"v\"`.
fn scrub_key_values(line: &str) -> String {
    let b = line.as_bytes();
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !is_key_byte(b[i]) || (i > 0 && is_key_byte(b[i - 1])) {
            i += 1;
            continue;
        }
        let ks = i;
        while i < b.len() && is_key_byte(b[i]) {
            i += 1;
        }
        let key = &line[ks..i];
        let mut j = i;
        // The key's closing quote: `"`, `\"`, `\\\"`.
        while j < b.len() && (b[j] == b'\\' || b[j] == b'"' || b[j] == b'\'') && j - i < 4 {
            j += 1;
        }
        // `TOKEN<TAB>value` (env listings, netrc-like files).
        let tabbed = j < b.len() && b[j] == b'\t';
        while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
            j += 1;
        }
        if !secret_key(key) {
            continue;
        }
        if j < b.len() && (b[j] == b':' || b[j] == b'=') {
            j += 1;
        } else if !tabbed || j >= b.len() {
            continue;
        }
        while j < b.len() && b[j] == b' ' {
            j += 1;
        }
        // A cookie header's value is every cookie to the end of the line.
        if key.to_ascii_lowercase().contains("cookie") {
            let e = line.trim_end().len();
            if e > j && !line[j..].starts_with(R) {
                spans.push((j, e));
            }
            i = e.max(i);
            continue;
        }
        // `Authorization: Bearer <token>`: the scheme stays, the token goes.
        for scheme in ["bearer ", "basic "] {
            if line[j..].len() > scheme.len()
                && line.as_bytes()[j..j + scheme.len()].eq_ignore_ascii_case(scheme.as_bytes())
            {
                j += scheme.len();
            }
        }
        if let Some((s, e)) = value_span(b, j) {
            if e > s && !line[s..e].starts_with(R) {
                spans.push((s, e));
            }
            i = e.max(i);
        }
    }
    let mut out = line.to_string();
    for (s, e) in spans.into_iter().rev() {
        out.replace_range(s..e, R);
    }
    out
}

/// `Bearer <token>` (any case).
fn scrub_bearer(line: &str) -> String {
    let lower = line.to_ascii_lowercase();
    let mut out = String::with_capacity(line.len());
    let mut last = 0;
    let mut from = 0;
    while let Some(k) = lower[from..].find("bearer ") {
        let s = from + k + 7;
        let e = line[s..]
            .find(|c: char| c.is_whitespace() || "\"',;\\".contains(c))
            .map_or(line.len(), |e| s + e);
        if e > s && !line[s..].starts_with(R) {
            out.push_str(&line[last..s]);
            out.push_str(R);
            last = e;
        }
        from = e.max(s);
    }
    out.push_str(&line[last..]);
    out
}

/// `scheme://user:password@host` -> `scheme://<redacted>@host`.
fn scrub_url_credentials(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut last = 0;
    let mut from = 0;
    while let Some(k) = line[from..].find("://") {
        let s = from + k + 3;
        let auth_end = line[s..]
            .find(|c: char| c.is_whitespace() || "/\"'?#\\".contains(c))
            .map_or(line.len(), |e| s + e);
        if let Some(at) = line[s..auth_end].rfind('@') {
            out.push_str(&line[last..s]);
            out.push_str(R);
            last = s + at;
        }
        from = auth_end.max(s);
    }
    out.push_str(&line[last..]);
    out
}

/// crypt(3) password hashes (`$6$salt$hash`, `$6$rounds=N$salt$hash`,
/// `$y$...`, `$2b$...`): from the prefix to the end of the field (`:` in
/// /etc/shadow, whitespace, a quote, a comma).
fn scrub_crypt(line: &str) -> String {
    const PREFIXES: [&str; 9] = [
        "$1$", "$2a$", "$2b$", "$2y$", "$5$", "$6$", "$y$", "$gy$", "$7$",
    ];
    let mut out = String::with_capacity(line.len());
    let mut last = 0;
    let mut i = 0;
    while let Some(k) = line[i..].find('$') {
        let s = i + k;
        let at_start = s == 0 || line[..s].ends_with([':', ' ', '\t', '"', '\'', '=']);
        if at_start && PREFIXES.iter().any(|p| line[s..].starts_with(p)) {
            let e = line[s..]
                .find(|c: char| c.is_whitespace() || ":\"',".contains(c))
                .map_or(line.len(), |e| s + e);
            if e - s > 12 {
                out.push_str(&line[last..s]);
                out.push_str(R);
                last = e;
                i = e;
                continue;
            }
        }
        i = s + 1;
    }
    out.push_str(&line[last..]);
    out
}

/// `user:password@host` without a scheme (a proxy setting, a git remote):
/// the part before `@` of a word shaped so goes.
fn scrub_userinfo(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut last = 0;
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'@' {
            i += 1;
            continue;
        }
        // The word before `@`: no whitespace, quote, slash or `@`.
        let start = line[last..i]
            .rfind(|c: char| c.is_whitespace() || "\"'/@=,;(<[{".contains(c))
            .map_or(last, |k| last + k + 1);
        let word = &line[start..i];
        let host_ok = b
            .get(i + 1)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'[');
        if let Some((user, pw)) = word.split_once(':') {
            if !user.is_empty() && !pw.is_empty() && host_ok && !word.starts_with(R) {
                out.push_str(&line[last..start]);
                out.push_str(R);
                last = i;
            }
        }
        i += 1;
    }
    out.push_str(&line[last..]);
    out
}

/// Decode standard base64 (padding optional); None when not base64.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().take_while(|&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn secret_word(word: &str) -> bool {
    let b64 = |c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/';
    word.starts_with("sha256~") && word.len() > 20
        // GitHub tokens (ghp_, gho_, ghu_, ghs_, ghr_, github_pat_).
        || (["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"]
            .iter()
            .any(|p| word.starts_with(p))
            && word.len() >= 20)
        // A docker config (`{"auths":`) in base64.
        || (word.starts_with("eyJhdXRocyI6") || word.starts_with("eyAiYXV0aHMiOi"))
        || (word.starts_with("eyJ") && word.matches('.').count() == 2 && word.len() > 40)
        // A base64-encoded PEM private key (kubeconfig client-key-data).
        || (word.starts_with("LS0tLS1CRUdJTi")
            && base64_decode(word).is_some_and(|d| {
                String::from_utf8_lossy(&d).contains("PRIVATE KEY")
            }))
        // AWS access key ids, and 40-character secret access keys.
        || (word.len() == 20
            && (word.starts_with("AKIA") || word.starts_with("ASIA"))
            && word.bytes().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()))
        || (word.len() == 40
            && word.chars().all(b64)
            && word.bytes().any(|c| c.is_ascii_uppercase())
            && word.bytes().any(|c| c.is_ascii_lowercase())
            && word.bytes().any(|c| c.is_ascii_digit()))
}

fn scrub_line(line: &str) -> String {
    let mut line = line.to_string();
    // A PEM or PGP private key inside one line (JSON with escaped
    // newlines, a one-line OpenSSH key): from its begin marker to the end
    // of its end marker, or of the line.
    let mut from = 0;
    while let Some(b) = private_key_begin(&line, from) {
        let end = line[b..]
            .find("-----END")
            .map(|e| b + e + 8)
            .map_or(line.len(), |a| {
                line[a..].find("-----").map_or(line.len(), |k| a + k + 5)
            });
        line.replace_range(b..end, "<redacted private key>");
        from = b + "<redacted private key>".len();
    }
    let line = scrub_crypt(&line);
    let line = scrub_userinfo(&scrub_url_credentials(&scrub_bearer(&scrub_key_values(
        &line,
    ))));
    let mut s = line.clone();
    for word in line.split(|c: char| c.is_whitespace() || "\"',;:()[]{}=\\".contains(c)) {
        if secret_word(word) {
            s = s.replace(word, R);
        }
    }
    s
}

/// The fields the report copies from what it reads off the node (an
/// allow-list: anything not named, such as a CR's `spec.config`, its
/// annotations or a container's environment, is never copied; what is
/// copied is scrubbed too). Paths are `/`-separated JSON keys, `[]` for
/// each element of a list.
const CONTAINER_FIELDS: &[&str] = &[
    // crictl ps -a -o json (cri-tools cmd/crictl/container.go, the CRI
    // Container message).
    "containers/[]/id",
    "containers/[]/podSandboxId",
    "containers/[]/metadata/name",
    "containers/[]/metadata/attempt",
    "containers/[]/image/image",
    "containers/[]/imageRef",
    "containers/[]/state",
    "containers/[]/createdAt",
    "containers/[]/labels/io.kubernetes.pod.name",
    "containers/[]/labels/io.kubernetes.pod.namespace",
    "containers/[]/labels/io.kubernetes.container.name",
];

/// `metav1.Condition`s under `at`.
macro_rules! conditions {
    ($at:literal) => {
        [
            concat!($at, "/conditions/[]/type"),
            concat!($at, "/conditions/[]/status"),
            concat!($at, "/conditions/[]/reason"),
            concat!($at, "/conditions/[]/message"),
            concat!($at, "/conditions/[]/lastTransitionTime"),
            concat!($at, "/conditions/[]/observedGeneration"),
        ]
    };
}

/// lifecycle-agent api/imagebasedupgrade/v1/imagebasedupgrade_types.go
/// (not `spec.seedImageRef.pullSecretRef`, nothing of metadata but its name).
fn ibu_fields() -> Vec<&'static str> {
    let mut v = vec![
        "metadata/name",
        "metadata/generation",
        "metadata/creationTimestamp",
        "spec/stage",
        "spec/seedImageRef/version",
        "spec/seedImageRef/image",
        "spec/oadpContent/[]/name",
        "spec/oadpContent/[]/namespace",
        "spec/extraManifests/[]/name",
        "spec/extraManifests/[]/namespace",
        "spec/autoRollbackOnFailure/initMonitorTimeoutSeconds",
        "status/observedGeneration",
        "status/startedAt",
        "status/completedAt",
        "status/validNextStages",
        "status/rollbackAvailabilityExpiration",
    ];
    v.extend(conditions!("status"));
    v
}

/// velero pkg/apis/velero/v1 backup_types.go, restore_types.go,
/// backupstoragelocation_types.go: names, phases, counts, reasons, times
/// (never a location's `spec.config` or `spec.credential`).
const VELERO_FIELDS: &[&str] = &[
    "items/[]/kind",
    "items/[]/metadata/name",
    "items/[]/metadata/namespace",
    "items/[]/metadata/creationTimestamp",
    "items/[]/spec/backupName",
    "items/[]/spec/includedNamespaces",
    "items/[]/spec/includedResources",
    "items/[]/spec/provider",
    "items/[]/spec/default",
    "items/[]/spec/objectStorage/bucket",
    "items/[]/spec/objectStorage/prefix",
    "items/[]/status/phase",
    "items/[]/status/errors",
    "items/[]/status/warnings",
    "items/[]/status/failureReason",
    "items/[]/status/validationErrors",
    "items/[]/status/startTimestamp",
    "items/[]/status/completionTimestamp",
    "items/[]/status/expiration",
    "items/[]/status/progress",
    "items/[]/status/lastValidationTime",
    "items/[]/status/message",
];

/// Copy of `src` holding only the fields `paths` name.
pub fn pick(src: &serde_json::Value, paths: &[&str]) -> serde_json::Value {
    let mut out = serde_json::Value::Null;
    for p in paths {
        let segs: Vec<&str> = p.split('/').collect();
        pick_into(src, &segs, &mut out);
    }
    out
}

fn pick_into(src: &serde_json::Value, path: &[&str], dst: &mut serde_json::Value) {
    use serde_json::Value;
    let Some((seg, rest)) = path.split_first() else {
        *dst = src.clone();
        return;
    };
    if *seg == "[]" {
        let Value::Array(items) = src else { return };
        if !dst.is_array() {
            *dst = Value::Array(vec![Value::Null; items.len()]);
        }
        if let Value::Array(d) = dst {
            for (s, d) in items.iter().zip(d.iter_mut()) {
                pick_into(s, rest, d);
            }
        }
        return;
    }
    let Some(v) = src.get(*seg) else { return };
    if !dst.is_object() {
        *dst = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(m) = dst {
        pick_into(v, rest, m.entry(seg.to_string()).or_insert(Value::Null));
    }
}

/// The named fields of a command's JSON output, pretty-printed; output that
/// is not JSON is left out (never copied whole).
fn picked(r: Result<String>, paths: &[&str]) -> Result<String> {
    let v: serde_json::Value = serde_json::from_str(&r?)
        .context("the output is not JSON; left out (the report copies named fields only)")?;
    json(&pick(&v, paths))
}

impl Item {
    /// `ok      name` or `missing name: why`.
    fn line(&self) -> String {
        // On one line, whole: a failed command's reason is on the lines
        // after "`oc ...` failed (exit status: 1):" (the independent tester
        // saw only that first line, the reason cut off).
        let note: Vec<&str> = self
            .note
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let why = if note.is_empty() {
            String::new()
        } else {
            format!(": {}", note.join(" "))
        };
        format!(
            "{} {}{why}",
            if self.collected { "ok     " } else { "missing" },
            self.name
        )
    }
}

struct Bundle {
    files: Vec<(String, Vec<u8>)>,
    items: Vec<Item>,
}

impl Bundle {
    fn add(&mut self, name: &str, r: Result<String>) {
        match r {
            Ok(text) => {
                self.files
                    .push((name.to_string(), scrub(&text).into_bytes()));
                self.items.push(Item {
                    name: name.into(),
                    collected: true,
                    note: String::new(),
                });
            }
            Err(e) => self.items.push(Item {
                name: name.into(),
                collected: false,
                note: format!("{e:#}"),
            }),
        }
    }
}

/// A file of the backup dir: never through a symlink, never a FIFO, bounded.
fn read_backup_file(p: &Path) -> Result<String> {
    let b = crate::archive::validate::read_regular(p, 16 << 20)
        .with_context(|| format!("{}", p.display()))?;
    Ok(String::from_utf8_lossy(&b).into_owned())
}

fn json<T: Serialize>(v: &T) -> Result<String> {
    Ok(serde_json::to_string_pretty(v)? + "\n")
}

pub fn collect(host: &Host, to: &Path) -> Result<Vec<Item>> {
    host.require_node()?;
    let tools = Tools::require(&["ostree"], &["rpm-ostree", "oc", "crictl", "journalctl"])?;
    let dir = host.backup_dir();
    let mut b = Bundle {
        files: Vec::new(),
        items: Vec::new(),
    };
    b.add("status.json", status::gather(host).and_then(|s| json(&s)));
    b.add(
        "stateroots.json",
        stateroot::list(host, &tools).and_then(|l| json(&l)),
    );
    b.add(
        "ostree-admin-status.txt",
        cmd::run_text(
            tools
                .command("ostree")?
                .arg("admin")
                .args(crate::node::ostree::sysroot_args(host))
                .arg("status"),
        ),
    );
    // The files of the current generation (the documented paths are links).
    let cur = crate::store::files_dir(&dir);
    b.add(
        "backup/manifest.json",
        read_backup_file(&cur.join(manifest::FILE)).context("no backup manifest"),
    );
    b.add(
        "backup/verify.json",
        verify::verify(host).and_then(|(_, r)| json(&r)),
    );
    b.add(
        "backup/etc.exclude.list",
        read_backup_file(&cur.join(crate::store::layout::EXCLUDE_LIST))
            .context("no etc.exclude.list"),
    );
    b.add(
        "recovery/journal.json",
        read_backup_file(&dir.join(crate::store::journal::FILE)).context("no recovery in progress"),
    );
    b.add("disk.txt", disk(host));
    b.add(
        "log/upgrade-recovery.journal.txt",
        if tools.has("journalctl") {
            cmd::run_text(tools.command("journalctl")?.args([
                "-t",
                "upgrade-recovery",
                "--no-pager",
                "-o",
                "short-iso",
                "-n",
                "5000",
            ]))
        } else {
            Err(anyhow::anyhow!("journalctl not found"))
        },
    );
    b.add(
        "containers.json",
        if tools.has("crictl") {
            picked(
                crate::node::crictl::Crictl::new(&tools).ps_all_raw(),
                CONTAINER_FIELDS,
            )
        } else {
            Err(anyhow::anyhow!("crictl not found"))
        },
    );
    if tools.has("oc") {
        b.add(
            "ibu/status.json",
            ibu::status(host, &tools).and_then(|s| json(&s)),
        );
        for (file, args) in [
            (
                "ibu/imagebasedupgrade.json",
                vec![
                    "get",
                    "imagebasedupgrades.lca.openshift.io",
                    "upgrade",
                    "-o",
                    "json",
                ],
            ),
            (
                "oadp/backups.json",
                vec![
                    "get",
                    "backups.velero.io",
                    "-n",
                    "openshift-adp",
                    "-o",
                    "json",
                ],
            ),
            (
                "oadp/restores.json",
                vec![
                    "get",
                    "restores.velero.io",
                    "-n",
                    "openshift-adp",
                    "-o",
                    "json",
                ],
            ),
            (
                "oadp/backupstoragelocations.json",
                vec![
                    "get",
                    "backupstoragelocations.velero.io",
                    "-n",
                    "openshift-adp",
                    "-o",
                    "json",
                ],
            ),
        ] {
            let fields = if file.starts_with("ibu/") {
                ibu_fields()
            } else {
                VELERO_FIELDS.to_vec()
            };
            b.add(
                file,
                picked(
                    crate::node::oc::command(host, &tools)
                        .and_then(|mut c| cmd::run_text(c.args(&args))),
                    &fields,
                ),
            );
        }
    }
    let index = b
        .items
        .iter()
        .map(|i| format!("{}\n", i.line()))
        .collect::<String>();
    b.files
        .push(("index.txt".into(), scrub(&index).into_bytes()));
    write_tgz(to, &b.files)?;
    Ok(b.items)
}

fn disk(host: &Host) -> Result<String> {
    let mut s = String::new();
    for p in [host.backup_dir(), host.sysroot()] {
        if let Ok(st) = rustix::fs::statvfs(&p) {
            s.push_str(&format!(
                "{}: {} free of {}; {} used below\n",
                p.display(),
                crate::util::fsutil::human(st.f_bavail * st.f_frsize),
                crate::util::fsutil::human(st.f_blocks * st.f_frsize),
                crate::util::fsutil::human(crate::backup::du(&p))
            ));
        }
    }
    Ok(s)
}

/// Write the bundle as a new file: created beside `to` with O_CREAT|O_EXCL
/// (never through a symlink, never reusing a file's mode), 0600, synced,
/// then renamed over `to` (a symlink there is replaced, not followed).
fn write_tgz(to: &Path, files: &[(String, Vec<u8>)]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let name = to
        .file_name()
        .with_context(|| format!("{} is not a file name", to.display()))?;
    let tmp = to.with_file_name(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    // The umask only takes bits away; set exactly 0600.
    rustix::fs::fchmod(&f, rustix::fs::Mode::from_raw_mode(0o600))?;
    let written = write_tgz_to(f, files).and_then(|()| {
        std::fs::rename(&tmp, to).with_context(|| format!("renaming into {}", to.display()))
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    if let Some(dir) = to.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

fn write_tgz_to(f: std::fs::File, files: &[(String, Vec<u8>)]) -> Result<()> {
    use std::io::Write;
    let mut gz =
        flate2::write::GzEncoder::new(std::io::BufWriter::new(f), flate2::Compression::default());
    let now = crate::util::fsutil::unix_now();
    for (name, data) in files {
        let meta = crate::archive::tar::Meta {
            mode: 0o600,
            mtime: now,
            size: data.len() as u64,
            ..Default::default()
        };
        let path = format!("upgrade-recovery-report/{name}");
        gz.write_all(&crate::archive::tar::encode(
            path.as_bytes(),
            crate::archive::tar::Kind::File,
            &meta,
            data.len() as u64,
        ))?;
        gz.write_all(data)?;
        gz.write_all(&vec![0u8; crate::archive::tar::padding(data.len() as u64)])?;
    }
    gz.write_all(&[0u8; 1024])?;
    gz.finish()?
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
    Ok(())
}

pub fn render(items: &[Item], to: &Path) -> String {
    let ok = items.iter().filter(|i| i.collected).count();
    let mut s = format!(
        "Support report written to {} ({ok} of {} items):\n",
        to.display(),
        items.len()
    );
    for i in items {
        s.push_str(&format!("  {}\n", i.line()));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failed command's reason is on the lines after its first: the
    /// item's line keeps it (the independent tester saw it cut off).
    #[test]
    fn a_missing_item_says_why_on_one_line() {
        let i = Item {
            name: "ibu/imagebasedupgrade.json".into(),
            collected: false,
            note: "`oc get imagebasedupgrades` failed (exit status: 1):\nerror: the server doesn't have a resource type \"imagebasedupgrades\"\n".into(),
        };
        assert_eq!(
            i.line(),
            "missing ibu/imagebasedupgrade.json: `oc get imagebasedupgrades` failed (exit status: 1): error: the server doesn't have a resource type \"imagebasedupgrades\""
        );
        let ok = Item {
            name: "n".into(),
            collected: true,
            note: String::new(),
        };
        assert_eq!(ok.line(), "ok      n");
    }

    /// One fixture a kind of secret: (file, secrets that must go, context
    /// that must stay).
    #[test]
    fn scrubs_each_fixture() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scrub");
        let key = std::fs::read_to_string(dir.join("kubeconfig.yaml")).unwrap();
        let key = key
            .lines()
            .find_map(|l| l.trim().strip_prefix("client-key-data: "))
            .unwrap()
            .to_string();
        let cases: Vec<(&str, Vec<&str>, Vec<&str>)> = vec![
            (
                "kubeconfig.yaml",
                vec![&key[..], &key[key.len() - 20..]],
                vec!["client-certificate-data: LS0t", "server: https://api.sno"],
            ),
            (
                "aws-credentials",
                vec!["wJalrXUtnFEMI", "EXAMPLEKEY", "AKIAIOSFODNN7EXAMPLE"],
                vec!["region = us-east-1"],
            ),
            (
                "bearer.txt",
                vec!["kx9Qv2ZpL0aT7mRw3YbN8cUe"],
                vec![
                    "Authorization: Bearer <redacted>",
                    "https://api.sno:6443/api",
                ],
            ),
            (
                "url.txt",
                vec!["s3cr3tPa55", "builder"],
                vec!["https://<redacted>@registry.example.com:5000/v2/ocp/release"],
            ),
            (
                "dockercfg.json",
                vec!["b3BlbnNoaWZ0", "ZnV6enk6d3V6enk="],
                vec!["ops@example.com", "registry.redhat.io"],
            ),
            (
                "json-escaped.json",
                vec!["W1thQu0te", ":\\\"tok", "AfterEscape", "abc"],
                vec!["\\\"kind\\\":\\\"Secret\\\"", "last-applied-configuration"],
            ),
        ];
        for (file, gone, kept) in cases {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            for g in &gone {
                assert!(text.contains(g), "{file}: fixture lacks {g}");
            }
            let s = scrub(&text);
            for g in gone {
                assert!(!s.contains(g), "{file}: {g} left in\n{s}");
            }
            for k in kept {
                assert!(s.contains(k), "{file}: {k} lost\n{s}");
            }
        }
    }

    #[test]
    fn output_that_is_not_json_is_left_out_and_errors_pass() {
        let e = picked(Ok("token: abc\n".into()), CONTAINER_FIELDS).unwrap_err();
        assert!(format!("{e:#}").contains("not JSON; left out"), "{e:#}");
        let e = picked(Err(anyhow::anyhow!("crictl: not found")), CONTAINER_FIELDS);
        assert!(format!("{:#}", e.unwrap_err()).contains("crictl: not found"));
        let ok = picked(Ok("{\"containers\": []}".into()), CONTAINER_FIELDS).unwrap();
        assert_eq!(ok, "{\n  \"containers\": []\n}\n");
    }

    #[test]
    fn scrubs_keys_and_tokens() {
        let t = "a\n-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\nuser: {token: sha256~abcdefghijklmnopqrstuvwxyz}\n\"password\": \"hunter2\"\nx eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U y\n";
        let s = scrub(t);
        assert!(
            !s.contains("MIIE") && !s.contains("PRIVATE KEY-----\n"),
            "{s}"
        );
        assert!(!s.contains("sha256~abc"), "{s}");
        assert!(!s.contains("hunter2"), "{s}");
        assert!(!s.contains("eyJhbGci"), "{s}");
        assert!(s.starts_with("a\n"));
        let j = scrub(
            "{\"k\": \"-----BEGIN PRIVATE KEY-----\\nMIIB\\n-----END PRIVATE KEY-----\\n\"}\n",
        );
        assert!(
            !j.contains("MIIB") && !j.contains("PRIVATE KEY-----"),
            "{j}"
        );
    }
}
