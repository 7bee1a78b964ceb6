//! `.gitignore` / `.nxignore` rules, as Nx applies them: a committed file that matches an ignore
//! rule is dropped from the workspace (and from the change list) even though git tracks it.

use crate::glob::Glob;

#[derive(Debug)]
struct Rule {
    /// Directory of the ignore file (`""` for the root).
    base: String,
    glob: Glob,
    negated: bool,
    dir_only: bool,
}

/// All ignore rules of one snapshot, in precedence order (later rules win).
#[derive(Debug, Default)]
pub struct Ignore {
    rules: Vec<Rule>,
}

impl Ignore {
    /// Builds the rules from the `.gitignore` files (any directory) and the root `.nxignore`.
    /// `node_modules` and `.nx` are always ignored, as by Nx.
    pub fn new(files: &[(String, String)]) -> Ignore {
        let mut ig = Ignore::default();
        for line in ["node_modules", ".nx/cache", ".nx/workspace-data"] {
            ig.add_line("", line);
        }
        // Shallow files first so that deeper rules take precedence, like git.
        let mut files: Vec<&(String, String)> = files.iter().collect();
        files.sort_by_key(|(path, _)| (path.matches('/').count(), path.ends_with(".nxignore")));
        for (path, text) in files {
            let base = match path.rfind('/') {
                Some(i) => &path[..i],
                None => "",
            };
            for line in text.lines() {
                ig.add_line(base, line);
            }
        }
        ig
    }

    fn add_line(&mut self, base: &str, line: &str) {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            return;
        }
        let (negated, line) = match line.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, line.strip_prefix('\\').unwrap_or(line)),
        };
        let (dir_only, line) = match line.strip_suffix('/') {
            Some(rest) => (true, rest),
            None => (false, line),
        };
        let anchored = line.contains('/');
        let line = line.strip_prefix('/').unwrap_or(line);
        let pattern = if anchored {
            line.to_string()
        } else {
            format!("**/{line}")
        };
        self.rules.push(Rule {
            base: base.to_string(),
            glob: Glob::new(&pattern),
            negated,
            dir_only,
        });
    }

    /// Whether the file at `path` is ignored (itself or through an ignored parent directory).
    pub fn is_ignored(&self, path: &str) -> bool {
        if self.rules.is_empty() {
            return false;
        }
        // A file under an ignored directory cannot be re-included.
        let mut end = 0;
        while let Some(i) = path[end..].find('/') {
            let dir = &path[..end + i];
            if self.decide(dir, true) {
                return true;
            }
            end += i + 1;
        }
        self.decide(path, false)
    }

    fn decide(&self, path: &str, is_dir: bool) -> bool {
        let mut ignored = false;
        for rule in &self.rules {
            if rule.dir_only && !is_dir {
                continue;
            }
            if ignored != rule.negated {
                continue; // this rule could not change the outcome
            }
            let rel = if rule.base.is_empty() {
                path
            } else {
                match path
                    .strip_prefix(rule.base.as_str())
                    .and_then(|r| r.strip_prefix('/'))
                {
                    Some(r) => r,
                    None => continue,
                }
            };
            if rule.glob.is_match(rel) {
                ignored = !rule.negated;
            }
        }
        ignored
    }
}

#[cfg(test)]
mod tests {
    use super::Ignore;

    #[test]
    fn gitignore_rules_apply_to_files_and_parent_directories() {
        let ig = Ignore::new(&[
            (".gitignore".into(), "*.log\n/dist\n!keep.log\n".into()),
            ("pkg/.gitignore".into(), "tmp/\n".into()),
        ]);
        assert!(ig.is_ignored("a/b.log"));
        assert!(!ig.is_ignored("a/keep.log"));
        assert!(ig.is_ignored("dist/x.js"));
        assert!(!ig.is_ignored("a/dist/x.js"));
        assert!(ig.is_ignored("pkg/tmp/x.js"));
        assert!(!ig.is_ignored("other/tmp/x.js"));
        assert!(ig.is_ignored("node_modules/x/index.js"));
    }
}
