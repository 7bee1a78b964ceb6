//! Seed 000 end to end: the committed `pipelines/seed-000-nx-monorepo.yaml`, copied into an Nx
//! monorepo's `.kiln/` on the project's git server, started by real GitHub push payloads
//! (`@octokit/webhooks-examples`, signed by `@octokit/webhooks-methods`) sent to `kiln serve`;
//! each affected application is built by dockerd's BuildKit and pushed to the registry with
//! basic auth, where skopeo reads the images back. Unaffected applications are never built.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::image::inspect;
use crate::serve::webhooks::{deliver, example, sign};
use crate::serve::{GITHUB_SECRET, Server};
use crate::support::{repo, services_env};

pub(crate) use crate::support::git;

/// A bare repository on the git server, removed at the end of the test.
pub(crate) struct Bare(pub PathBuf);

impl Bare {
    /// Commits everything in `work` as the first commit of `main`, creates this bare repository
    /// and pushes `main` to it; the commit's SHA.
    pub(crate) fn publish(&self, work: &Path, message: &str) -> String {
        let bare = self.0.to_str().expect("utf-8");
        git(work, &["init", "-q", "-b", "main"]);
        git(work, &["add", "-A"]);
        git(work, &["commit", "-q", "-m", message]);
        git(
            Path::new("/"),
            &["init", "-q", "--bare", "-b", "main", bare],
        );
        git(work, &["push", "-q", bare, "main"]);
        git(work, &["rev-parse", "HEAD"])
    }
}

impl Drop for Bare {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `text` with `from` replaced by `to`, which must occur exactly once: the committed pipeline
/// changes only where its comments say to change it.
fn set(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "pipelines/seed-000-nx-monorepo.yaml should hold `{from}` once"
    );
    text.replacen(from, to, 1)
}

fn write(root: &Path, path: &str, content: &str) {
    let file = root.join(path);
    std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
    std::fs::write(file, content).expect("write");
}

/// An Nx 24 workspace as `create-nx-workspace` lays it out (TS import analysis through
/// `@nx/js` and `tsconfig.base.json` paths): apps `web` and `api` import the library `shared`,
/// app `admin` imports nothing; each app has a Dockerfile.
fn nx_workspace(root: &Path, base_image: &str) {
    write(
        root,
        "package.json",
        r#"{
  "name": "@acme/source",
  "version": "0.0.0",
  "private": true,
  "devDependencies": { "@nx/js": "24.0.6", "nx": "24.0.6", "typescript": "5.9.3" }
}
"#,
    );
    write(
        root,
        "nx.json",
        r#"{
  "$schema": "./node_modules/nx/schemas/nx-schema.json",
  "defaultBase": "main",
  "namedInputs": {
    "default": ["{projectRoot}/**/*", "sharedGlobals"],
    "sharedGlobals": []
  }
}
"#,
    );
    write(
        root,
        "tsconfig.base.json",
        r#"{
  "compilerOptions": {
    "baseUrl": ".",
    "paths": { "@acme/shared": ["libs/shared/src/index.ts"] }
  }
}
"#,
    );
    write(root, "README.md", "# acme\n");
    write(
        root,
        "libs/shared/project.json",
        r#"{ "name": "shared", "projectType": "library", "sourceRoot": "libs/shared/src" }
"#,
    );
    write(
        root,
        "libs/shared/src/index.ts",
        "export const greeting = 'hello';\n",
    );
    let with_lib = "COPY libs/shared/src/ /libs/shared/\n";
    for (app, source, lib) in [
        (
            "web",
            "import { greeting } from '@acme/shared';\nconsole.log(greeting, 'web');\n",
            with_lib,
        ),
        (
            "api",
            "import { greeting } from '@acme/shared';\nconsole.log(greeting, 'api');\n",
            with_lib,
        ),
        ("admin", "console.log('admin');\n", ""),
    ] {
        write(
            root,
            &format!("apps/{app}/project.json"),
            &format!(
                "{{ \"name\": \"{app}\", \"projectType\": \"application\", \"sourceRoot\": \"apps/{app}/src\" }}\n"
            ),
        );
        write(root, &format!("apps/{app}/src/main.ts"), source);
        write(
            root,
            &format!("apps/{app}/Dockerfile"),
            &format!("FROM {base_image}\nCOPY apps/{app}/src/ /app/\n{lib}RUN cat /app/main.ts\n"),
        );
    }
}

struct Fixture {
    server: Server,
    bare: Bare,
    work: PathBuf,
    url: String,
    /// `127.0.0.1:PORT/seed-000-PID`: where the apps' images go.
    images: String,
    creds: String,
}

impl Fixture {
    fn commit(&self, path: &str, content: &str, message: &str) -> String {
        write(&self.work, path, content);
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-q", "-m", message]);
        let sha = git(&self.work, &["rev-parse", "HEAD"]);
        git(
            &self.work,
            &[
                "push",
                "-q",
                self.bare.0.to_str().expect("utf-8"),
                "HEAD:main",
            ],
        );
        sha
    }

    /// Deliver GitHub's example push, edited to say `before..after` on `branch`; the run
    /// ids the event started.
    fn push(&self, delivery: &str, branch: &str, before: &str, after: &str) -> Vec<String> {
        let mut payload = example("push", "-");
        payload["ref"] = json!(format!("refs/heads/{branch}"));
        payload["before"] = json!(before);
        payload["after"] = json!(after);
        payload["created"] = json!(false);
        payload["head_commit"]["id"] = json!(after);
        payload["repository"]["clone_url"] = json!(self.url);
        let body = payload.to_string();
        let r = deliver(
            &self.server,
            "push",
            delivery,
            &body,
            Some(&sign(GITHUB_SECRET, &body)),
        );
        assert_eq!(r.status, 202, "{}", r.body);
        let event_id = r.json()["event_id"].as_str().expect("event id").to_owned();
        let deadline = Instant::now() + Duration::from_secs(60);
        let event = loop {
            let e = self.server.get(&format!("/v1/events/{event_id}")).json();
            if e["state"] != "pending" {
                break e;
            }
            assert!(
                Instant::now() < deadline,
                "event not processed: {e:#}\n{}",
                self.server.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(event["state"], "done", "{event:#}");
        event["runs"]
            .as_array()
            .expect("runs")
            .iter()
            .filter_map(|r| r.as_str().map(str::to_owned))
            .collect()
    }

    /// The one run a push started, finished and succeeded.
    fn run_of(&self, runs: &[String]) -> Value {
        assert_eq!(runs.len(), 1, "one pipeline matches: {runs:?}");
        let run = self
            .server
            .wait_finished(&runs[0], Duration::from_secs(120));
        assert_eq!(
            run["state"],
            "succeeded",
            "{run:#}\n{}",
            self.server.get(&format!("/v1/runs/{}/logs", runs[0])).body
        );
        assert_eq!(run["pipeline"], "seed-000-nx-monorepo");
        assert_eq!(run["pipeline_path"], ".kiln/seed-000-nx-monorepo.yaml");
        run
    }

    /// Assert that `app:tag` in the registry was built from `apps/<app>/Dockerfile`: its
    /// config's history holds that Dockerfile's `COPY`.
    fn assert_built_from_its_dockerfile(&self, app: &str, tag: &str) {
        let config = inspect(
            &format!("{}/{app}:{tag}", self.images),
            Some(&self.creds),
            true,
        )
        .unwrap_or_else(|e| panic!("{app}:{tag} is not in the registry: {e}"));
        let history = config["history"].to_string();
        assert!(
            history.contains(&format!("COPY apps/{app}/src/ /app/")),
            "{app}:{tag}: {history}"
        );
    }

    fn image(&self, app: &str, tag: &str) -> Result<Value, String> {
        inspect(
            &format!("{}/{app}:{tag}", self.images),
            Some(&self.creds),
            false,
        )
    }
}

/// The apps the run built and the apps it pushed (from the matrix instances' ids).
fn instances(run: &Value, step: &str) -> BTreeSet<String> {
    run["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["state"] == "succeeded" || s["state"] == "cached")
        .filter_map(|s| {
            s["id"]
                .as_str()?
                .strip_prefix(&format!("{step}[app="))?
                .strip_suffix(']')
                .map(str::to_owned)
        })
        .collect()
}

fn step<'a>(run: &'a Value, id: &str) -> &'a Value {
    run["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == id))
        .unwrap_or_else(|| panic!("no step `{id}` in {run:#}"))
}

fn set_of(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

fn start(home: &Path) -> Fixture {
    let git_vars = services_env("git");
    let docker = services_env("docker");
    let registry = services_env("registry");
    let pid = std::process::id();
    let name = format!("seed-000-{pid}.git");
    let bare = Bare(PathBuf::from(&git_vars["KILN_GIT_REPOS"]).join(&name));
    let url = format!("{}/{name}", git_vars["KILN_GIT_HTTP_ANON_URL"]);
    let git_endpoint = git_vars["KILN_GIT_HTTP_URL"]
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let registry_host = registry["KILN_REGISTRY_AUTH"].clone();
    let images = format!("{registry_host}/seed-000-{pid}");

    // The committed pipeline, with this machine's hosts where its comments say to set them.
    let committed = std::fs::read_to_string(repo().join("pipelines/seed-000-nx-monorepo.yaml"))
        .expect("pipelines/seed-000-nx-monorepo.yaml");
    let pipeline = set(
        &committed,
        "\"github.com:443\"",
        &format!("\"{git_endpoint}\""),
    );
    let pipeline = set(
        &pipeline,
        "\"registry.example.com:443\"",
        &format!("\"{registry_host}\""),
    );
    let pipeline = set(
        &pipeline,
        "REGISTRY: registry.example.com/acme\n",
        &format!("REGISTRY: {images}\n"),
    );
    let pipeline = set(
        &pipeline,
        "REGISTRY_USER: ci\n",
        &format!("REGISTRY_USER: {}\n", registry["KILN_REGISTRY_USER"]),
    );

    let work = home.join("monorepo");
    nx_workspace(&work, &docker["KILN_BASE_IMAGE"]);
    write(&work, ".kiln/seed-000-nx-monorepo.yaml", &pipeline);
    bare.publish(&work, "workspace");

    let server = Server::start(
        home,
        "serve",
        &[
            (
                "KILN_BUILDKIT_ADDR",
                format!("docker+{}", docker["KILN_DOCKER_HOST"]),
            ),
            ("KILN_SECRETS", "REGISTRY_PASSWORD".to_owned()),
            (
                "REGISTRY_PASSWORD",
                registry["KILN_REGISTRY_PASSWORD"].clone(),
            ),
        ],
    );
    let creds = format!(
        "{}:{}",
        registry["KILN_REGISTRY_USER"], registry["KILN_REGISTRY_PASSWORD"]
    );
    Fixture {
        server,
        bare,
        work,
        url,
        images,
        creds,
    }
}

#[test]
fn a_push_webhook_builds_and_pushes_only_the_affected_apps_of_an_nx_monorepo() {
    let home = tempfile::tempdir().expect("tmp");
    let f = start(home.path());
    let first = git(&f.work, &["rev-parse", "HEAD"]);
    // Unique content, so an image from an earlier test run cannot stand in for this one.
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();

    // 1. A change to `web` alone: only `web` is built and pushed.
    let web_change = f.commit(
        "apps/web/src/main.ts",
        &format!(
            "import {{ greeting }} from '@acme/shared';\nconsole.log(greeting, 'web', {nonce});\n"
        ),
        "web: say the nonce",
    );
    let run = f.run_of(&f.push("push-1", "main", &first, &web_change));
    assert_eq!(run["trigger"], "github");
    assert_eq!(run["sha"], web_change.as_str());
    assert_eq!(
        step(&run, "affected")["outputs"]["apps"],
        json!(["web"]),
        "{run:#}"
    );
    assert_eq!(instances(&run, "image"), set_of(&["web"]), "{run:#}");
    assert_eq!(instances(&run, "publish"), set_of(&["web"]), "{run:#}");
    let pushed = step(&run, "publish[app=web]")["outputs"]["digest"]
        .as_str()
        .expect("digest")
        .to_owned();
    let web = f.image("web", &web_change).expect("web is in the registry");
    assert_eq!(web["Digest"], pushed.as_str());
    assert_eq!(
        web["Labels"]["org.opencontainers.image.revision"],
        web_change.as_str()
    );
    assert_eq!(
        f.image("web", "main").expect("the branch tag")["Digest"],
        pushed.as_str()
    );
    f.assert_built_from_its_dockerfile("web", &web_change);
    for app in ["api", "admin"] {
        let absent = f.image(app, &web_change);
        assert!(absent.is_err(), "{app} was not affected: {absent:?}");
    }

    // 2. A change to the library: its dependents `api` and `web` are built, `admin` is not.
    let lib_change = f.commit(
        "libs/shared/src/index.ts",
        &format!("export const greeting = 'hello {nonce}';\n"),
        "shared: a new greeting",
    );
    let lib_delivery = f.push("push-2", "main", &web_change, &lib_change);
    let run = f.run_of(&lib_delivery);
    assert_eq!(instances(&run, "image"), set_of(&["api", "web"]), "{run:#}");
    assert_eq!(instances(&run, "publish"), set_of(&["api", "web"]));
    assert_eq!(step(&run, "affected")["state"], "succeeded");
    let mut lib_digests = Vec::new();
    for app in ["api", "web"] {
        let digest = step(&run, &format!("publish[app={app}]"))["outputs"]["digest"].clone();
        let image = f.image(app, &lib_change).expect("in the registry");
        assert_eq!(image["Digest"], digest, "{app}");
        f.assert_built_from_its_dockerfile(app, &lib_change);
        lib_digests.push(digest);
    }
    assert!(f.image("admin", &lib_change).is_err());
    assert!(f.image("admin", "main").is_err(), "admin was never built");

    // 3. A change to `admin` alone.
    let admin_change = f.commit(
        "apps/admin/src/main.ts",
        &format!("console.log('admin', {nonce});\n"),
        "admin: say the nonce",
    );
    let run = f.run_of(&f.push("push-3", "main", &lib_change, &admin_change));
    assert_eq!(instances(&run, "image"), set_of(&["admin"]), "{run:#}");
    f.assert_built_from_its_dockerfile("admin", &admin_change);
    for app in ["api", "web"] {
        assert!(f.image(app, &admin_change).is_err(), "{app}");
    }

    // 4. A change outside every project: nothing to build, and the run still succeeds.
    let readme = f.commit("README.md", "# acme monorepo\n", "docs");
    let run = f.run_of(&f.push("push-4", "main", &admin_change, &readme));
    assert_eq!(step(&run, "affected")["outputs"]["apps"], json!([]));
    assert_eq!(step(&run, "image")["state"], "skipped", "{run:#}");
    assert_eq!(step(&run, "publish")["state"], "skipped", "{run:#}");

    // 5. The library push again, as another webhook delivery (a second hook on the
    //    repository, a relay's retry): nothing changed, so the step cache answers
    //    `nx-affected`; the builds and pushes run again (they have side effects), BuildKit
    //    finds every layer cached and the registry gets the same digests.
    let hits_before = cache_hits(&f.server);
    let again = f.push("push-2-again", "main", &web_change, &lib_change);
    assert_ne!(again, lib_delivery);
    let run = f.run_of(&again);
    let affected = step(&run, "affected");
    assert_eq!(affected["state"], "cached", "{run:#}");
    assert_eq!(affected["cache"]["status"], "hit", "{affected:#}");
    assert_eq!(affected["outputs"]["apps"], json!(["api", "web"]));
    assert_eq!(step(&run, "src")["state"], "succeeded");
    assert_eq!(instances(&run, "image"), set_of(&["api", "web"]));
    for (app, digest) in ["api", "web"].iter().zip(&lib_digests) {
        assert_eq!(
            &step(&run, &format!("publish[app={app}]"))["outputs"]["digest"],
            digest,
            "{app}"
        );
    }
    let logs = f.server.get(&format!("/v1/runs/{}/logs", again[0])).body;
    assert!(
        logs.contains("CACHED"),
        "BuildKit reused its layers:\n{logs}"
    );
    assert!(cache_hits(&f.server) > hits_before);

    // A push to another branch starts nothing: `on.push.branches` is `[main]`.
    assert!(f.push("push-dev", "dev", &lib_change, &readme).is_empty());
}

/// `kiln_step_cache_hits_total` from `/metrics`.
fn cache_hits(server: &Server) -> u64 {
    let m = crate::serve::http(&server.addr, "GET", "/metrics", &[], b"").body;
    m.lines()
        .find_map(|l| l.strip_prefix("kiln_step_cache_hits_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}
