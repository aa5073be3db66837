//! The RPC services this server offers (spec section 4): `informer` (workers per
//! plugin), `resetter` (replace a plugin's workers), `metrics` (application
//! metrics, when the metrics plugin is on) and `courser.Stop`.

use bytes::Bytes;
use courser_metrics::{AppCollector, AppKind, Metrics};
use courser_pool::{Pool, State};
use courser_rpc::informer::{WorkerInfo, WorkerList};
use courser_rpc::{Call, Registry};
use futures_util::FutureExt;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::UNIX_EPOCH;
use tokio::sync::mpsc;

/// RoadRunner's numeric worker states, as `informer.Workers` reports them.
fn rr_status(s: State) -> i64 {
    match s {
        State::Starting => 0,
        State::Ready | State::Draining => 1,
        State::Working => 2,
        State::Invalid => 3,
        State::Stopping => 4,
        State::Exited => 5,
    }
}

/// CPU use of a process over its life, in percent, from `/proc`.
fn cpu_percent(pid: u32, age_secs: f64) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may contain spaces) start after ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    if age_secs <= 0.0 {
        0.0
    } else {
        (cpu / age_secs * 100.0 * 100.0).round() / 100.0
    }
}

fn workers(pool: &Pool, command: &str) -> WorkerList {
    let now = std::time::SystemTime::now();
    WorkerList {
        workers: pool
            .workers()
            .into_iter()
            .map(|w| {
                let age = now
                    .duration_since(w.created)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0);
                WorkerInfo {
                    pid: i64::from(w.pid),
                    status: rr_status(w.state),
                    num_execs: w.jobs,
                    created: w
                        .created
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_nanos() as i64)
                        .unwrap_or(0),
                    memory_usage: w.rss,
                    cpu_percent: cpu_percent(w.pid, age),
                    command: command.to_string(),
                    status_str: w.state.as_str().to_string(),
                }
            })
            .collect(),
    }
}

fn json<T: serde::Serialize>(v: &T) -> Result<Bytes, String> {
    serde_json::to_vec(v)
        .map(Bytes::from)
        .map_err(|e| e.to_string())
}

fn plugin_arg(call: &Call) -> Result<String, String> {
    serde_json::from_slice::<String>(&call.body).map_err(|e| {
        format!(
            "{}: the argument must be a plugin name as a JSON string: {e}",
            call.method
        )
    })
}

/// A JSON object's field, matched as Go's `encoding/json` matches a struct
/// field without a tag: the exact name first, then case-insensitively. `null`
/// counts as absent.
fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name)
        .or_else(|| {
            obj.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        })
        .filter(|v| !v.is_null())
}

fn object<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>, String> {
    v.as_object()
        .ok_or_else(|| format!("{what} must be a JSON object, got {v}"))
}

fn string_field(obj: &Map<String, Value>, name: &str, what: &str) -> Result<String, String> {
    match field(obj, name) {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!("{what}.{name} must be a string, got {other}")),
    }
}

/// A list of strings; numbers and booleans are taken as written (PHP sends
/// `[1]` for `[1]` where Go would refuse it).
fn string_list(obj: &Map<String, Value>, name: &str, what: &str) -> Result<Vec<String>, String> {
    let items = match field(obj, name) {
        None => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(format!(
                "{what}.{name} must be a list of strings, got {other}"
            ))
        }
    };
    items
        .iter()
        .map(|v| match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            other => Err(format!(
                "{what}.{name} must be a list of strings, got {other} in it"
            )),
        })
        .collect()
}

fn number(v: &Value, what: &str) -> Result<f64, String> {
    match v {
        Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| format!("{what} must be a number, got {n}")),
        Value::String(s) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("{what} must be a number, got \"{s}\"")),
        other => Err(format!("{what} must be a number, got {other}")),
    }
}

/// `objectives`: `{"0.5": 0.05}` (Go's `map[float64]float64`), or a list of
/// such one-entry objects, or a list of `[quantile, error]` pairs.
fn objectives(obj: &Map<String, Value>) -> Result<Vec<(f64, f64)>, String> {
    let what = "collector.objectives";
    let mut out = Vec::new();
    let from_map = |m: &Map<String, Value>, out: &mut Vec<(f64, f64)>| -> Result<(), String> {
        for (q, e) in m {
            let q = q
                .trim()
                .parse::<f64>()
                .map_err(|_| format!("{what}: the quantile \"{q}\" is not a number"))?;
            out.push((q, number(e, &format!("{what}[{q}]"))?));
        }
        Ok(())
    };
    match field(obj, "objectives") {
        None => {}
        Some(Value::Object(m)) => from_map(m, &mut out)?,
        Some(Value::Array(items)) => {
            for item in items {
                match item {
                    Value::Object(m) => from_map(m, &mut out)?,
                    Value::Array(pair) if pair.len() == 2 => {
                        out.push((number(&pair[0], what)?, number(&pair[1], what)?));
                    }
                    other => {
                        return Err(format!(
                            "{what}: expected {{\"0.5\": 0.05, ...}}, got {other} in the list"
                        ))
                    }
                }
            }
        }
        Some(other) => {
            return Err(format!(
                "{what} must map quantiles to errors, e.g. {{\"0.5\": 0.05, \"0.99\": 0.001}}, got {other}"
            ))
        }
    }
    Ok(out)
}

/// `metrics.Declare`'s argument: `{"name", "collector": {"namespace",
/// "subsystem", "type", "help", "labels", "buckets", "objectives"}}`.
fn declare_arg(call: &Call) -> Result<(String, AppCollector), String> {
    let v: Value = call.json()?;
    let top = object(&v, "the argument")?;
    let name = string_field(top, "name", "the argument")?;
    let empty = Map::new();
    let c = match field(top, "collector") {
        Some(c) => object(c, "collector")?,
        None => &empty,
    };
    let kind: AppKind = string_field(c, "type", "collector")?
        .parse()
        .map_err(|e| format!("metric \"{name}\": {e}"))?;
    let buckets = match field(c, "buckets") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|b| number(b, "collector.buckets"))
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(format!(
                "collector.buckets must be a list of numbers, got {other}"
            ))
        }
    };
    let collector = AppCollector {
        kind,
        namespace: string_field(c, "namespace", "collector")?,
        subsystem: string_field(c, "subsystem", "collector")?,
        help: string_field(c, "help", "collector")?,
        labels: string_list(c, "labels", "collector")?,
        buckets,
        objectives: objectives(c)?,
    };
    Ok((name, collector))
}

/// `metrics.Add/Sub/Set/Observe`'s argument: `{"name", "value", "labels"}`.
fn metric_arg(call: &Call) -> Result<(String, f64, Vec<String>), String> {
    let v: Value = call.json()?;
    let obj = object(&v, "the argument")?;
    let name = string_field(obj, "name", "the argument")?;
    let value = match field(obj, "value") {
        None => 0.0,
        Some(v) => number(v, "value")?,
    };
    Ok((name, value, string_list(obj, "labels", "the argument")?))
}

/// Registers `metrics.Declare`, `Add`, `Sub`, `Set`, `Observe` and `Unregister`
/// (RoadRunner's metrics RPC); each answers `true` or an error.
fn register_metrics(r: &mut Registry, metrics: Metrics) {
    {
        let metrics = metrics.clone();
        r.register("metrics.Declare", move |call| {
            let result = declare_arg(&call).and_then(|(name, c)| metrics.declare(&name, c));
            async move { result.and_then(|()| json(&true)) }.boxed()
        });
    }
    type Update = fn(&Metrics, &str, f64, &[String]) -> Result<(), String>;
    let updates: [(&str, Update); 4] = [
        ("metrics.Add", |m, n, v, l| m.add(n, v, l)),
        ("metrics.Sub", |m, n, v, l| m.sub(n, v, l)),
        ("metrics.Set", |m, n, v, l| m.set(n, v, l)),
        ("metrics.Observe", |m, n, v, l| m.observe(n, v, l)),
    ];
    for (method, update) in updates {
        let metrics = metrics.clone();
        r.register(method, move |call| {
            let result = metric_arg(&call)
                .and_then(|(name, value, labels)| update(&metrics, &name, value, &labels));
            async move { result.and_then(|()| json(&true)) }.boxed()
        });
    }
    r.register("metrics.Unregister", move |call| {
        let result = call.json::<String>().and_then(|name| {
            if name.is_empty() {
                Err("metrics.Unregister: the argument must be a metric name, got \"\"".into())
            } else if metrics.unregister(&name) {
                Ok(())
            } else {
                Err(format!(
                    "undefined collector \"{name}\": nothing to unregister"
                ))
            }
        });
        async move { result.and_then(|()| json(&true)) }.boxed()
    });
}

/// Builds the registry for the running pools. `stop` is told when a client
/// calls `courser.Stop`; with `metrics`, the `metrics.*` methods are offered.
pub(crate) fn registry(
    pools: Vec<Pool>,
    command: String,
    stop: mpsc::UnboundedSender<()>,
    metrics: Option<Metrics>,
) -> Registry {
    let pools = Arc::new(pools);
    let mut r = Registry::default();
    let find = |pools: &Arc<Vec<Pool>>, name: &str| -> Result<Pool, String> {
        pools
            .iter()
            .find(|p| p.name() == name)
            .cloned()
            .ok_or_else(|| {
                format!(
                    "no such plugin: {name} (plugins with workers: {})",
                    pools
                        .iter()
                        .map(|p| p.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    };
    {
        let pools = pools.clone();
        r.register("informer.List", move |_call| {
            let names: Vec<String> = pools.iter().map(|p| p.name().to_string()).collect();
            async move { json(&names) }.boxed()
        });
    }
    {
        let pools = pools.clone();
        let command = command.clone();
        r.register("informer.Workers", move |call| {
            let result = plugin_arg(&call)
                .and_then(|name| find(&pools, &name))
                .map(|p| workers(&p, &command));
            async move { json(&result?) }.boxed()
        });
    }
    {
        let pools = pools.clone();
        r.register("resetter.List", move |_call| {
            let names: Vec<String> = pools.iter().map(|p| p.name().to_string()).collect();
            async move { json(&names) }.boxed()
        });
    }
    {
        let pools = pools.clone();
        r.register("resetter.Reset", move |call| {
            let pool = plugin_arg(&call).and_then(|name| find(&pools, &name));
            async move {
                let pool = pool?;
                let n = pool.reset().await;
                tracing::info!(plugin = pool.name(), workers = n, "reset over RPC");
                json(&true)
            }
            .boxed()
        });
    }
    if let Some(metrics) = metrics {
        register_metrics(&mut r, metrics);
    }
    r.register("courser.Stop", move |_call| {
        let _ = stop.send(());
        async move { json(&true) }.boxed()
    });
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use courser_frame::flags;

    fn metrics_registry() -> (Registry, Metrics) {
        let (tx, _rx) = mpsc::unbounded_channel();
        let m = Metrics::new();
        (registry(Vec::new(), String::new(), tx, Some(m.clone())), m)
    }

    async fn call(r: &Registry, method: &str, body: &str) -> Result<String, String> {
        r.dispatch(Call {
            method: method.into(),
            flags: flags::CODEC_JSON,
            body: Bytes::from(body.to_string()),
        })
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    #[tokio::test]
    async fn metrics_methods_only_with_metrics() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let without = registry(Vec::new(), String::new(), tx, None);
        assert!(!without.methods().iter().any(|m| m.starts_with("metrics.")));
        let (with, _) = metrics_registry();
        for m in [
            "metrics.Add",
            "metrics.Declare",
            "metrics.Observe",
            "metrics.Set",
            "metrics.Sub",
            "metrics.Unregister",
        ] {
            assert!(with.methods().iter().any(|x| x == m), "{m}");
        }
    }

    #[tokio::test]
    async fn field_names_match_case_insensitively() {
        let (r, m) = metrics_registry();
        let declare =
            r#"{"Name":"hits","Collector":{"Type":"Counter","Help":"h","Labels":["route"]}}"#;
        assert_eq!(
            call(&r, "metrics.Declare", declare).await,
            Ok("true".into())
        );
        // Declaring it again is fine (every worker declares at boot).
        assert_eq!(
            call(&r, "metrics.Declare", declare).await,
            Ok("true".into())
        );
        let add = r#"{"NAME":"hits","Value":2,"LABELS":["home"]}"#;
        assert_eq!(call(&r, "metrics.Add", add).await, Ok("true".into()));
        let add = r#"{"name":"hits","value":0.5,"labels":["home"]}"#;
        assert_eq!(call(&r, "metrics.Add", add).await, Ok("true".into()));
        assert!(
            m.render().contains("hits_total{route=\"home\"} 2.5"),
            "{}",
            m.render()
        );
    }

    #[tokio::test]
    async fn every_method_and_its_errors() {
        let (r, m) = metrics_registry();
        let declare = |body: &'static str| call(&r, "metrics.Declare", body);
        declare(r#"{"name":"g","collector":{"type":"gauge","namespace":"app"}}"#)
            .await
            .unwrap();
        declare(r#"{"name":"s","collector":{"type":"summary","objectives":{"0.5":0.05}}}"#)
            .await
            .unwrap();
        declare(r#"{"name":"s2","collector":{"type":"summary","objectives":[{"0.9":0.01},[0.99,0.001]]}}"#)
            .await
            .unwrap();
        declare(r#"{"name":"h","collector":{"type":"histogram","buckets":[1,2],"labels":null}}"#)
            .await
            .unwrap();
        call(&r, "metrics.Set", r#"{"name":"g","value":5}"#)
            .await
            .unwrap();
        call(&r, "metrics.Sub", r#"{"name":"g","value":2}"#)
            .await
            .unwrap();
        call(&r, "metrics.Observe", r#"{"name":"s","value":3}"#)
            .await
            .unwrap();
        call(&r, "metrics.Observe", r#"{"name":"h","value":1.5}"#)
            .await
            .unwrap();
        let text = m.render();
        for line in [
            "app_g 3.0",
            "s{quantile=\"0.5\"} 3.0",
            "h_bucket{le=\"2.0\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}:\n{text}");
        }
        assert!(text.contains("s2{quantile=\"0.99\"}"), "{text}");

        let err = |r: Result<String, String>| r.unwrap_err();
        let e = err(declare(r#"{"name":"x","collector":{"type":"meter"}}"#).await);
        assert!(e.contains("unknown collector type \"meter\""), "{e}");
        let e = err(declare(r#"{"name":"x","collector":{"type":"gauge","labels":"a"}}"#).await);
        assert!(e.contains("labels must be a list"), "{e}");
        let e =
            err(declare(r#"{"name":"g","collector":{"type":"counter","namespace":"app"}}"#).await);
        assert!(e.contains("already declared differently"), "{e}");
        let e = err(call(&r, "metrics.Add", r#"{"name":"nope","value":1}"#).await);
        assert!(e.contains("undefined collector \"nope\""), "{e}");
        let e = err(call(&r, "metrics.Observe", r#"{"name":"g","value":1}"#).await);
        assert!(e.contains("g is a gauge"), "{e}");
        let e = err(call(&r, "metrics.Add", r#"{"name":"g","value":"x"}"#).await);
        assert!(e.contains("value must be a number"), "{e}");
        let e = err(call(&r, "metrics.Add", r#"[1]"#).await);
        assert!(e.contains("must be a JSON object"), "{e}");

        assert_eq!(
            call(&r, "metrics.Unregister", r#""g""#).await,
            Ok("true".into())
        );
        let e = err(call(&r, "metrics.Unregister", r#""g""#).await);
        assert!(e.contains("undefined collector \"g\""), "{e}");
        assert!(!m.render().contains("app_g"));
    }
}
