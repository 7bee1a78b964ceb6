//! `kiln serve`'s configuration: a YAML file (optional), then environment variables, then the
//! command line, each overriding the one before. Unknown keys and bad values are errors with
//! `file:line:col`. Secrets (API tokens, webhook secrets) are best given by environment; API
//! tokens in the file are SHA-256 hashes, never the tokens themselves.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::auth::{TokenHash, Tokens};
use crate::store::{Notify, Synchronous};

/// The whole configuration, resolved.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub store_path: PathBuf,
    pub synchronous: Synchronous,
    pub tokens: Tokens,
    pub github_secret: Option<Vec<u8>>,
    pub gitlab_token: Option<Vec<u8>>,
    /// Runs at once on this worker.
    pub max_runs: usize,
    /// Steps at once within one run.
    pub jobs: usize,
    /// Attempts of a run (1 = no retry).
    pub max_attempts: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// How long a claim lives without a heartbeat before another worker may take the run over.
    pub lease: Duration,
    pub worker_id: Option<String>,
    pub notify: Notify,
    pub notify_secret: Option<Vec<u8>>,
    pub notify_attempts: u32,
    pub memory_limit_mb: u64,
    pub allow_local_repos: bool,
    pub secrets: BTreeMap<String, String>,
    /// Keep finished runs' workspaces (for retries that reuse steps); `false` deletes them.
    pub keep_workspaces: bool,
    /// Configuration variables runs read as `vars.NAME` (not secret: they show in logs).
    pub vars: BTreeMap<String, String>,
    /// Pipelines this server starts on their `on.schedule`.
    pub schedules: Vec<ScheduledPipeline>,
    /// How often due schedule slots are checked.
    pub schedule_tick: Duration,
    /// How often each scheduled pipeline's `on.schedule` is read again from its repository.
    pub schedule_refresh: Duration,
}

/// One entry of `schedules.pipelines`: a pipeline in a repository whose `on.schedule` this
/// server follows.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScheduledPipeline {
    /// Unique among the entries; with the cron expression it names the durable slot record.
    pub name: String,
    pub repo: String,
    /// Branch or tag the pipeline is read at (default: the remote's default branch).
    #[serde(rename = "ref")]
    pub git_ref: Option<String>,
    /// Path of the pipeline file in the repository.
    pub pipeline: String,
    /// `event.inputs` of the runs it starts.
    #[serde(default)]
    pub inputs: serde_json::Map<String, serde_json::Value>,
}

/// The file's shape. Every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    store: Option<StoreFile>,
    api: Option<ApiFile>,
    github: Option<SecretFile>,
    gitlab: Option<SecretFile>,
    queue: Option<QueueFile>,
    notifications: Option<NotifyFile>,
    runs: Option<RunsFile>,
    secrets: Option<SecretsFile>,
    vars: Option<BTreeMap<String, VarValue>>,
    schedules: Option<SchedulesFile>,
}

/// A variable's value: text, a number or a boolean (kept as text).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum VarValue {
    Text(String),
    Number(serde_json::Number),
    Bool(bool),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SchedulesFile {
    tick: Option<String>,
    refresh: Option<String>,
    #[serde(default)]
    pipelines: Vec<ScheduledPipeline>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFile {
    path: Option<PathBuf>,
    synchronous: Option<Synchronous>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiFile {
    #[serde(default)]
    tokens: Vec<TokenFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    name: String,
    /// `sha256:<64 hex>` of the token (`kiln token new` prints it).
    hash: String,
}

/// A webhook secret: its value from an environment variable (`secret_env`) or a file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretFile {
    secret_env: Option<String>,
    secret_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueFile {
    max_runs: Option<usize>,
    jobs: Option<usize>,
    attempts: Option<u32>,
    backoff: Option<String>,
    max_backoff: Option<String>,
    lease: Option<String>,
    worker_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NotifyFile {
    #[serde(default)]
    on_success: Vec<String>,
    #[serde(default)]
    on_failure: Vec<String>,
    secret_env: Option<String>,
    attempts: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunsFile {
    memory_limit_mb: Option<u64>,
    allow_local_repos: Option<bool>,
    keep_workspaces: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretsFile {
    /// Names of environment variables whose values runs may use as secrets.
    #[serde(default)]
    env: Vec<String>,
    /// A file of `NAME=value` lines.
    file: Option<PathBuf>,
}

/// The command line's part.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
}

/// Where the value of a setting came from, for error messages.
fn bad(origin: &str, value: &str, why: &str, hint: &str) -> String {
    format!("{origin}: `{value}` {why}; hint: {hint}")
}

fn duration(origin: &str, text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        bad(
            origin,
            text,
            &format!("is not a duration ({e})"),
            "write e.g. `10s`, `5m` or `1h`",
        )
    })
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn env_parse<T: std::str::FromStr>(name: &str) -> Result<Option<T>, String>
where
    T::Err: std::fmt::Display,
{
    match env(name) {
        None => Ok(None),
        Some(v) => v.trim().parse().map(Some).map_err(|e| {
            bad(
                &format!("environment variable `{name}`"),
                &v,
                &format!("is invalid ({e})"),
                "fix or unset it",
            )
        }),
    }
}

fn list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn read_secret_file(origin: &str, path: &Path) -> Result<Vec<u8>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{origin}: cannot read `{}`: {e}", path.display()))?;
    Ok(text.trim_end_matches(['\n', '\r']).as_bytes().to_vec())
}

impl Config {
    /// Read the file (if any), then the environment, then `overrides`.
    pub fn load(overrides: &Overrides) -> Result<Config, String> {
        let file = match &overrides.config {
            Some(path) => read_file(path)?,
            None => File::default(),
        };
        let origin_file = overrides
            .config
            .as_ref()
            .map_or("the configuration".to_owned(), |p| p.display().to_string());

        let data_dir = overrides
            .data_dir
            .clone()
            .or_else(|| env("KILN_DATA_DIR").map(PathBuf::from))
            .or(file.data_dir)
            .unwrap_or_else(crate::dirs::data_dir);
        let listen_text = overrides
            .listen
            .clone()
            .or_else(|| env("KILN_LISTEN"))
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:8080".to_owned());
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            bad(
                "`listen`",
                &listen_text,
                "is not an address",
                "write `IP:PORT`, e.g. `127.0.0.1:8080` or `0.0.0.0:8080`",
            )
        })?;
        let store = file.store.unwrap_or_default();
        let store_path = env("KILN_STORE_PATH")
            .map(PathBuf::from)
            .or(store.path)
            .unwrap_or_else(|| data_dir.join("kiln.db"));
        let synchronous = match env("KILN_STORE_SYNCHRONOUS").as_deref() {
            Some("full") => Synchronous::Full,
            Some("normal") => Synchronous::Normal,
            Some(other) => {
                return Err(bad(
                    "environment variable `KILN_STORE_SYNCHRONOUS`",
                    other,
                    "is not a mode",
                    "use `full` (the default) or `normal`",
                ));
            }
            None => store.synchronous.unwrap_or(Synchronous::Full),
        };

        let mut tokens = Tokens::default();
        for t in file.api.unwrap_or_default().tokens {
            let hash = TokenHash::parse(&t.hash).map_err(|why| {
                bad(
                    &format!("{origin_file}: token `{}`", t.name),
                    &t.hash,
                    &why,
                    "write `sha256:` and the 64 hex digits `kiln token new` prints",
                )
            })?;
            tokens.add(t.name, hash);
        }
        if let Some(raw) = env("KILN_API_TOKENS") {
            for (i, entry) in list(&raw).into_iter().enumerate() {
                // `name:token` or just `token`.
                let (name, token) = match entry.split_once(':') {
                    Some((n, t)) if !n.is_empty() && !t.is_empty() => (n.to_owned(), t.to_owned()),
                    _ => (format!("env-{}", i + 1), entry.clone()),
                };
                if token.len() < 16 {
                    return Err(
                        "environment variable `KILN_API_TOKENS`: a token is shorter than 16 characters; hint: use `kiln token new` to make one".to_owned(),
                    );
                }
                tokens.add(name, TokenHash::of(&token));
            }
        }

        let secret = |name: &str,
                      var: &str,
                      f: Option<SecretFile>|
         -> Result<Option<Vec<u8>>, String> {
            if let Some(v) = env(var) {
                return Ok(Some(v.into_bytes()));
            }
            let f = f.unwrap_or_default();
            if let Some(var) = &f.secret_env {
                return match env(var) {
                    Some(v) => Ok(Some(v.into_bytes())),
                    None => Err(format!(
                        "{origin_file}: `{name}.secret_env` names `{var}`, which is not set; hint: export {var}=..."
                    )),
                };
            }
            match &f.secret_file {
                Some(p) => {
                    read_secret_file(&format!("{origin_file}: `{name}.secret_file`"), p).map(Some)
                }
                None => Ok(None),
            }
        };
        let github_secret = secret("github", "KILN_GITHUB_SECRET", file.github)?;
        let gitlab_token = secret("gitlab", "KILN_GITLAB_TOKEN", file.gitlab)?;

        let queue = file.queue.unwrap_or_default();
        let max_runs = env_parse("KILN_MAX_RUNS")?.or(queue.max_runs).unwrap_or(4);
        let jobs = env_parse("KILN_JOBS")?.or(queue.jobs).unwrap_or(4);
        let max_attempts = env_parse("KILN_RUN_ATTEMPTS")?
            .or(queue.attempts)
            .unwrap_or(3);
        if max_runs == 0 || jobs == 0 || max_attempts == 0 || max_attempts > 100 {
            return Err(
                "`queue.max_runs` and `queue.jobs` must be at least 1, `queue.attempts` 1 to 100; hint: fix the value"
                    .to_owned(),
            );
        }
        let d =
            |var: &str, key: &str, v: Option<String>, default: &str| -> Result<Duration, String> {
                match env(var) {
                    Some(text) => duration(&format!("environment variable `{var}`"), &text),
                    None => duration(
                        &format!("{origin_file}: `queue.{key}`"),
                        v.as_deref().unwrap_or(default),
                    ),
                }
            };
        let backoff = d("KILN_RUN_BACKOFF", "backoff", queue.backoff, "30s")?;
        let max_backoff = d(
            "KILN_RUN_MAX_BACKOFF",
            "max_backoff",
            queue.max_backoff,
            "10m",
        )?;
        let lease = d("KILN_LEASE", "lease", queue.lease, "30s")?;
        if lease < Duration::from_secs(1) {
            return Err("`queue.lease` must be at least 1s; hint: use e.g. `30s`".to_owned());
        }
        let worker_id = env("KILN_WORKER_ID").or(queue.worker_id);

        let n = file.notifications.unwrap_or_default();
        let mut notify = Notify {
            on_success: n.on_success,
            on_failure: n.on_failure,
        };
        if let Some(v) = env("KILN_NOTIFY_ON_SUCCESS") {
            notify.on_success = list(&v);
        }
        if let Some(v) = env("KILN_NOTIFY_ON_FAILURE") {
            notify.on_failure = list(&v);
        }
        for url in notify.on_success.iter().chain(&notify.on_failure) {
            check_url(url)?;
        }
        let notify_secret = match env("KILN_NOTIFY_SECRET") {
            Some(v) => Some(v.into_bytes()),
            None => match &n.secret_env {
                Some(var) => Some(env(var).ok_or_else(|| format!("{origin_file}: `notifications.secret_env` names `{var}`, which is not set; hint: export {var}=..."))?.into_bytes()),
                None => None,
            },
        };
        let notify_attempts = n.attempts.unwrap_or(8).clamp(1, 50);

        let runs = file.runs.unwrap_or_default();
        let memory_limit_mb = env_parse("KILN_MEMORY_LIMIT_MB")?
            .or(runs.memory_limit_mb)
            .unwrap_or(256);
        let allow_local_repos = env_parse("KILN_ALLOW_LOCAL_REPOS")?
            .or(runs.allow_local_repos)
            .unwrap_or(false);
        let keep_workspaces = runs.keep_workspaces.unwrap_or(true);

        let mut secrets = BTreeMap::new();
        let s = file.secrets.unwrap_or_default();
        let secrets_file = env("KILN_SECRETS_FILE").map(PathBuf::from).or(s.file);
        if let Some(path) = &secrets_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the secrets file `{}`: {e}", path.display()))?;
            for (i, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let Some((name, value)) = line.split_once('=') else {
                    return Err(format!(
                        "{}:{}: expected `NAME=value`; hint: one secret per line",
                        path.display(),
                        i + 1
                    ));
                };
                secrets.insert(name.trim().to_owned(), value.to_owned());
            }
        }
        let mut names = s.env;
        if let Some(v) = env("KILN_SECRETS") {
            names.extend(list(&v));
        }
        for name in names {
            let value = std::env::var(&name).map_err(|_| {
                format!("secret `{name}` is listed but the environment variable is not set; hint: export {name}=...")
            })?;
            secrets.insert(name, value);
        }

        let mut vars: BTreeMap<String, String> = file
            .vars
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| {
                let text = match v {
                    VarValue::Text(t) => t,
                    VarValue::Number(n) => n.to_string(),
                    VarValue::Bool(b) => b.to_string(),
                };
                (k, text)
            })
            .collect();
        for (name, value) in std::env::vars() {
            if let Some(var) = name.strip_prefix("KILN_VAR_")
                && !var.is_empty()
            {
                vars.insert(var.to_owned(), value);
            }
        }
        let sched = file.schedules.unwrap_or_default();
        let schedule_tick = match env("KILN_SCHEDULE_TICK") {
            Some(t) => duration("environment variable `KILN_SCHEDULE_TICK`", &t)?,
            None => duration(
                &format!("{origin_file}: `schedules.tick`"),
                sched.tick.as_deref().unwrap_or("10s"),
            )?,
        };
        let schedule_refresh = duration(
            &format!("{origin_file}: `schedules.refresh`"),
            sched.refresh.as_deref().unwrap_or("5m"),
        )?;
        if schedule_tick < Duration::from_millis(100) || schedule_tick > Duration::from_secs(60) {
            return Err(
                "`schedules.tick` must be 100ms to 60s; hint: the default `10s` checks every slot of a per-minute cron in time"
                    .to_owned(),
            );
        }

        Ok(Config {
            vars,
            schedules: sched.pipelines,
            schedule_tick,
            schedule_refresh,
            listen,
            data_dir,
            store_path,
            synchronous,
            tokens,
            github_secret,
            gitlab_token,
            max_runs,
            jobs,
            max_attempts,
            backoff,
            max_backoff,
            lease,
            worker_id,
            notify,
            notify_secret,
            notify_attempts,
            memory_limit_mb,
            allow_local_repos,
            secrets,
            keep_workspaces,
        })
    }
}

/// Notification URLs must be `http://` or `https://`.
pub fn check_url(url: &str) -> Result<(), String> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        _ => Err(format!(
            "`{url}` is not an http(s) URL; hint: notifications are POSTed to `http://` or `https://` URLs"
        )),
    }
}

fn read_file(path: &Path) -> Result<File, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the configuration `{}`: {e}", path.display()))?;
    let data = kiln_pipeline::parse_data(&path.display().to_string(), &text)
        .map_err(|d| kiln_pipeline::render(&d))?;
    if data.value.is_null() {
        return Ok(File::default());
    }
    let file = serde_path_to_error::deserialize::<_, File>(&data.value).map_err(|e| {
        let pointer: String = e
            .path()
            .iter()
            .filter_map(|seg| match seg {
                serde_path_to_error::Segment::Map { key } => Some(format!("/{key}")),
                serde_path_to_error::Segment::Seq { index } => Some(format!("/{index}")),
                _ => None,
            })
            .collect();
        let message = e.inner().to_string();
        let diag = data.error(
            &pointer,
            format!("`{}`: {message}", e.path()),
            Some("see \"kiln serve\" in README.md for the keys and their values".to_owned()),
        );
        kiln_pipeline::render(&[diag])
    })?;
    check_schedules(&file, &data)?;
    Ok(file)
}

/// `schedules.pipelines`: unique names, a repository URL, a relative pipeline path.
fn check_schedules(file: &File, data: &kiln_pipeline::Data) -> Result<(), String> {
    let Some(s) = &file.schedules else {
        return Ok(());
    };
    let mut diags = Vec::new();
    for (i, p) in s.pipelines.iter().enumerate() {
        let at = |key: &str| format!("/schedules/pipelines/{i}/{key}");
        if p.name.trim().is_empty() {
            diags.push(data.error(
                &at("name"),
                "`name` is empty".into(),
                Some("name the schedule, e.g. `nightly-cleanup`".into()),
            ));
        } else if s.pipelines[..i].iter().any(|q| q.name == p.name) {
            diags.push(data.error(
                &at("name"),
                format!("schedule `{}` is listed twice", p.name),
                Some("names must be unique: they key the durable record of fired slots".into()),
            ));
        }
        if let Err(e) = kiln_git::RemoteUrl::parse(&p.repo) {
            diags.push(data.error(
                &at("repo"),
                format!("`{}`: {e}", p.repo),
                Some("give the repository's clone URL".into()),
            ));
        }
        if p.pipeline.is_empty()
            || p.pipeline.starts_with('/')
            || p.pipeline.split('/').any(|c| c == "..")
        {
            diags.push(data.error(
                &at("pipeline"),
                format!("`{}` is not a relative path in the repository", p.pipeline),
                Some("e.g. `.kiln/cleanup.yaml`".into()),
            ));
        }
    }
    if diags.is_empty() {
        Ok(())
    } else {
        Err(kiln_pipeline::render(&diags))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_key_in_the_file_is_reported_with_its_line_and_column() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("kiln.yaml");
        std::fs::write(&path, "listen: 127.0.0.1:9000\nqueue:\n  max_runz: 3\n").expect("write");
        let err = read_file(&path).expect_err("unknown key");
        assert!(err.contains("kiln.yaml:3:"), "{err}");
        assert!(err.contains("max_runz"), "{err}");
    }

    #[test]
    fn a_schedule_listed_twice_or_without_a_relative_pipeline_is_reported_where_it_is() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("kiln.yaml");
        std::fs::write(
            &path,
            "schedules:\n  pipelines:\n    - { name: nightly, repo: \"https://git.example.com/a.git\", pipeline: a.yaml }\n    - name: nightly\n      repo: \"https://git.example.com/a.git\"\n      pipeline: /etc/passwd\n",
        )
        .expect("write");
        let err = read_file(&path).expect_err("bad schedules");
        assert!(err.contains("kiln.yaml:4:13"), "{err}");
        assert!(err.contains("schedule `nightly` is listed twice"), "{err}");
        assert!(err.contains("kiln.yaml:6:17"), "{err}");
    }

    #[test]
    fn a_wrong_type_points_at_the_value() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("kiln.yaml");
        std::fs::write(&path, "queue:\n  max_runs: many\n").expect("write");
        let err = read_file(&path).expect_err("wrong type");
        assert!(err.contains("kiln.yaml:2:13"), "{err}");
    }
}
