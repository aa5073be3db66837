//! Redis Streams with consumer groups (Courser's own driver; RoadRunner has no
//! Redis queue). See `DRIVERS.md` for the keys and how jobs map onto Redis.
//!
//! - push: `XADD <stream> * job <Job::encode()>`; a delayed job goes to the
//!   sorted set `<stream>:delayed` scored by its ready time (Redis server
//!   clock), and the consumer loop moves due jobs into the stream with a Lua
//!   script (`ZRANGEBYSCORE` + `XADD` + `ZREM`, atomic).
//! - consume: `XREADGROUP GROUP <group> <consumer> COUNT n BLOCK ms STREAMS
//!   <stream> >` on a dedicated connection (a blocking read would hold up the
//!   pushes and acks multiplexed on the shared one).
//! - ack / nack(false): `XACK` + `XDEL` in one `MULTI`, so the stream does not grow.
//! - nack(true): `XADD` a copy + `XACK` + `XDEL` of the original in one `MULTI`.
//! - entries of a dead consumer: `XAUTOCLAIM` after `claim_idle`; this
//!   consumer's own unsettled deliveries are kept fresh with `XCLAIM … JUSTID`
//!   (a heartbeat) so a long job is not taken over by another consumer.

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, RedisError, Value};
use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::driver::{Acker, Delivery, Driver, OpenArgs, QueueStat, Sink};
use crate::job::Job;
use crate::JobsError;

const KIND: &str = "redis";
/// The stream field holding the encoded job.
const FIELD: &str = "job";
/// The longest a blocking read waits before the loop looks at delayed jobs,
/// claims and heartbeats again.
const MAX_BLOCK: Duration = Duration::from_secs(1);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Bytes of random prefix that keep equal delayed jobs apart in the sorted set.
const NONCE_LEN: usize = 16;

/// Adds `ARGV[2]` to the sorted set `KEYS[1]`, ready `ARGV[1]` ms from the
/// server's now (one clock for every pusher and consumer).
const DELAY_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[2])
return 1
";

/// Moves up to `ARGV[1]` due members of `KEYS[1]` into the stream `KEYS[2]`
/// (dropping their nonce); returns ms until the next one, or -1 when none.
const MOVE_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, m in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', 'job', string.sub(m, tonumber(ARGV[2]) + 1))
  redis.call('ZREM', KEYS[1], m)
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #nxt == 0 then return -1 end
return math.max(0, tonumber(nxt[2]) - now)
";

/// Opens a Redis Streams pipeline.
pub async fn open(args: OpenArgs<'_>) -> Result<Arc<dyn Driver>, JobsError> {
    let p = args.pipeline;
    let c = &p.config;
    let addrs = match c.string_list("addrs")? {
        Some(a) if !a.is_empty() => a,
        _ if !args.connections.redis_addrs.is_empty() => args.connections.redis_addrs.clone(),
        _ => vec!["127.0.0.1:6379".to_string()],
    };
    let addr = addrs[0].clone();
    let url = if addr.contains("://") {
        addr.clone()
    } else {
        format!("redis://{addr}/")
    };
    let stream = c.string("stream")?.unwrap_or_else(|| p.name.clone());
    let prefetch = c.uint("prefetch")?.filter(|n| *n > 0).unwrap_or(10) as usize;
    let claim_idle = c
        .seconds("claim_idle")?
        .filter(|d| !d.is_zero())
        .unwrap_or(Duration::from_secs(30));
    let s = Settings {
        pipeline: p.name.clone(),
        addr: addr.clone(),
        delayed: format!("{stream}:delayed"),
        stream,
        group: c.string("group")?.unwrap_or_else(|| "courser".to_string()),
        consumer: match c.string("consumer")? {
            Some(name) => name,
            None => consumer_name(),
        },
        prefetch,
        claim_idle,
        timeout: args.timeout,
    };
    let connecting = "connecting; is Redis running there?".to_string();
    let client = redis::Client::open(url.as_str()).map_err(|e| s.err(&connecting, e))?;
    let cfg = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(s.timeout))
        .set_response_timeout(Some(s.timeout))
        .set_number_of_retries(2)
        .set_max_delay(BACKOFF_MAX);
    let conn = s
        .bounded(
            &connecting,
            ConnectionManager::new_with_config(client.clone(), cfg),
        )
        .await?;
    let shared = Arc::new(Shared {
        s,
        conn,
        inflight: Mutex::new(HashSet::new()),
        permits: Arc::new(Semaphore::new(prefetch)),
    });
    let mut conn = shared.conn.clone();
    create_group(&shared.s, &mut conn).await?;
    Ok(Arc::new(RedisDriver {
        shared,
        client,
        task: Mutex::new(None),
    }))
}

/// `hostname-pid-random`: unique per driver instance.
fn consumer_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "courser".to_string());
    format!("{host}-{}-{:08x}", std::process::id(), random() as u32)
}

fn random() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

struct Settings {
    pipeline: String,
    addr: String,
    stream: String,
    delayed: String,
    group: String,
    consumer: String,
    prefetch: usize,
    claim_idle: Duration,
    timeout: Duration,
}

impl Settings {
    fn err(&self, what: &str, e: impl std::fmt::Display) -> JobsError {
        JobsError::broker(
            KIND,
            &self.pipeline,
            format!("{what} (redis {}, stream {})", self.addr, self.stream),
            e,
        )
    }

    /// Runs a Redis call bounded by `jobs.timeout`.
    async fn bounded<T>(
        &self,
        what: &str,
        fut: impl std::future::Future<Output = Result<T, RedisError>>,
    ) -> Result<T, JobsError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.err(what, e)),
            Err(_) => Err(JobsError::Timeout {
                driver: KIND,
                pipeline: self.pipeline.clone(),
                what: format!("{what} (redis {})", self.addr),
                secs: self.timeout.as_secs(),
            }),
        }
    }
}

/// `XGROUP CREATE <stream> <group> 0 MKSTREAM`; an existing group is fine.
/// Id `0` so jobs pushed before the group existed are consumed too.
async fn create_group(
    s: &Settings,
    conn: &mut impl redis::aio::ConnectionLike,
) -> Result<(), JobsError> {
    let r: Result<Value, RedisError> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&s.stream)
        .arg(&s.group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        Err(e) => Err(s.err(&format!("creating consumer group {}", s.group), e)),
    }
}

struct Shared {
    s: Settings,
    /// Pushes, acks and stats (reconnects by itself).
    conn: ConnectionManager,
    /// Ids delivered by this driver and not yet settled (heartbeat, and
    /// skipped when re-reading this consumer's pending list).
    inflight: Mutex<HashSet<String>>,
    /// One permit per unsettled delivery (`prefetch`).
    permits: Arc<Semaphore>,
}

impl Shared {
    fn inflight(&self) -> MutexGuard<'_, HashSet<String>> {
        self.inflight.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct RedisDriver {
    shared: Arc<Shared>,
    client: redis::Client,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl RedisDriver {
    fn task(&self) -> MutexGuard<'_, Option<JoinHandle<()>>> {
        self.task.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for RedisDriver {
    fn drop(&mut self) {
        if let Some(h) = self.task().take() {
            h.abort();
        }
    }
}

fn nonce() -> String {
    format!("{:016x}", random())
}

#[async_trait]
impl Driver for RedisDriver {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn push(&self, job: Job) -> Result<(), JobsError> {
        let s = &self.shared.s;
        let mut conn = self.shared.conn.clone();
        let what = format!("pushing job {}", job.id);
        let delay = job.delay();
        let body = job.encode();
        if delay.is_zero() {
            s.bounded(
                &what,
                redis::cmd("XADD")
                    .arg(&s.stream)
                    .arg("*")
                    .arg(FIELD)
                    .arg(body)
                    .query_async::<Value>(&mut conn),
            )
            .await?;
        } else {
            let mut member = nonce().into_bytes();
            member.extend_from_slice(&body);
            s.bounded(
                &what,
                redis::Script::new(DELAY_SCRIPT)
                    .key(&s.delayed)
                    .arg(delay.as_millis() as u64)
                    .arg(member)
                    .invoke_async::<Value>(&mut conn),
            )
            .await?;
        }
        Ok(())
    }

    async fn push_batch(&self, jobs: Vec<Job>) -> Result<(), JobsError> {
        let s = &self.shared.s;
        let mut pipe = redis::pipe();
        let mut n = 0;
        let mut delayed = Vec::new();
        for job in jobs {
            if job.delay().is_zero() {
                pipe.cmd("XADD")
                    .arg(&s.stream)
                    .arg("*")
                    .arg(FIELD)
                    .arg(job.encode())
                    .ignore();
                n += 1;
            } else {
                delayed.push(job);
            }
        }
        if n > 0 {
            let mut conn = self.shared.conn.clone();
            s.bounded(
                &format!("pushing {n} jobs"),
                pipe.query_async::<()>(&mut conn),
            )
            .await?;
        }
        for job in delayed {
            self.push(job).await?;
        }
        Ok(())
    }

    async fn resume(&self, sink: Sink) -> Result<(), JobsError> {
        let mut task = self.task();
        if task.as_ref().is_some_and(|h| !h.is_finished()) {
            return Ok(());
        }
        let shared = self.shared.clone();
        let client = self.client.clone();
        *task = Some(tokio::spawn(consume(shared, client, sink)));
        Ok(())
    }

    async fn pause(&self) -> Result<(), JobsError> {
        let handle = self.task().take();
        if let Some(h) = handle {
            // Safe at any point: what was read and not delivered stays in this
            // consumer's pending list and is read again (id 0) on resume, or
            // claimed by another consumer after claim_idle.
            h.abort();
            let _ = h.await;
        }
        Ok(())
    }

    async fn stop(&self) -> Result<(), JobsError> {
        self.pause().await
    }

    async fn stat(&self) -> Result<QueueStat, JobsError> {
        let s = &self.shared.s;
        let mut conn = self.shared.conn.clone();
        let (groups, len, delayed): (redis::streams::StreamInfoGroupsReply, i64, i64) = s
            .bounded(
                "reading stream stats",
                redis::pipe()
                    .cmd("XINFO")
                    .arg("GROUPS")
                    .arg(&s.stream)
                    .cmd("XLEN")
                    .arg(&s.stream)
                    .cmd("ZCARD")
                    .arg(&s.delayed)
                    .query_async(&mut conn),
            )
            .await?;
        let group = groups.groups.iter().find(|g| g.name == s.group);
        let reserved = group.map(|g| g.pending as i64).unwrap_or(0);
        let ready = match group.and_then(|g| g.lag) {
            Some(lag) => lag as i64,
            // No lag (an entry was deleted mid-stream): what is in the stream
            // and not pending is an upper bound.
            None => (len - reserved).max(0),
        };
        Ok(QueueStat {
            queue: s.stream.clone(),
            ready_jobs: ready,
            delayed,
            reserved,
        })
    }
}

/// The consumer task: reconnects with backoff, one warning per outage.
async fn consume(shared: Arc<Shared>, client: redis::Client, sink: Sink) {
    let mut backoff = BACKOFF_MIN;
    let mut outage = false;
    loop {
        let mut connected = false;
        let r = session(&shared, &client, &sink, &mut connected).await;
        match r {
            Ok(()) => return, // the plugin is closing
            Err(e) => {
                if connected {
                    backoff = BACKOFF_MIN;
                    outage = false;
                }
                if !outage {
                    tracing::warn!(
                        pipeline = %shared.s.pipeline,
                        "{e}; reconnecting (retrying every {} ms up to {} s)",
                        BACKOFF_MIN.as_millis(),
                        BACKOFF_MAX.as_secs()
                    );
                    outage = true;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// One connection's worth of consuming. `Ok` when the sink is closed.
async fn session(
    shared: &Arc<Shared>,
    client: &redis::Client,
    sink: &Sink,
    connected: &mut bool,
) -> Result<(), JobsError> {
    let s = &shared.s;
    let cfg = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(s.timeout))
        .set_response_timeout(Some(MAX_BLOCK + s.timeout));
    let mut conn = s
        .bounded(
            "connecting the consumer",
            client.get_multiplexed_async_connection_with_config(&cfg),
        )
        .await?;
    create_group(s, &mut conn).await?;
    *connected = true;
    let every = (s.claim_idle / 3).max(Duration::from_millis(20));
    let mut last_claim: Option<Instant> = None;
    let mut claim_cursor = "0-0".to_string();
    // First this consumer's own pending entries (left by a pause or a lost
    // read), then new ones.
    let mut history: Option<String> = Some("0".to_string());
    loop {
        // Permits first: with `prefetch` deliveries unsettled, read nothing.
        let Some(mut permits) = take_permits(shared, every.min(MAX_BLOCK)).await else {
            heartbeat_and_claim(
                shared,
                &mut conn,
                &mut last_claim,
                &mut claim_cursor,
                every,
                sink,
                &mut Vec::new(),
            )
            .await?;
            continue;
        };
        if heartbeat_and_claim(
            shared,
            &mut conn,
            &mut last_claim,
            &mut claim_cursor,
            every,
            sink,
            &mut permits,
        )
        .await?
        {
            return Ok(());
        }
        let next_delayed: i64 = redis::Script::new(MOVE_SCRIPT)
            .key(&s.delayed)
            .key(&s.stream)
            .arg(1000)
            .arg(NONCE_LEN)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| s.err("moving due delayed jobs into the stream", e))?;
        if permits.is_empty() {
            continue;
        }
        let mut block = MAX_BLOCK.min(every);
        if next_delayed >= 0 {
            block = block.min(Duration::from_millis(next_delayed as u64));
        }
        let block_ms = block.as_millis().max(1) as u64;
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&s.group)
            .arg(&s.consumer)
            .arg("COUNT")
            .arg(permits.len());
        if history.is_none() {
            cmd.arg("BLOCK").arg(block_ms);
        }
        cmd.arg("STREAMS")
            .arg(&s.stream)
            .arg(history.as_deref().unwrap_or(">"));
        let reply: Value = match cmd.query_async(&mut conn).await {
            Ok(v) => v,
            Err(e) if e.code() == Some("NOGROUP") => {
                // The stream or group was deleted (or Redis restarted empty).
                create_group(s, &mut conn).await?;
                continue;
            }
            Err(e) => return Err(s.err("reading the stream (XREADGROUP)", e)),
        };
        let entries = parse_read(&reply);
        if let Some(cursor) = history.as_mut() {
            match entries.last() {
                Some((id, _)) => *cursor = id.clone(),
                None => history = None,
            }
        }
        let mut gone = Vec::new();
        for (id, body) in entries {
            if shared.inflight().contains(&id) {
                continue; // already out (history read)
            }
            let Some(body) = body else {
                gone.push(id); // deleted while pending
                continue;
            };
            let Some(permit) = permits.pop() else { break };
            if deliver(shared, sink, id, body, permit).await.is_err() {
                return Ok(());
            }
        }
        settle_gone(s, &mut conn, &gone).await?;
    }
}

/// Waits up to `wait` for one permit, then takes as many more as are free.
async fn take_permits(shared: &Shared, wait: Duration) -> Option<Vec<OwnedSemaphorePermit>> {
    let first = tokio::time::timeout(wait, shared.permits.clone().acquire_owned())
        .await
        .ok()?
        .ok()?;
    let mut out = vec![first];
    while out.len() < shared.s.prefetch {
        match shared.permits.clone().try_acquire_owned() {
            Ok(p) => out.push(p),
            Err(_) => break,
        }
    }
    Some(out)
}

/// Every `every`: refreshes this consumer's unsettled deliveries (`XCLAIM …
/// JUSTID` resets their idle time) and claims entries idle for `claim_idle`
/// from dead consumers (`XAUTOCLAIM`), delivering them with `permits`.
/// Returns true when the sink is closed.
async fn heartbeat_and_claim(
    shared: &Arc<Shared>,
    conn: &mut MultiplexedConnection,
    last: &mut Option<Instant>,
    cursor: &mut String,
    every: Duration,
    sink: &Sink,
    permits: &mut Vec<OwnedSemaphorePermit>,
) -> Result<bool, JobsError> {
    let s = &shared.s;
    if last.is_some_and(|t| t.elapsed() < every) {
        return Ok(false);
    }
    *last = Some(Instant::now());
    let ids: Vec<String> = shared.inflight().iter().cloned().collect();
    if !ids.is_empty() {
        redis::cmd("XCLAIM")
            .arg(&s.stream)
            .arg(&s.group)
            .arg(&s.consumer)
            .arg(0)
            .arg(&ids)
            .arg("JUSTID")
            .query_async::<Value>(conn)
            .await
            .map_err(|e| s.err("refreshing unsettled deliveries (XCLAIM)", e))?;
    }
    if permits.is_empty() {
        return Ok(false);
    }
    let reply: Value = match redis::cmd("XAUTOCLAIM")
        .arg(&s.stream)
        .arg(&s.group)
        .arg(&s.consumer)
        .arg(s.claim_idle.as_millis() as u64)
        .arg(cursor.as_str())
        .arg("COUNT")
        .arg(permits.len())
        .query_async(conn)
        .await
    {
        Ok(v) => v,
        Err(e) if e.code() == Some("NOGROUP") => {
            create_group(s, conn).await?;
            return Ok(false);
        }
        Err(e) => return Err(s.err("claiming idle entries (XAUTOCLAIM)", e)),
    };
    let Value::Array(parts) = reply else {
        return Ok(false);
    };
    let mut parts = parts.into_iter();
    if let Some(next) = parts.next().and_then(|v| text(&v)) {
        *cursor = next;
    }
    let entries = parts.next().map(|v| parse_entries(&v)).unwrap_or_default();
    let mut gone: Vec<String> = parts
        .next()
        .and_then(|v| match v {
            Value::Array(a) => Some(a.iter().filter_map(text).collect()),
            _ => None,
        })
        .unwrap_or_default();
    for (id, body) in entries {
        let Some(body) = body else {
            gone.push(id);
            continue;
        };
        if shared.inflight().contains(&id) {
            continue;
        }
        let Some(permit) = permits.pop() else { break };
        tracing::debug!(pipeline = %s.pipeline, id, "claimed an entry idle for claim_idle");
        if deliver(shared, sink, id, body, permit).await.is_err() {
            return Ok(true);
        }
    }
    settle_gone(s, conn, &gone).await?;
    Ok(false)
}

/// Acks entries that were deleted while pending (nothing left to run).
async fn settle_gone(
    s: &Settings,
    conn: &mut MultiplexedConnection,
    gone: &[String],
) -> Result<(), JobsError> {
    if gone.is_empty() {
        return Ok(());
    }
    redis::cmd("XACK")
        .arg(&s.stream)
        .arg(&s.group)
        .arg(gone)
        .query_async::<Value>(conn)
        .await
        .map_err(|e| s.err("acking deleted entries", e))?;
    Ok(())
}

/// Hands one entry to the sink. `Err` when the sink is closed (the entry
/// stays pending and comes back).
async fn deliver(
    shared: &Arc<Shared>,
    sink: &Sink,
    id: String,
    body: Vec<u8>,
    permit: OwnedSemaphorePermit,
) -> Result<(), ()> {
    let s = &shared.s;
    let mut job = match Job::decode(&body) {
        Ok(j) => j,
        Err(e) => {
            tracing::warn!(
                pipeline = %s.pipeline, stream = %s.stream, id,
                "dropping a stream entry that is not a jobs.v1 job: {e}"
            );
            let mut conn = shared.conn.clone();
            let _ = settle(s, &mut conn, &id, None).await;
            return Ok(());
        }
    };
    job.options.pipeline = s.pipeline.clone();
    shared.inflight().insert(id.clone());
    let acker = RedisAcker {
        guard: InFlight {
            shared: shared.clone(),
            id,
            _permit: permit,
        },
        body,
    };
    let d = Delivery {
        job,
        queue: Some(s.stream.clone()),
        acker: Box::new(acker),
    };
    sink.deliver(d).await.map_err(drop)
}

/// Parses an `XREADGROUP` reply: `[[stream, [[id, [field, value, …] | nil], …]]]`.
fn parse_read(v: &Value) -> Vec<(String, Option<Vec<u8>>)> {
    match v {
        Value::Array(streams) => streams
            .iter()
            .flat_map(|s| match s {
                Value::Array(kv) if kv.len() == 2 => parse_entries(&kv[1]),
                _ => Vec::new(),
            })
            .collect(),
        Value::Map(streams) => streams.iter().flat_map(|(_, e)| parse_entries(e)).collect(),
        _ => Vec::new(),
    }
}

/// `[[id, [field, value, …] | nil], …]` → (id, the `job` field).
fn parse_entries(v: &Value) -> Vec<(String, Option<Vec<u8>>)> {
    let Value::Array(entries) = v else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|e| {
            let Value::Array(pair) = e else { return None };
            let id = text(pair.first()?)?;
            let body = match pair.get(1) {
                Some(Value::Array(fields)) => fields
                    .chunks(2)
                    .find(|kv| text(&kv[0]).as_deref() == Some(FIELD))
                    .and_then(|kv| match kv.get(1) {
                        Some(Value::BulkString(b)) => Some(b.clone()),
                        _ => None,
                    }),
                Some(Value::Map(fields)) => fields
                    .iter()
                    .find(|(k, _)| text(k).as_deref() == Some(FIELD))
                    .and_then(|(_, v)| match v {
                        Value::BulkString(b) => Some(b.clone()),
                        _ => None,
                    }),
                _ => None,
            };
            Some((id, body))
        })
        .collect()
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// `XACK` + `XDEL` of `id` (after an `XADD` of `requeue`) in one `MULTI`.
async fn settle(
    s: &Settings,
    conn: &mut ConnectionManager,
    id: &str,
    requeue: Option<&[u8]>,
) -> Result<(), JobsError> {
    let mut pipe = redis::pipe();
    pipe.atomic();
    if let Some(body) = requeue {
        pipe.cmd("XADD")
            .arg(&s.stream)
            .arg("*")
            .arg(FIELD)
            .arg(body)
            .ignore();
    }
    pipe.cmd("XACK")
        .arg(&s.stream)
        .arg(&s.group)
        .arg(id)
        .ignore()
        .cmd("XDEL")
        .arg(&s.stream)
        .arg(id)
        .ignore();
    let what = if requeue.is_some() {
        format!("requeueing entry {id}")
    } else {
        format!("acking entry {id}")
    };
    s.bounded(&what, pipe.query_async::<()>(conn)).await
}

/// One unsettled delivery: holds a prefetch permit and the in-flight mark
/// until settled or dropped.
struct InFlight {
    shared: Arc<Shared>,
    id: String,
    _permit: OwnedSemaphorePermit,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.shared.inflight().remove(&self.id);
    }
}

struct RedisAcker {
    guard: InFlight,
    body: Vec<u8>,
}

#[async_trait]
impl Acker for RedisAcker {
    async fn ack(self: Box<Self>) -> Result<(), JobsError> {
        let g = &self.guard;
        let mut conn = g.shared.conn.clone();
        settle(&g.shared.s, &mut conn, &g.id, None).await
    }

    async fn nack(self: Box<Self>, requeue: bool) -> Result<(), JobsError> {
        let g = &self.guard;
        let mut conn = g.shared.conn.clone();
        let body = requeue.then_some(self.body.as_slice());
        settle(&g.shared.s, &mut conn, &g.id, body).await
    }
}
