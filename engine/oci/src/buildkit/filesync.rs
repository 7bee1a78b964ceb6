//! The `FileSync.DiffCopy` service of a session: local directories sent to BuildKit the way
//! `docker build` and `buildctl` send them, with the fsutil packet protocol.
//!
//! 1. Kiln walks the directory BuildKit asked for (`dir-name`: `context` or `dockerfile`),
//!    applying the patterns BuildKit sent (`include-patterns`, `exclude-patterns`: the
//!    frontend reads `.dockerignore` itself) and the context's own `.dockerignore`, and sends
//!    one `STAT` packet per entry in `filepath.Walk` order (depth first, names sorted), then an
//!    empty `STAT`.
//! 2. BuildKit compares the stats with what it received last time under the session's shared
//!    key and sends a `REQ` for each regular file it lacks; Kiln answers with `DATA` packets
//!    and an empty `DATA` to end each file. An unchanged context costs only the stats.
//! 3. BuildKit's `FIN` ends the exchange; Kiln answers `FIN`.
//!
//! Stat modes are Go's `os.FileMode` bits, as fsutil encodes them. Symbolic links are sent as
//! links (never followed); sockets, FIFOs and devices are skipped.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use bollard_buildkit_proto::fsutil::types::packet::PacketType;
use bollard_buildkit_proto::fsutil::types::{Packet, Stat};
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use crate::context::DockerIgnore;

/// Bytes of file content per `DATA` packet.
const CHUNK: usize = 128 << 10;

// Go's `os.FileMode` type bits.
const GO_MODE_DIR: u32 = 1 << 31;
const GO_MODE_SYMLINK: u32 = 1 << 27;
const GO_MODE_SETUID: u32 = 1 << 23;
const GO_MODE_SETGID: u32 = 1 << 22;
const GO_MODE_STICKY: u32 = 1 << 20;

/// A directory offered to BuildKit under a name.
#[derive(Debug, Clone)]
pub(crate) struct SyncedDir {
    pub(crate) path: PathBuf,
    /// The context's `.dockerignore`, applied on top of BuildKit's own patterns.
    pub(crate) ignore: Option<DockerIgnore>,
}

/// One walked entry: its stat and, for regular files, where to read it.
struct Entry {
    stat: Stat,
    file: Option<PathBuf>,
}

/// The walk's filters.
struct Filter {
    include: Option<DockerIgnore>,
    exclude: Vec<DockerIgnore>,
}

impl Filter {
    fn excluded(&self, rel: &str) -> bool {
        self.exclude.iter().any(|e| e.is_excluded(rel))
    }

    /// Whether the walk must go into the excluded directory `rel` (an exception may apply).
    fn walk_excluded(&self, rel: &str) -> bool {
        self.exclude
            .iter()
            .filter(|e| e.is_excluded(rel))
            .all(|e| e.may_reinclude_under(rel))
    }

    /// `Some(true)`: included; `Some(false)`: not, but something below may be; `None`: not.
    fn included(&self, rel: &str, is_dir: bool) -> Option<bool> {
        match &self.include {
            None => Some(true),
            Some(inc) if inc.is_excluded(rel) => Some(true),
            Some(inc) if is_dir && inc.may_match_under(rel) => Some(false),
            Some(_) => None,
        }
    }
}

fn go_mode(meta: &std::fs::Metadata) -> Option<u32> {
    let ft = meta.file_type();
    let mode = meta.mode();
    let mut out = mode & 0o777;
    if mode & 0o4000 != 0 {
        out |= GO_MODE_SETUID;
    }
    if mode & 0o2000 != 0 {
        out |= GO_MODE_SETGID;
    }
    if mode & 0o1000 != 0 {
        out |= GO_MODE_STICKY;
    }
    if ft.is_dir() {
        Some(out | GO_MODE_DIR)
    } else if ft.is_symlink() {
        Some(out | GO_MODE_SYMLINK)
    } else if ft.is_file() {
        Some(out)
    } else {
        None
    }
}

fn stat_of(rel: &str, meta: &std::fs::Metadata, full: &Path) -> std::io::Result<Option<Stat>> {
    let Some(mode) = go_mode(meta) else {
        return Ok(None);
    };
    let mut stat = Stat {
        path: rel.to_string(),
        mode,
        uid: meta.uid(),
        gid: meta.gid(),
        size: 0,
        mod_time: meta.mtime().saturating_mul(1_000_000_000) + meta.mtime_nsec(),
        linkname: String::new(),
        devmajor: 0,
        devminor: 0,
        xattrs: HashMap::new(),
    };
    if !meta.is_dir() {
        stat.size = i64::try_from(meta.len()).unwrap_or(i64::MAX);
    }
    if meta.file_type().is_symlink() {
        stat.linkname = std::fs::read_link(full)?.to_string_lossy().into_owned();
    }
    Ok(Some(stat))
}

/// Walks `root` depth first with sorted names (Go's `filepath.Walk` order), keeping what the
/// filter lets through; parent directories of kept entries are kept too.
fn walk(root: &Path, filter: &Filter) -> std::io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    let mut pending: Vec<Entry> = Vec::new();
    walk_dir(root, "", filter, &mut out, &mut pending)?;
    Ok(out)
}

fn walk_dir(
    dir: &Path,
    rel_dir: &str,
    filter: &Filter,
    out: &mut Vec<Entry>,
    pending: &mut Vec<Entry>,
) -> std::io::Result<()> {
    let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
    for name in names {
        let Some(name_str) = name.to_str() else {
            continue;
        };
        let rel = if rel_dir.is_empty() {
            name_str.to_string()
        } else {
            format!("{rel_dir}/{name_str}")
        };
        let full = dir.join(&name);
        let meta = std::fs::symlink_metadata(&full)?;
        let is_dir = meta.is_dir();
        let excluded = filter.excluded(&rel);
        if excluded && !(is_dir && filter.walk_excluded(&rel)) {
            continue;
        }
        let Some(included) = filter.included(&rel, is_dir) else {
            continue;
        };
        let Some(stat) = stat_of(&rel, &meta, &full)? else {
            continue;
        };
        let entry = Entry {
            stat,
            file: meta.is_file().then(|| full.clone()),
        };
        if is_dir {
            // Sent only once something inside is (or when it is itself kept and included).
            let depth = pending.len();
            pending.push(entry);
            if !excluded && included {
                flush(out, pending);
            }
            walk_dir(&full, &rel, filter, out, pending)?;
            pending.truncate(depth);
        } else if !excluded && included {
            flush(out, pending);
            out.push(entry);
        }
    }
    Ok(())
}

/// Emits the directories waiting for a descendant.
fn flush(out: &mut Vec<Entry>, pending: &mut [Entry]) {
    for dir in pending.iter_mut() {
        if dir.file.is_none() && !dir.stat.path.is_empty() {
            out.push(Entry {
                stat: std::mem::take(&mut dir.stat),
                file: None,
            });
        }
    }
}

/// Where the symbolic link `rel` in `root` points, relative to `root`, when it stays inside.
fn link_target(root: &Path, rel: &str) -> Option<String> {
    let link = root.join(rel);
    let target = std::fs::read_link(&link).ok()?;
    let base = Path::new(rel).parent().unwrap_or(Path::new(""));
    let joined = if target.is_absolute() {
        return None;
    } else {
        base.join(target)
    };
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in joined.components() {
        match c {
            std::path::Component::Normal(p) => parts.push(p),
            std::path::Component::ParentDir => {
                parts.pop()?;
            }
            std::path::Component::CurDir => {}
            _ => return None,
        }
    }
    let out: Vec<String> = parts
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    (!out.is_empty()).then(|| out.join("/"))
}

fn packet(kind: PacketType, id: u32, stat: Option<Stat>, data: Vec<u8>) -> Packet {
    Packet {
        r#type: kind as i32,
        stat,
        id,
        data,
    }
}

/// Values of metadata `key` (gRPC allows it repeated).
fn values(request: &Request<Streaming<Packet>>, key: &str) -> Vec<String> {
    request
        .metadata()
        .get_all(key)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_string)
        .collect()
}

fn patterns(list: &[String]) -> Result<Option<DockerIgnore>, Status> {
    if list.is_empty() {
        return Ok(None);
    }
    DockerIgnore::parse(&list.join("\n"))
        .map(Some)
        .map_err(|e| Status::invalid_argument(format!("patterns from BuildKit: {e}")))
}

pub(crate) type DiffCopyStream = Pin<Box<dyn Stream<Item = Result<Packet, Status>> + Send>>;

/// Serves one `DiffCopy` of the directory BuildKit names.
pub(crate) async fn diff_copy(
    dirs: &HashMap<String, SyncedDir>,
    request: Request<Streaming<Packet>>,
) -> Result<Response<DiffCopyStream>, Status> {
    let name = values(&request, "dir-name")
        .into_iter()
        .next()
        .unwrap_or_default();
    let Some(dir) = dirs.get(&name).cloned() else {
        return Err(Status::not_found(format!(
            "no directory `{name}` in this session"
        )));
    };
    // `followpaths` (what older BuildKit sends to narrow a transfer to a COPY's sources and to
    // the Dockerfile) include like patterns, and a symbolic link among them brings its target.
    let mut include_list = values(&request, "include-patterns");
    for follow in values(&request, "followpaths") {
        if let Some(target) = link_target(&dir.path, &follow) {
            include_list.push(target);
        }
        include_list.push(follow);
    }
    let include = patterns(&include_list)?;
    let mut exclude: Vec<DockerIgnore> = patterns(&values(&request, "exclude-patterns"))?
        .into_iter()
        .collect();
    exclude.extend(dir.ignore.clone());
    let filter = Filter { include, exclude };
    let root = dir.path.clone();
    let entries = tokio::task::spawn_blocking(move || walk(&root, &filter))
        .await
        .map_err(|e| Status::internal(format!("walking the context stopped: {e}")))?
        .map_err(|e| Status::internal(format!("cannot read `{}`: {e}", dir.path.display())))?;
    tracing::debug!(dir = %name, entries = entries.len(), "diffcopy walked");

    let (tx, rx) = mpsc::channel::<Result<Packet, Status>>(64);
    let mut incoming = request.into_inner();
    tokio::spawn(async move {
        let mut files: HashMap<u32, PathBuf> = HashMap::new();
        for (i, entry) in entries.into_iter().enumerate() {
            let id = u32::try_from(i).unwrap_or(u32::MAX);
            if let Some(path) = entry.file {
                files.insert(id, path);
            }
            if tx
                .send(Ok(packet(
                    PacketType::PacketStat,
                    0,
                    Some(entry.stat),
                    Vec::new(),
                )))
                .await
                .is_err()
            {
                return;
            }
        }
        if tx
            .send(Ok(packet(PacketType::PacketStat, 0, None, Vec::new())))
            .await
            .is_err()
        {
            return;
        }
        // Requests are read as they come, apart from the sending: BuildKit asks for many
        // small files at once, and unread small frames count against HTTP/2's flood guard.
        let (req_tx, mut req_rx) = mpsc::unbounded_channel::<Packet>();
        let reader = tokio::spawn(async move {
            while let Some(Ok(p)) = incoming.next().await {
                if req_tx.send(p).is_err() {
                    break;
                }
            }
        });
        let _reader = super::AbortOnDrop(reader);
        while let Some(p) = req_rx.recv().await {
            match PacketType::try_from(p.r#type) {
                Ok(PacketType::PacketReq) => {
                    let Some(path) = files.remove(&p.id) else {
                        let _ = tx
                            .send(Err(Status::invalid_argument(format!(
                                "BuildKit asked for unknown file id {}",
                                p.id
                            ))))
                            .await;
                        return;
                    };
                    if let Err(e) = send_file(&tx, p.id, &path).await {
                        let _ = tx
                            .send(Err(Status::internal(format!(
                                "cannot read `{}`: {e}",
                                path.display()
                            ))))
                            .await;
                        return;
                    }
                }
                Ok(PacketType::PacketFin) => {
                    let _ = tx
                        .send(Ok(packet(PacketType::PacketFin, 0, None, Vec::new())))
                        .await;
                    return;
                }
                Ok(PacketType::PacketErr) => return,
                _ => {}
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Ok(Response::new(Box::pin(stream)))
}

async fn send_file(
    tx: &mpsc::Sender<Result<Packet, Status>>,
    id: u32,
    path: &Path,
) -> std::io::Result<()> {
    let mut file = tokio::fs::File::open(path).await?;
    loop {
        let mut buf = vec![0u8; CHUNK];
        let n = file.read(&mut buf).await?;
        buf.truncate(n);
        let done = n == 0;
        // The empty DATA packet ends the file.
        if tx
            .send(Ok(packet(PacketType::PacketData, id, None, buf)))
            .await
            .is_err()
        {
            return Err(std::io::Error::other("the session closed"));
        }
        if done {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(entries: &[Entry]) -> Vec<&str> {
        entries.iter().map(|e| e.stat.path.as_str()).collect()
    }

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tmp");
        for f in ["a.txt", "a/b", "a/c/d", "logs/x.log", "logs/keep.md", "z"] {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, f).expect("write");
        }
        std::os::unix::fs::symlink("a.txt", dir.path().join("link")).expect("symlink");
        dir
    }

    #[test]
    fn the_walk_is_depth_first_with_sorted_names_as_go_walks() {
        let dir = tree();
        let filter = Filter {
            include: None,
            exclude: Vec::new(),
        };
        let entries = walk(dir.path(), &filter).expect("walk");
        assert_eq!(
            paths(&entries),
            [
                "a",
                "a/b",
                "a/c",
                "a/c/d",
                "a.txt",
                "link",
                "logs",
                "logs/keep.md",
                "logs/x.log",
                "z"
            ]
        );
        let link = entries
            .iter()
            .find(|e| e.stat.path == "link")
            .expect("link");
        assert_eq!(link.stat.mode & GO_MODE_SYMLINK, GO_MODE_SYMLINK);
        assert_eq!(link.stat.linkname, "a.txt");
        assert!(link.file.is_none());
        let a = &entries[0];
        assert_eq!(a.stat.mode & GO_MODE_DIR, GO_MODE_DIR);
        assert_eq!(a.stat.size, 0);
    }

    #[test]
    fn excludes_with_exceptions_and_includes_keep_the_parents_they_need() {
        let dir = tree();
        let filter = Filter {
            include: None,
            exclude: vec![DockerIgnore::parse("logs\n!logs/keep.md\na/c\n").expect("patterns")],
        };
        let entries = walk(dir.path(), &filter).expect("walk");
        assert_eq!(
            paths(&entries),
            ["a", "a/b", "a.txt", "link", "logs", "logs/keep.md", "z"]
        );
        let filter = Filter {
            include: Some(DockerIgnore::parse("a/c/d\nz\n").expect("patterns")),
            exclude: Vec::new(),
        };
        let entries = walk(dir.path(), &filter).expect("walk");
        assert_eq!(paths(&entries), ["a", "a/c", "a/c/d", "z"]);
    }
}
