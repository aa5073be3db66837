//! Development hot reload: watch PHP sources and reset the pools that run them.
//!
//! [`Reloader::start`] resolves the `reload` section's directories, puts an
//! inotify watch (notify's recommended watcher) on each directory it must see,
//! and [`Reloader::run`] turns file changes into pool resets: changes are
//! filtered by the target's `patterns` and `ignore`, editor temp files are
//! dropped, a burst of changes closer together than `debounce` makes one reload,
//! and each reload logs one line (`reload: app/Controller.php changed; resetting
//! http`) before it resets the affected pools make-before-break
//! ([`courser_pool::Pool::reset`]).
//!
//! Why we walk the tree ourselves instead of asking notify for a recursive watch:
//! a recursive watch would also watch every directory under `vendor/`,
//! `node_modules/` and `.git/`, which can run past the kernel's
//! `fs.inotify.max_user_watches` and whose churn (a `git` operation, a
//! `composer install`) is exactly what `ignore` is for. So each wanted directory
//! gets its own non-recursive watch, ignored ones get none, and a directory that
//! appears later (created, or moved in) is watched when its event arrives; the
//! matching files already inside it count as changes, since they were written
//! before its watch existed. Symbolic links below a watched directory are not
//! followed (the configured directories themselves may be links).
//!
//! Invariants:
//! - The notify callback never blocks and never does I/O: it forwards paths into
//!   a bounded channel; when the channel is full it raises a "lost events" flag
//!   instead, which (like the kernel's queue overflow) rescans the trees and
//!   reloads every target's pools, since what changed is unknown.
//! - One reload logs exactly one info line; the pools it names are the only
//!   pools it resets.
//! - A reload never takes the server down: watch errors after start are logged
//!   and watching goes on.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use courser_config::{ReloadConfig, ReloadTarget};
use courser_pool::Pool;
use notify::event::ModifyKind;
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Why the reloader could not start.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// A configured directory does not exist.
    #[error("{key}: directory {} does not exist; create it or remove it from {key}", path.display())]
    MissingDir {
        /// The config key, e.g. `reload.dirs`.
        key: String,
        /// The directory, resolved against the working directory.
        path: PathBuf,
    },
    /// A configured directory is a file or something else.
    #[error("{key}: {} is not a directory; list directories in {key}, the file patterns go in reload.patterns", path.display())]
    NotADirectory {
        /// The config key, e.g. `reload.dirs`.
        key: String,
        /// The path, resolved against the working directory.
        path: PathBuf,
    },
    /// A configured directory could not be inspected.
    #[error("{key}: cannot read {}: {source}", path.display())]
    Io {
        /// The config key, e.g. `reload.dirs`.
        key: String,
        /// The path, resolved against the working directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The OS file watcher could not be created.
    #[error("cannot start the file watcher for reload: {0}")]
    Watcher(#[source] notify::Error),
    /// A directory could not be watched.
    #[error("{key}: cannot watch {}: {source}{}", path.display(), watch_hint(source))]
    Watch {
        /// The config key, e.g. `reload.dirs`.
        key: String,
        /// The directory.
        path: PathBuf,
        /// What the watcher said.
        source: notify::Error,
    },
}

fn watch_hint(e: &notify::Error) -> &'static str {
    match e.kind {
        notify::ErrorKind::MaxFilesWatch => {
            "; raise the sysctl fs.inotify.max_user_watches or add big directories to reload.ignore"
        }
        _ => "",
    }
}

/// How many changes the callback can queue before it reports lost events.
const CHANNEL_CAPACITY: usize = 4096;

/// A burst that never pauses for `debounce` still reloads this many debounce
/// windows after its first change, so a busy writer cannot hold reloads off.
const MAX_BURST_WINDOWS: u32 = 10;

/// What the notify callback forwards.
#[derive(Debug)]
enum Msg {
    /// A path was touched. `structural` is set for creates, removes and renames:
    /// the path may be a new directory to watch, or a watched one that is gone.
    Path { path: PathBuf, structural: bool },
    /// The kernel dropped events (inotify queue overflow).
    Lost,
    /// The watcher reported an error.
    Error(notify::Error),
}

/// One `reload` target, resolved.
#[derive(Debug)]
struct Target {
    /// The config key of its directories, for messages.
    key: String,
    /// Canonical directories.
    roots: Vec<PathBuf>,
    recursive: bool,
    patterns: Vec<String>,
    ignore: Vec<String>,
    /// Indexes into the pool list.
    pools: Vec<usize>,
}

impl Target {
    /// Whether a change to `path` concerns this target.
    fn matches(&self, path: &Path) -> bool {
        self.roots.iter().any(|root| {
            let Ok(rel) = path.strip_prefix(root) else {
                return false;
            };
            let parts: Vec<_> = rel.components().collect();
            let Some(last) = parts.last() else {
                return false;
            };
            if !self.recursive && parts.len() > 1 {
                return false;
            }
            if parts
                .iter()
                .any(|c| self.ignore.iter().any(|i| c.as_os_str() == i.as_str()))
            {
                return false;
            }
            let name = last.as_os_str().to_string_lossy();
            !is_editor_temp(&name)
                && (self.patterns.is_empty() || self.patterns.iter().any(|p| name.ends_with(p)))
        })
    }

    /// Whether `dir` is a directory this target needs watched (a root, or below
    /// one when recursive, and not under an ignored component).
    fn wants_dir(&self, dir: &Path) -> bool {
        self.roots.iter().any(|root| match dir.strip_prefix(root) {
            Ok(rel) => {
                (self.recursive || rel.as_os_str().is_empty())
                    && !rel
                        .components()
                        .any(|c| self.ignore.iter().any(|i| c.as_os_str() == i.as_str()))
            }
            Err(_) => false,
        })
    }
}

/// Editor temp, swap and lock files: vim's `.swp`/`.swx` swap files and its
/// `4913` write probe, `~` backups, Emacs' `.#name` lock links.
fn is_editor_temp(name: &str) -> bool {
    name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".swx")
        || name == "4913"
        || name.starts_with(".#")
}

/// The watcher and the directories it watches; moved into a blocking task
/// while a new tree is walked.
struct Watch {
    watcher: RecommendedWatcher,
    watched: HashSet<PathBuf>,
    targets: Arc<Vec<Target>>,
}

impl Watch {
    fn wants_dir(&self, dir: &Path) -> bool {
        self.targets.iter().any(|t| t.wants_dir(dir))
    }

    /// Watches `dir` and every wanted directory below it that is not watched
    /// yet; pushes the files found into `files`. Unreadable subdirectories are
    /// skipped with a warning; a failed watch stops the walk.
    fn watch_tree(&mut self, dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), notify::Error> {
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            if !self.watched.contains(&d) {
                self.watcher.watch(&d, RecursiveMode::NonRecursive)?;
                self.watched.insert(d.clone());
            }
            let entries = match std::fs::read_dir(&d) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(dir = %d.display(), error = %e, "reload: cannot list a directory; changes below it are not seen");
                    continue;
                }
            };
            for entry in entries.flatten() {
                let Ok(ft) = entry.file_type() else { continue };
                let p = entry.path();
                if ft.is_dir() {
                    if self.wants_dir(&p) {
                        stack.push(p);
                    }
                } else {
                    files.push(p);
                }
            }
        }
        Ok(())
    }

    /// Forgets `dir` and everything below it (it was removed or moved away; the
    /// kernel dropped those watches).
    fn forget(&mut self, dir: &Path) {
        if self.watched.contains(dir) {
            self.watched.retain(|w| !w.starts_with(dir));
        }
    }
}

/// A reload waiting for its burst to end.
#[derive(Debug)]
struct Pending {
    /// What triggered it, for the log line.
    trigger: String,
    changes: usize,
    pools: BTreeSet<usize>,
    first: Instant,
    deadline: Instant,
}

/// Watches the configured directories and resets pools when PHP files change.
pub struct Reloader {
    watch: Watch,
    rx: mpsc::Receiver<Msg>,
    lost: Arc<AtomicBool>,
    targets: Arc<Vec<Target>>,
    pools: Vec<Pool>,
    debounce: Duration,
    base: PathBuf,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("targets", &self.targets)
            .field(
                "pools",
                &self.pools.iter().map(Pool::name).collect::<Vec<_>>(),
            )
            .field("debounce", &self.debounce)
            .field("watched", &self.watch.watched.len())
            .finish()
    }
}

impl Reloader {
    /// Starts watching (notify's recommended watcher, inotify on Linux).
    /// Relative dirs are resolved against `base` (the server's working
    /// directory). A dir that does not exist is an error naming `reload.dirs`
    /// (or `reload.services.<plugin>.dirs`) and the path.
    pub fn start(
        cfg: &ReloadConfig,
        base: &Path,
        pools: Vec<Pool>,
    ) -> Result<Reloader, ReloadError> {
        let base = std::fs::canonicalize(base).unwrap_or_else(|_| base.to_path_buf());
        let mut targets = Vec::with_capacity(cfg.targets.len());
        for t in &cfg.targets {
            targets.push(resolve(t, &base, &pools)?);
        }
        let targets = Arc::new(targets);

        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let lost = Arc::new(AtomicBool::new(false));
        let flag = lost.clone();
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            forward(&tx, &flag, res)
        })
        .map_err(ReloadError::Watcher)?;

        let mut w = Watch {
            watcher,
            watched: HashSet::new(),
            targets: targets.clone(),
        };
        let mut ignored_files = Vec::new();
        for t in targets.iter() {
            for root in &t.roots {
                w.watch_tree(root, &mut ignored_files)
                    .map_err(|source| ReloadError::Watch {
                        key: t.key.clone(),
                        path: root.clone(),
                        source,
                    })?;
                ignored_files.clear();
            }
        }
        tracing::info!(
            directories = w.watched.len(),
            debounce_ms = cfg.debounce.as_millis() as u64,
            "reload: watching for changes"
        );
        Ok(Reloader {
            watch: w,
            rx,
            lost,
            targets,
            pools,
            debounce: cfg.debounce,
            base,
        })
    }

    /// Runs until shutdown: collects events, filters by patterns/ignore,
    /// debounces (a burst of changes within `debounce` is one reload), then
    /// resets the affected pools (the target's plugin, or all for `*`), logging
    /// one info line per reload naming the file that triggered it and the pools
    /// reset, e.g. `reload: app/Controller.php changed; resetting http`.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let Reloader {
            watch,
            mut rx,
            lost,
            targets,
            pools,
            debounce,
            base,
        } = self;
        let mut watch = Some(watch);
        let mut pending: Option<Pending> = None;
        let mut batch = Vec::new();
        loop {
            if *shutdown.borrow() {
                break;
            }
            let deadline = pending.as_ref().map(|p| p.deadline);
            tokio::select! {
                biased;
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                _ = sleep_until(deadline), if deadline.is_some() => {
                    if let Some(p) = pending.take() {
                        let names: Vec<&str> = p.pools.iter().map(|&i| pools[i].name()).collect();
                        tracing::info!(
                            file = %p.trigger,
                            pools = %names.join(", "),
                            changes = p.changes,
                            "reload: {} changed; resetting {}",
                            p.trigger,
                            names.join(", ")
                        );
                        let resets = futures_util::future::join_all(
                            p.pools.iter().map(|&i| pools[i].reset()),
                        );
                        tokio::select! {
                            _ = resets => {}
                            _ = stopped(&mut shutdown) => break,
                        }
                    }
                }
                n = rx.recv_many(&mut batch, CHANNEL_CAPACITY) => {
                    if n == 0 {
                        tracing::warn!("reload: the file watcher stopped; changes are no longer seen");
                        stopped(&mut shutdown).await;
                        break;
                    }
                    let mut changed = Vec::new();
                    let mut new_dirs = Vec::new();
                    let mut rescan = lost.swap(false, Ordering::AcqRel);
                    for msg in batch.drain(..) {
                        match msg {
                            Msg::Path { path, structural } => {
                                if structural {
                                    if let Some(w) = watch.as_mut() {
                                        match std::fs::symlink_metadata(&path) {
                                            Ok(m) if m.is_dir() => {
                                                if !w.watched.contains(&path) && w.wants_dir(&path) {
                                                    new_dirs.push(path);
                                                }
                                                continue;
                                            }
                                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                                                w.forget(&path)
                                            }
                                            _ => {}
                                        }
                                    }
                                }
                                changed.push(path);
                            }
                            Msg::Lost => rescan = true,
                            Msg::Error(e) => {
                                tracing::warn!(error = %e, "reload: the file watcher reported an error")
                            }
                        }
                    }
                    if rescan {
                        tracing::warn!("reload: the file watcher dropped events; rescanning and reloading every watched pool");
                        new_dirs = targets
                            .iter()
                            .filter(|t| t.recursive)
                            .flat_map(|t| t.roots.iter().cloned())
                            .collect();
                    }
                    if !new_dirs.is_empty() {
                        if let Some(w) = watch.take() {
                            let walk = tokio::task::spawn_blocking(move || {
                                let mut w = w;
                                let mut files = Vec::new();
                                for d in &new_dirs {
                                    if let Err(e) = w.watch_tree(d, &mut files) {
                                        tracing::warn!(dir = %d.display(), error = %e, "reload: cannot watch a new directory{}", watch_hint(&e));
                                    }
                                }
                                (w, files)
                            });
                            tokio::select! {
                                r = walk => match r {
                                    Ok((w, files)) => {
                                        watch = Some(w);
                                        // With a rescan every file is old news: the reload below covers them.
                                        if !rescan {
                                            changed.extend(files);
                                        }
                                    }
                                    Err(e) => tracing::warn!(error = %e, "reload: watching new directories failed; new directories are no longer watched"),
                                },
                                _ = stopped(&mut shutdown) => break,
                            }
                        }
                    }
                    let now = Instant::now();
                    if rescan && targets.iter().any(|t| !t.pools.is_empty()) {
                        let all: BTreeSet<usize> = targets.iter().flat_map(|t| t.pools.iter().copied()).collect();
                        note(&mut pending, "events were dropped, so every file".into(), all, now, debounce);
                    }
                    for path in changed {
                        let hit: BTreeSet<usize> = targets
                            .iter()
                            .filter(|t| t.matches(&path))
                            .flat_map(|t| t.pools.iter().copied())
                            .collect();
                        if !hit.is_empty() {
                            let shown = path.strip_prefix(&base).unwrap_or(&path).display().to_string();
                            note(&mut pending, shown, hit, now, debounce);
                        }
                    }
                }
            }
        }
        drop(watch);
    }
}

/// Resolves one configured target against `base` and the pools.
fn resolve(t: &ReloadTarget, base: &Path, pools: &[Pool]) -> Result<Target, ReloadError> {
    let key = if t.plugin == "*" {
        "reload.dirs".to_string()
    } else {
        format!("reload.services.{}.dirs", t.plugin)
    };
    let mut roots = Vec::with_capacity(t.dirs.len());
    for d in &t.dirs {
        let path = base.join(d);
        let io = |source: std::io::Error| ReloadError::Io {
            key: key.clone(),
            path: path.clone(),
            source,
        };
        let canon = match std::fs::canonicalize(&path) {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ReloadError::MissingDir { key, path })
            }
            Err(e) => return Err(io(e)),
        };
        if !std::fs::metadata(&canon).map_err(io)?.is_dir() {
            return Err(ReloadError::NotADirectory { key, path });
        }
        roots.push(canon);
    }
    let matching: Vec<usize> = pools
        .iter()
        .enumerate()
        .filter(|(_, p)| t.plugin == "*" || p.name() == t.plugin)
        .map(|(i, _)| i)
        .collect();
    if matching.is_empty() {
        tracing::warn!(plugin = %t.plugin, "reload: {key} names a plugin with no worker pool; its changes reset nothing");
    }
    Ok(Target {
        key,
        roots,
        recursive: t.recursive,
        patterns: t.patterns.clone(),
        ignore: t.ignore.clone(),
        pools: matching,
    })
}

/// The notify callback's body: no I/O, no blocking.
fn forward(tx: &mpsc::Sender<Msg>, lost: &AtomicBool, res: notify::Result<notify::Event>) {
    let event = match res {
        Ok(e) => e,
        Err(e) => {
            let _ = tx.try_send(Msg::Error(e));
            return;
        }
    };
    if event.need_rescan() {
        lost.store(true, Ordering::Release);
        let _ = tx.try_send(Msg::Lost);
        return;
    }
    let structural = match event.kind {
        // Opens and closes change nothing; the write itself arrives as a modify.
        EventKind::Access(_) => return,
        EventKind::Create(_) | EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_)) => {
            true
        }
        _ => false,
    };
    for path in event.paths {
        if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(Msg::Path { path, structural })
        {
            lost.store(true, Ordering::Release);
        }
    }
}

/// Adds a change to the pending reload, starting one if there is none. The
/// reload fires `debounce` after the burst's last change, but at most
/// [`MAX_BURST_WINDOWS`] windows after its first.
fn note(
    pending: &mut Option<Pending>,
    trigger: String,
    pools: BTreeSet<usize>,
    now: Instant,
    debounce: Duration,
) {
    match pending {
        Some(p) => {
            p.changes += 1;
            p.pools.extend(pools);
            p.deadline = (now + debounce).min(p.first + debounce * MAX_BURST_WINDOWS);
        }
        None => {
            *pending = Some(Pending {
                trigger,
                changes: 1,
                pools,
                first: now,
                deadline: now + debounce,
            })
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Resolves when shutdown is requested (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(recursive: bool) -> Target {
        Target {
            key: "reload.dirs".into(),
            roots: vec![PathBuf::from("/srv/app"), PathBuf::from("/srv/lib")],
            recursive,
            patterns: vec![".php".into(), ".env".into()],
            ignore: vec!["vendor".into(), ".git".into()],
            pools: vec![0],
        }
    }

    fn check(recursive: bool, cases: &[(&str, bool)]) {
        let t = target(recursive);
        for (path, want) in cases {
            assert_eq!(
                t.matches(Path::new(path)),
                *want,
                "{path} (recursive {recursive})"
            );
        }
    }

    #[test]
    fn matches_patterns_ignore_and_editor_files() {
        check(
            true,
            &[
                ("/srv/app/index.php", true),
                ("/srv/app/src/Http/Controller.php", true),
                ("/srv/lib/x.php", true),
                ("/srv/app/.env", true),
                ("/srv/app/readme.txt", false),
                ("/srv/app/php", false),
                ("/srv/app/vendor/a/b.php", false),
                ("/srv/app/src/vendor/b.php", false),
                ("/srv/app/.git/x.php", false),
                ("/srv/app/vendorish/b.php", true),
                ("/srv/app/index.php~", false),
                ("/srv/app/.index.php.swp", false),
                ("/srv/app/.index.php.swx", false),
                ("/srv/app/4913", false),
                ("/srv/app/.#index.php", false),
                ("/srv/other/index.php", false),
                ("/srv/app", false),
                ("/srv/application/index.php", false),
            ],
        );
        check(
            false,
            &[
                ("/srv/app/index.php", true),
                ("/srv/app/src/Controller.php", false),
            ],
        );
    }

    #[test]
    fn ignore_applies_below_the_watched_directory_only() {
        let mut t = target(true);
        t.roots = vec![PathBuf::from("/home/me/vendor/pkg")];
        assert!(t.matches(Path::new("/home/me/vendor/pkg/src/A.php")));
        assert!(!t.matches(Path::new("/home/me/vendor/pkg/vendor/A.php")));
    }

    #[test]
    fn wants_dir_follows_recursion_and_ignore() {
        let t = target(true);
        for (dir, want) in [
            ("/srv/app", true),
            ("/srv/app/src/Http", true),
            ("/srv/app/vendor", false),
            ("/srv/app/src/vendor/x", false),
            ("/srv/elsewhere", false),
        ] {
            assert_eq!(t.wants_dir(Path::new(dir)), want, "{dir}");
        }
        let flat = target(false);
        assert!(flat.wants_dir(Path::new("/srv/app")));
        assert!(!flat.wants_dir(Path::new("/srv/app/src")));
    }

    #[test]
    fn a_burst_extends_the_deadline_up_to_a_cap() {
        let d = Duration::from_millis(100);
        let t0 = Instant::now();
        let mut p = None;
        note(&mut p, "a.php".into(), [0].into(), t0, d);
        note(&mut p, "b.php".into(), [1].into(), t0 + d / 2, d);
        let got = p
            .as_ref()
            .map(|p| (p.trigger.as_str(), p.changes, p.deadline));
        assert_eq!(got, Some(("a.php", 2, t0 + d / 2 + d)));
        note(&mut p, "c.php".into(), [1].into(), t0 + d * 20, d);
        assert_eq!(
            p.as_ref().map(|p| (p.deadline, p.pools.len())),
            Some((t0 + d * MAX_BURST_WINDOWS, 2))
        );
    }
}
