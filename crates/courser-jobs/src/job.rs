//! A job as it travels: pushed over RPC (`jobs.v1.Job`), stored by a driver,
//! delivered to a PHP worker (spec §4.5: a JSON context + the payload), and
//! answered with ack / nack / requeue.

use bytes::Bytes;
use prost::Message;
use std::collections::BTreeMap;
use std::time::Duration;

use crate::proto;

/// Header names and their values, as RoadRunner's `map<string, HeaderValue>`.
pub type Headers = BTreeMap<String, Vec<String>>;

/// One job.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Job {
    /// The job's name (PHP: its class or a label), `job` in the worker context.
    pub name: String,
    /// Unique id (PHP: a uuid4); never empty once accepted.
    pub id: String,
    /// The payload, passed to PHP as the frame body.
    pub payload: Bytes,
    /// Headers, passed to PHP in the context.
    pub headers: Headers,
    /// Pipeline, priority, delay and auto-ack.
    pub options: JobOptions,
}

/// `jobs.v1.Options`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobOptions {
    /// Lower runs first; 0 means "the pipeline's priority".
    pub priority: i64,
    /// The pipeline the job was pushed to.
    pub pipeline: String,
    /// Seconds to wait before the job is ready.
    pub delay: i64,
    /// Ack when taken, before PHP runs it (at-most-once).
    pub auto_ack: bool,
}

impl Job {
    /// The delay as a duration (negative delays are none).
    pub fn delay(&self) -> Duration {
        Duration::from_secs(u64::try_from(self.options.delay).unwrap_or(0))
    }

    /// From the RPC message. Empty ids are refused by the caller.
    pub fn from_proto(j: proto::Job) -> Job {
        let options = j.options.unwrap_or_default();
        Job {
            name: j.job,
            id: j.id,
            payload: j.payload,
            headers: j.headers.into_iter().map(|(k, v)| (k, v.value)).collect(),
            options: JobOptions {
                priority: options.priority,
                pipeline: options.pipeline,
                delay: options.delay,
                auto_ack: options.auto_ack,
            },
        }
    }

    /// To the RPC message (also the form durable drivers store).
    pub fn to_proto(&self) -> proto::Job {
        proto::Job {
            job: self.name.clone(),
            id: self.id.clone(),
            payload: self.payload.clone(),
            headers: self
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), proto::HeaderValue { value: v.clone() }))
                .collect(),
            options: Some(proto::Options {
                priority: self.options.priority,
                pipeline: self.options.pipeline.clone(),
                delay: self.options.delay,
                auto_ack: self.options.auto_ack,
                ..Default::default()
            }),
        }
    }

    /// Bytes for a broker or a disk store: the `jobs.v1.Job` protobuf message.
    pub fn encode(&self) -> Vec<u8> {
        self.to_proto().encode_to_vec()
    }

    /// Reads what [`Job::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Result<Job, prost::DecodeError> {
        proto::Job::decode(bytes).map(Job::from_proto)
    }

    /// The worker context (spec §4.5), keys in RoadRunner's order:
    /// `id`, `job`, `driver`, `headers` (null when none), `pipeline`, then `queue`
    /// when the driver has one.
    pub fn context(&self, driver: &str, queue: Option<&str>) -> Vec<u8> {
        #[derive(serde::Serialize)]
        struct Ctx<'a> {
            id: &'a str,
            job: &'a str,
            driver: &'a str,
            headers: Option<&'a Headers>,
            pipeline: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            queue: Option<&'a str>,
        }
        let ctx = Ctx {
            id: &self.id,
            job: &self.name,
            driver,
            headers: (!self.headers.is_empty()).then_some(&self.headers),
            pipeline: &self.options.pipeline,
            queue,
        };
        // Serializing plain strings and maps cannot fail.
        serde_json::to_vec(&ctx).unwrap_or_default()
    }
}

/// What a worker answered about a job (spec §4.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Done: remove it.
    Ack,
    /// Failed. With `requeue`, deliver it again after `delay`; else drop it.
    Nack {
        /// Why, for the log.
        message: String,
        /// Deliver again?
        requeue: bool,
        /// After this long.
        delay: Duration,
    },
    /// Put it back (with headers merged in) after `delay`.
    Requeue {
        /// Why, for the log.
        message: String,
        /// After this long.
        delay: Duration,
        /// Headers to merge into the job's.
        headers: Headers,
    },
}

/// A reply body that is not one of the answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedAnswer(pub String);

impl Answer {
    /// Parses `{"type":T,"data":D}`. Type 0 and 2 ack; 1 (the deprecated
    /// `fail`) requeues when `requeue` is true and acks otherwise; 3 nacks; 4
    /// requeues. Other types are malformed.
    pub fn parse(body: &[u8]) -> Result<Answer, MalformedAnswer> {
        #[derive(serde::Deserialize)]
        struct Raw {
            #[serde(rename = "type")]
            kind: i64,
            #[serde(default)]
            data: serde_json::Value,
        }
        let raw: Raw = serde_json::from_slice(body).map_err(|e| {
            MalformedAnswer(format!(
                "the answer {:?} is not {{\"type\":N,\"data\":…}}: {e}",
                courser_frame::preview(body, 120)
            ))
        })?;
        let d = &raw.data;
        let message = d
            .get("message")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        let requeue = d.get("requeue").and_then(|v| v.as_bool()).unwrap_or(false);
        let delay = Duration::from_secs(
            d.get("delay_seconds")
                .and_then(|v| v.as_i64())
                .and_then(|s| u64::try_from(s).ok())
                .unwrap_or(0),
        );
        let headers = || -> Headers {
            d.get("headers")
                .and_then(|h| serde_json::from_value::<Headers>(h.clone()).ok())
                .unwrap_or_default()
        };
        match raw.kind {
            0 | 2 => Ok(Answer::Ack),
            1 if requeue => Ok(Answer::Requeue {
                message,
                delay,
                headers: headers(),
            }),
            1 => Ok(Answer::Ack),
            3 => Ok(Answer::Nack {
                message,
                requeue,
                delay,
            }),
            4 => Ok(Answer::Requeue {
                message,
                delay,
                headers: headers(),
            }),
            other => Err(MalformedAnswer(format!(
                "the answer type {other} is unknown (0 complete, 1 fail, 2 ack, 3 nack, 4 requeue)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_keys_in_roadrunner_order() {
        let mut j = Job {
            name: "ping".into(),
            id: "1".into(),
            ..Job::default()
        };
        j.options.pipeline = "p".into();
        assert_eq!(
            String::from_utf8_lossy(&j.context("memory", None)),
            r#"{"id":"1","job":"ping","driver":"memory","headers":null,"pipeline":"p"}"#
        );
        j.headers.insert("a".into(), vec!["b".into()]);
        assert_eq!(
            String::from_utf8_lossy(&j.context("amqp", Some("q"))),
            r#"{"id":"1","job":"ping","driver":"amqp","headers":{"a":["b"]},"pipeline":"p","queue":"q"}"#
        );
    }

    #[test]
    fn answers() {
        let cases: &[(&str, Result<Answer, ()>)] = &[
            (r#"{"type":0,"data":[]}"#, Ok(Answer::Ack)),
            (r#"{"type":2,"data":[]}"#, Ok(Answer::Ack)),
            (
                r#"{"type":1,"data":{"message":"m","requeue":false,"delay_seconds":0}}"#,
                Ok(Answer::Ack),
            ),
            (
                r#"{"type":1,"data":{"message":"m","requeue":true,"delay_seconds":2,"headers":{"x":["y"]}}}"#,
                Ok(Answer::Requeue {
                    message: "m".into(),
                    delay: Duration::from_secs(2),
                    headers: [("x".to_string(), vec!["y".to_string()])].into(),
                }),
            ),
            (
                r#"{"type":3,"data":{"message":"try again","requeue":true,"delay_seconds":0}}"#,
                Ok(Answer::Nack {
                    message: "try again".into(),
                    requeue: true,
                    delay: Duration::ZERO,
                }),
            ),
            (
                r#"{"type":4,"data":{"message":"later","delay_seconds":5}}"#,
                Ok(Answer::Requeue {
                    message: "later".into(),
                    delay: Duration::from_secs(5),
                    headers: Headers::new(),
                }),
            ),
            (r#"{"type":9,"data":[]}"#, Err(())),
            ("garbage", Err(())),
        ];
        for (body, want) in cases {
            let got = Answer::parse(body.as_bytes()).map_err(|_| ());
            assert_eq!(&got, want, "{body}");
        }
    }

    #[test]
    fn encode_roundtrip() {
        let mut j = Job {
            name: "n".into(),
            id: "i".into(),
            payload: Bytes::from_static(b"\x00\xffpayload"),
            ..Job::default()
        };
        j.headers.insert("h".into(), vec!["1".into(), "2".into()]);
        j.options = JobOptions {
            priority: 3,
            pipeline: "p".into(),
            delay: 4,
            auto_ack: true,
        };
        assert_eq!(Job::decode(&j.encode()).ok(), Some(j));
    }
}
