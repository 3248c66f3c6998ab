//! `etc.exclude.list` with the meaning rsync gives an `--exclude-from` file
//! (the old recovery ran `rsync -aAXc --delete --exclude-from
//! etc.exclude.list`). Pure: patterns in, yes/no out.
//!
//! The rules, from rsync(1) "FILTER RULES" / "PATTERN MATCHING RULES" and
//! "--exclude-from" (checked against `rsync -n` in tests/exclude.rs):
//! - one pattern a line; blank lines and lines starting with `#` or `;` are
//!   ignored; a line starting with `- ` is an exclude, `+ ` an include; the
//!   first rule that matches decides;
//! - a pattern starting with `/` is anchored at the top of the tree; any
//!   other is matched against the end of the path: if it holds a `/` (not
//!   counting a trailing one) or `**`, against the trailing components of
//!   the full path, else against the name alone;
//! - a trailing `/` matches directories only;
//! - `*` matches any run of characters but `/`, `**` any run including `/`,
//!   `?` one character but `/`, `[...]` one character of a class (`[!...]`
//!   and `[^...]` negate, `a-z` ranges); a backslash quotes the next
//!   character; `dir/***` matches `dir` and everything below it;
//! - an excluded directory is not descended: nothing below it is written
//!   or deleted.

/// One rule of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    /// The pattern without its leading `/` and trailing `/`.
    pat: Vec<u8>,
    include: bool,
    anchored: bool,
    dir_only: bool,
    /// Holds a `/` or `**`: matched against the full path's tail.
    full_path: bool,
}

/// A parsed exclude list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Excludes {
    rules: Vec<Rule>,
}

impl Excludes {
    /// Parse the text of an `--exclude-from` file. Lines keep their
    /// spaces (rsync keeps them too), except the line end's CR.
    pub fn parse(text: &[u8]) -> Excludes {
        let rules = text
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .filter(|l| !l.is_empty() && l[0] != b'#' && l[0] != b';')
            .filter_map(|l| {
                let (include, l) = if let Some(r) = l.strip_prefix(b"- ") {
                    (false, r)
                } else if let Some(r) = l.strip_prefix(b"+ ") {
                    (true, r)
                } else {
                    (false, l)
                };
                Rule::new(l, include)
            })
            .collect();
        Excludes { rules }
    }

    /// Anchored prefixes, as the manifest records them (relative to the
    /// tree): each excludes itself and everything below it.
    pub fn anchored(paths: &[String]) -> Excludes {
        let rules = paths
            .iter()
            .filter_map(|p| {
                let p = p.trim_start_matches("./").trim_start_matches('/');
                let mut pat = vec![b'/'];
                pat.extend(p.as_bytes());
                Rule::new(&pat, false)
            })
            .collect();
        Excludes { rules }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether `path` (relative to the tree, `a/b/c`, no leading `/`) is
    /// excluded, itself or through an excluded directory above it.
    /// `is_dir` says whether the path itself is a directory.
    pub fn excludes(&self, path: &[u8], is_dir: bool) -> bool {
        if self.rules.is_empty() || path == b"." || path.is_empty() {
            return false;
        }
        let mut end = 0;
        loop {
            let next = path[end..].iter().position(|&b| b == b'/');
            let (prefix, last) = match next {
                Some(i) => (&path[..end + i], false),
                None => (path, true),
            };
            if self.decide(prefix, if last { is_dir } else { true }) {
                return true;
            }
            match next {
                Some(i) => end += i + 1,
                None => return false,
            }
        }
    }

    /// The first matching rule decides for this one path.
    fn decide(&self, path: &[u8], is_dir: bool) -> bool {
        for r in &self.rules {
            if r.dir_only && !is_dir {
                continue;
            }
            if r.matches(path) {
                return !r.include;
            }
        }
        false
    }
}

impl Rule {
    fn new(line: &[u8], include: bool) -> Option<Rule> {
        let mut pat = line.to_vec();
        let mut dir_only = false;
        while pat.len() > 1 && pat.ends_with(b"/") {
            pat.pop();
            dir_only = true;
        }
        let anchored = pat.first() == Some(&b'/');
        if anchored {
            pat.remove(0);
        }
        if pat.is_empty() {
            return None;
        }
        let full_path = pat.contains(&b'/') || pat.windows(2).any(|w| w == b"**");
        Some(Rule {
            pat,
            include,
            anchored,
            dir_only,
            full_path,
        })
    }

    fn matches(&self, path: &[u8]) -> bool {
        // `dir/***`: the dir itself, and everything below (`dir/**`).
        if let Some(base) = self.pat.strip_suffix(b"/***") {
            let below = [base, b"/**"].concat();
            return self.matches_pat(base, path) || self.matches_pat(&below, path);
        }
        self.matches_pat(&self.pat, path)
    }

    fn matches_pat(&self, pat: &[u8], path: &[u8]) -> bool {
        if self.anchored {
            return wildmatch(pat, path);
        }
        if !self.full_path {
            let name = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
            return wildmatch(pat, name);
        }
        // The end of the path: the whole, or any tail after a `/`.
        if wildmatch(pat, path) {
            return true;
        }
        path.iter()
            .enumerate()
            .filter(|(_, &b)| b == b'/')
            .any(|(i, _)| wildmatch(pat, &path[i + 1..]))
    }
}

/// Match `text` against the whole of `pat` (rsync's wildmatch, without its
/// `[[:class:]]` names).
pub fn wildmatch(pat: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    while p < pat.len() {
        match pat[p] {
            b'*' => {
                let double = pat.get(p + 1) == Some(&b'*');
                let mut q = p + 1;
                while q < pat.len() && pat[q] == b'*' {
                    q += 1;
                }
                if q == pat.len() {
                    // A trailing star: the rest, with or without `/`.
                    return double || !text[t..].contains(&b'/');
                }
                for k in t..=text.len() {
                    if wildmatch(&pat[q..], &text[k..]) {
                        return true;
                    }
                    if k < text.len() && text[k] == b'/' && !double {
                        return false;
                    }
                }
                return false;
            }
            b'?' => {
                if t >= text.len() || text[t] == b'/' {
                    return false;
                }
                p += 1;
                t += 1;
            }
            b'[' => {
                let Some(&c) = text.get(t) else {
                    return false;
                };
                match class(&pat[p..], c) {
                    Some((true, used)) if c != b'/' => {
                        p += used;
                        t += 1;
                    }
                    Some(_) => return false,
                    // No closing `]`: a literal `[`.
                    None => {
                        if c != b'[' {
                            return false;
                        }
                        p += 1;
                        t += 1;
                    }
                }
            }
            b'\\' if p + 1 < pat.len() => {
                if text.get(t) != Some(&pat[p + 1]) {
                    return false;
                }
                p += 2;
                t += 1;
            }
            c => {
                if text.get(t) != Some(&c) {
                    return false;
                }
                p += 1;
                t += 1;
            }
        }
    }
    t == text.len()
}

/// A `[...]` class at the start of `pat` against `c`: (matched, bytes of
/// the pattern used); None when the class is not closed.
fn class(pat: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(pat.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    loop {
        let &b = pat.get(i)?;
        if b == b']' && !first {
            return Some((hit != negate, i + 1));
        }
        first = false;
        let lo = if b == b'\\' {
            i += 1;
            *pat.get(i)?
        } else {
            b
        };
        if pat.get(i + 1) == Some(&b'-') && pat.get(i + 2).is_some_and(|&x| x != b']') {
            let hi = pat[i + 2];
            if lo <= c && c <= hi {
                hit = true;
            }
            i += 3;
        } else {
            if lo == c {
                hit = true;
            }
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(list: &str) -> Excludes {
        Excludes::parse(list.as_bytes())
    }

    #[test]
    fn unanchored_matches_at_any_depth() {
        let e = ex("cni/multus/certs\n.updated\n");
        assert!(e.excludes(b"cni/multus/certs", true));
        assert!(e.excludes(b"cni/multus/certs/a.pem", false));
        assert!(e.excludes(b"x/cni/multus/certs", true));
        assert!(e.excludes(b"x/y/cni/multus/certs/z", false));
        assert!(!e.excludes(b"xcni/multus/certs", true));
        assert!(!e.excludes(b"cni/multus/certs2", true));
        assert!(e.excludes(b".updated", false));
        assert!(e.excludes(b"a/b/.updated", false));
        assert!(!e.excludes(b"a/b/.updated2", false));
    }

    #[test]
    fn anchored_matches_only_at_the_top() {
        let e = ex("/kubernetes/manifests\n");
        assert!(e.excludes(b"kubernetes/manifests", true));
        assert!(e.excludes(b"kubernetes/manifests/etcd-pod.yaml", false));
        assert!(!e.excludes(b"x/kubernetes/manifests", true));
        assert!(!e.excludes(b"kubernetes/manifests2", true));
        let a = Excludes::anchored(&["cni/multus".into(), "./x".into()]);
        assert!(a.excludes(b"cni/multus/y", false));
        assert!(!a.excludes(b"a/cni/multus", true));
        assert!(a.excludes(b"x", false));
    }

    #[test]
    fn wildcards() {
        let e = ex("*.bak\nlog?\n/run/[ab]*\n[!x]z\n");
        assert!(e.excludes(b"a.bak", false));
        assert!(e.excludes(b"d/e/a.bak", false));
        assert!(!e.excludes(b"a.bak2", false));
        assert!(e.excludes(b"d/log1", false));
        assert!(!e.excludes(b"d/log12", false));
        assert!(e.excludes(b"run/apple", false));
        assert!(e.excludes(b"run/b", false));
        assert!(!e.excludes(b"run/c", false));
        assert!(!e.excludes(b"x/run/a", false));
        assert!(e.excludes(b"yz", false));
        assert!(!e.excludes(b"xz", false));
        // `*` stops at `/`, `**` does not.
        let e = ex("/a/*/c\n/p/**/q\n");
        assert!(e.excludes(b"a/b/c", false));
        assert!(!e.excludes(b"a/b/b/c", false));
        assert!(e.excludes(b"p/x/y/q", false));
        assert!(!e.excludes(b"p/q", false));
        assert!(wildmatch(b"a\\*", b"a*"));
        assert!(!wildmatch(b"a\\*", b"ab"));
        assert!(wildmatch(b"[a-c]x", b"bx"));
        assert!(!wildmatch(b"[a-c]x", b"dx"));
        assert!(wildmatch(b"[]]", b"]"));
        assert!(wildmatch(b"[ab", b"[ab"));
    }

    #[test]
    fn trailing_slash_is_directories_only() {
        let e = ex("cache/\n");
        assert!(e.excludes(b"cache", true));
        assert!(e.excludes(b"cache/f", false), "below an excluded dir");
        assert!(e.excludes(b"x/cache/f", false));
        assert!(!e.excludes(b"cache", false), "a file named cache stays");
        assert!(!e.excludes(b"x/cache", false));
    }

    #[test]
    fn triple_star_and_first_match() {
        let e = ex("/d/***\n");
        assert!(e.excludes(b"d", true));
        assert!(e.excludes(b"d/x/y", false));
        assert!(!e.excludes(b"dd", false));
        let e = ex("+ keep.conf\n- *.conf\n");
        assert!(!e.excludes(b"a/keep.conf", false));
        assert!(e.excludes(b"a/other.conf", false));
    }

    #[test]
    fn comments_blank_lines_and_odd_input() {
        let e = ex("# c\n; c\n\n/\n//\nx\r\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e.excludes(b"x", false));
        assert!(!e.excludes(b".", true));
        // Never panics on odd bytes.
        let e = Excludes::parse(b"\xff[\n[\\\n\\\n*\x00\n");
        let _ = e.excludes(b"\xff", false);
        let _ = e.excludes(b"[", false);
        let _ = e.excludes(b"a/\\", true);
    }
}
