//! The `headers` middleware: request/response header injection and CORS
//! (preflight, simple requests, credentials, regex and wildcard origins,
//! disallowed origins).

use courser_http::headers::{CorsOptions, Headers, HeadersError, HeadersOptions};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;

/// Header pairs as written in a case.
type Pairs<'a> = Vec<(&'a str, &'a str)>;
/// Expected header values by name.
type Expected<'a> = Vec<(&'a str, Vec<&'a str>)>;

fn map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (k, v) in pairs {
        m.append(
            HeaderName::from_bytes(k.as_bytes()).expect("name"),
            HeaderValue::from_str(v).expect("value"),
        );
    }
    m
}

fn all(m: &HeaderMap, name: &str) -> Vec<String> {
    m.get_all(name)
        .iter()
        .map(|v| v.to_str().expect("ascii").to_string())
        .collect()
}

fn one(m: &HeaderMap, name: &str) -> Option<String> {
    m.get(name).map(|v| v.to_str().expect("ascii").to_string())
}

fn headers(cors: Option<CorsOptions>) -> Headers {
    Headers::new(HeadersOptions {
        request: vec![],
        response: vec![],
        cors,
    })
    .expect("headers")
}

fn wildcard() -> CorsOptions {
    CorsOptions {
        allowed_origin: "*".into(),
        allowed_headers: "*".into(),
        allowed_methods: "GET,POST,PUT,DELETE".into(),
        exposed_headers: "Cache-Control,Content-Language, Content-Type".into(),
        max_age: 600,
        ..CorsOptions::default()
    }
}

fn listed() -> CorsOptions {
    CorsOptions {
        allowed_origin: "https://a.example, https://*.b.example".into(),
        allowed_headers: "X-Token, content-type".into(),
        allowed_methods: "get,post".into(),
        ..CorsOptions::default()
    }
}

fn regex_creds() -> CorsOptions {
    CorsOptions {
        allowed_origin_regex: Some(r"^https?://(localhost|127\.0\.0\.1)(:[0-9]+)?$".into()),
        allowed_headers: "*".into(),
        allowed_methods: "GET,POST,PUT,DELETE".into(),
        allow_credentials: true,
        exposed_headers: "Cache-Control,Pragma".into(),
        max_age: 600,
        ..CorsOptions::default()
    }
}

/// The expected preflight answer: status, then Access-Control-Allow-*
/// headers (origin, methods, headers, credentials, max-age), `None` meaning
/// absent.
#[derive(Debug, PartialEq)]
struct Pre {
    status: u16,
    origin: Option<String>,
    methods: Option<String>,
    headers: Option<String>,
    credentials: Option<String>,
    max_age: Option<String>,
}

fn pre(
    status: u16,
    origin: Option<&str>,
    methods: Option<&str>,
    headers: Option<&str>,
    credentials: Option<&str>,
    max_age: Option<&str>,
) -> Option<Pre> {
    let s = |o: Option<&str>| o.map(str::to_string);
    Some(Pre {
        status,
        origin: s(origin),
        methods: s(methods),
        headers: s(headers),
        credentials: s(credentials),
        max_age: s(max_age),
    })
}

async fn check_preflight(h: &Headers, method: Method, req: &[(&str, &str)], want: Option<Pre>) {
    let got = match h.preflight(&method, &map(req)) {
        None => None,
        Some(resp) => {
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.expect("body").to_bytes();
            assert!(body.is_empty(), "a preflight answer has no body");
            let v = all(&parts.headers, "vary").join(", ");
            assert!(
                v.contains("Origin") && v.contains("Access-Control-Request-Method"),
                "{v}"
            );
            Some(Pre {
                status: parts.status.as_u16(),
                origin: one(&parts.headers, "access-control-allow-origin"),
                methods: one(&parts.headers, "access-control-allow-methods"),
                headers: one(&parts.headers, "access-control-allow-headers"),
                credentials: one(&parts.headers, "access-control-allow-credentials"),
                max_age: one(&parts.headers, "access-control-max-age"),
            })
        }
    };
    assert_eq!(got, want, "{method} {req:?}");
}

#[tokio::test]
async fn preflights() {
    let wild = headers(Some(wildcard()));
    let list = headers(Some(listed()));
    let rx = headers(Some(regex_creds()));
    let teapot = headers(Some(CorsOptions {
        options_success_status: 204,
        ..wildcard()
    }));
    let no_cors = headers(None);
    let o = |origin: &'static str, m: &'static str| {
        vec![("origin", origin), ("access-control-request-method", m)]
    };
    let oh = |origin: &'static str, m: &'static str, hs: &'static str| {
        vec![
            ("origin", origin),
            ("access-control-request-method", m),
            ("access-control-request-headers", hs),
        ]
    };
    let cases: Vec<(&Headers, Method, Pairs, Option<Pre>)> = vec![
        // The RoadRunner test: wildcard echoes "*", methods and headers echoed.
        (
            &wild,
            Method::OPTIONS,
            oh("http://localhost", "GET", "origin, x-requested-with"),
            pre(
                200,
                Some("*"),
                Some("GET"),
                Some("origin, x-requested-with"),
                None,
                Some("600"),
            ),
        ),
        (
            &wild,
            Method::OPTIONS,
            o("http://x.test", "PUT"),
            pre(200, Some("*"), Some("PUT"), None, None, Some("600")),
        ),
        (
            &wild,
            Method::OPTIONS,
            o("http://x.test", "PATCH"),
            pre(200, None, None, None, None, None),
        ),
        (
            &teapot,
            Method::OPTIONS,
            o("http://x.test", "GET"),
            pre(204, Some("*"), Some("GET"), None, None, Some("600")),
        ),
        // Not a preflight: goes on to PHP.
        (&wild, Method::GET, o("http://x.test", "GET"), None),
        (
            &wild,
            Method::OPTIONS,
            vec![("origin", "http://x.test")],
            None,
        ),
        (
            &wild,
            Method::OPTIONS,
            vec![("access-control-request-method", "GET")],
            None,
        ),
        (&no_cors, Method::OPTIONS, o("http://x.test", "GET"), None),
        // A listed origin is echoed; methods compare case-insensitively.
        (
            &list,
            Method::OPTIONS,
            o("https://a.example", "POST"),
            pre(
                200,
                Some("https://a.example"),
                Some("POST"),
                None,
                None,
                None,
            ),
        ),
        (
            &list,
            Method::OPTIONS,
            o("HTTPS://A.EXAMPLE", "GET"),
            pre(
                200,
                Some("HTTPS://A.EXAMPLE"),
                Some("GET"),
                None,
                None,
                None,
            ),
        ),
        (
            &list,
            Method::OPTIONS,
            o("https://x.b.example", "GET"),
            pre(
                200,
                Some("https://x.b.example"),
                Some("GET"),
                None,
                None,
                None,
            ),
        ),
        (
            &list,
            Method::OPTIONS,
            o("https://b.example", "GET"),
            pre(200, None, None, None, None, None),
        ),
        (
            &list,
            Method::OPTIONS,
            o("https://evil.example", "GET"),
            pre(200, None, None, None, None, None),
        ),
        (
            &list,
            Method::OPTIONS,
            o("https://a.example.evil", "GET"),
            pre(200, None, None, None, None, None),
        ),
        (
            &list,
            Method::OPTIONS,
            o("https://a.example", "DELETE"),
            pre(200, None, None, None, None, None),
        ),
        // Requested headers must all be allowed (Origin always is).
        (
            &list,
            Method::OPTIONS,
            oh("https://a.example", "POST", "x-token, Content-Type, origin"),
            pre(
                200,
                Some("https://a.example"),
                Some("POST"),
                Some("x-token, Content-Type, origin"),
                None,
                None,
            ),
        ),
        (
            &list,
            Method::OPTIONS,
            oh("https://a.example", "POST", "x-token, x-other"),
            pre(200, None, None, None, None, None),
        ),
        // Regex origins with credentials echo the origin.
        (
            &rx,
            Method::OPTIONS,
            oh("http://localhost:8080", "GET", "origin, x-requested-with"),
            pre(
                200,
                Some("http://localhost:8080"),
                Some("GET"),
                Some("origin, x-requested-with"),
                Some("true"),
                Some("600"),
            ),
        ),
        (
            &rx,
            Method::OPTIONS,
            o("http://127.0.0.1", "DELETE"),
            pre(
                200,
                Some("http://127.0.0.1"),
                Some("DELETE"),
                None,
                Some("true"),
                Some("600"),
            ),
        ),
        (
            &rx,
            Method::OPTIONS,
            o("http://evil.example.com", "GET"),
            pre(200, None, None, None, None, None),
        ),
        (
            &rx,
            Method::OPTIONS,
            o("http://localhost.evil", "GET"),
            pre(200, None, None, None, None, None),
        ),
    ];
    for (h, method, req, want) in cases {
        check_preflight(h, method, &req, want).await;
    }
}

/// Expected CORS headers on an actual (non-preflight) response.
#[derive(Debug, PartialEq)]
struct Actual {
    origin: Option<String>,
    credentials: Option<String>,
    exposed: Option<String>,
    vary: Vec<String>,
}

fn actual(
    origin: Option<&str>,
    credentials: Option<&str>,
    exposed: Option<&str>,
    vary: &[&str],
) -> Actual {
    Actual {
        origin: origin.map(str::to_string),
        credentials: credentials.map(str::to_string),
        exposed: exposed.map(str::to_string),
        vary: vary.iter().map(|s| s.to_string()).collect(),
    }
}

fn check_actual(h: &Headers, req: &[(&str, &str)], resp: &[(&str, &str)], want: Actual) {
    let mut r = map(resp);
    h.apply_response(&map(req), &mut r);
    let got = Actual {
        origin: one(&r, "access-control-allow-origin"),
        credentials: one(&r, "access-control-allow-credentials"),
        exposed: one(&r, "access-control-expose-headers"),
        vary: all(&r, "vary"),
    };
    assert_eq!(got, want, "{req:?} {resp:?}");
}

#[test]
fn simple_requests() {
    let wild = headers(Some(wildcard()));
    let wild_creds = headers(Some(CorsOptions {
        allow_credentials: true,
        ..wildcard()
    }));
    let list = headers(Some(listed()));
    let rx = headers(Some(regex_creds()));
    let no_cors = headers(None);
    let exposed = Some("Cache-Control, Content-Language, Content-Type");
    let cases: Vec<(&Headers, Pairs, Pairs, Actual)> = vec![
        // Wildcard without credentials: "*", and no Vary.
        (
            &wild,
            vec![("origin", "http://x.test")],
            vec![],
            actual(Some("*"), None, exposed, &[]),
        ),
        (&wild, vec![], vec![], actual(None, None, None, &[])),
        // Wildcard with credentials: the origin is echoed, Vary: Origin.
        (
            &wild_creds,
            vec![("origin", "http://x.test")],
            vec![],
            actual(Some("http://x.test"), Some("true"), exposed, &["Origin"]),
        ),
        // Listed origins.
        (
            &list,
            vec![("origin", "https://a.example")],
            vec![],
            actual(Some("https://a.example"), None, None, &["Origin"]),
        ),
        (
            &list,
            vec![("origin", "https://evil.example")],
            vec![],
            actual(None, None, None, &["Origin"]),
        ),
        (&list, vec![], vec![], actual(None, None, None, &["Origin"])),
        // Vary is merged with PHP's and not repeated.
        (
            &list,
            vec![("origin", "https://a.example")],
            vec![("vary", "Accept-Encoding")],
            actual(
                Some("https://a.example"),
                None,
                None,
                &["Accept-Encoding", "Origin"],
            ),
        ),
        (
            &list,
            vec![("origin", "https://a.example")],
            vec![("vary", "accept-encoding, origin")],
            actual(
                Some("https://a.example"),
                None,
                None,
                &["accept-encoding, origin"],
            ),
        ),
        // Our CORS answer replaces one PHP sent.
        (
            &list,
            vec![("origin", "https://a.example")],
            vec![("access-control-allow-origin", "*")],
            actual(Some("https://a.example"), None, None, &["Origin"]),
        ),
        // The RoadRunner regex tests.
        (
            &rx,
            vec![("origin", "http://localhost")],
            vec![],
            actual(
                Some("http://localhost"),
                Some("true"),
                Some("Cache-Control, Pragma"),
                &["Origin"],
            ),
        ),
        (
            &rx,
            vec![("origin", "http://evil.example.com")],
            vec![],
            actual(None, None, None, &["Origin"]),
        ),
        // No CORS configured: nothing added.
        (
            &no_cors,
            vec![("origin", "http://x.test")],
            vec![],
            actual(None, None, None, &[]),
        ),
    ];
    for (h, req, resp, want) in cases {
        check_actual(h, &req, &resp, want);
    }
}

#[test]
fn request_and_response_injection() {
    let h = Headers::new(HeadersOptions {
        request: vec![
            ("input".into(), "custom-header".into()),
            ("X-Multi".into(), "b".into()),
        ],
        response: vec![
            ("output".into(), "output-header".into()),
            ("X-Frame-Options".into(), "DENY".into()),
        ],
        cors: None,
    })
    .expect("headers");

    // (request headers in, request headers out as name -> values)
    let cases: Vec<(Pairs, Expected)> = vec![
        (
            vec![],
            vec![("input", vec!["custom-header"]), ("x-multi", vec!["b"])],
        ),
        (
            vec![("x-multi", "a"), ("host", "h")],
            vec![
                ("input", vec!["custom-header"]),
                ("x-multi", vec!["a", "b"]),
                ("host", vec!["h"]),
            ],
        ),
    ];
    for (input, want) in cases {
        let mut m = map(&input);
        h.apply_request(&mut m);
        for (name, values) in want {
            assert_eq!(all(&m, name), values, "{input:?} {name}");
        }
    }

    // Response: configured first, PHP's values for the same name after it.
    let cases: Vec<(Pairs, Expected)> = vec![
        (
            vec![],
            vec![
                ("output", vec!["output-header"]),
                ("x-frame-options", vec!["DENY"]),
            ],
        ),
        (
            vec![
                ("x-frame-options", "SAMEORIGIN"),
                ("content-type", "text/html"),
            ],
            vec![
                ("x-frame-options", vec!["DENY", "SAMEORIGIN"]),
                ("content-type", vec!["text/html"]),
            ],
        ),
        (
            vec![("output", "output-header")],
            vec![("output", vec!["output-header"])],
        ),
    ];
    for (php, want) in cases {
        let mut m = map(&php);
        h.apply_response(&HeaderMap::new(), &mut m);
        for (name, values) in want {
            assert_eq!(all(&m, name), values, "{php:?} {name}");
        }
    }

    // Configured response headers also ride on an answered preflight.
    let h = Headers::new(HeadersOptions {
        request: vec![],
        response: vec![("output".into(), "output-header".into())],
        cors: Some(wildcard()),
    })
    .expect("headers");
    let resp = h
        .preflight(
            &Method::OPTIONS,
            &map(&[
                ("origin", "http://x.test"),
                ("access-control-request-method", "GET"),
            ]),
        )
        .expect("preflight");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        one(resp.headers(), "output").as_deref(),
        Some("output-header")
    );
}

#[test]
fn invalid_options() {
    let cases: Vec<(HeadersOptions, &str)> = vec![
        (
            HeadersOptions {
                request: vec![("bad name".into(), "x".into())],
                ..HeadersOptions::default()
            },
            "http.headers.request",
        ),
        (
            HeadersOptions {
                response: vec![("x-ok".into(), "line\nbreak".into())],
                ..HeadersOptions::default()
            },
            "http.headers.response.x-ok",
        ),
        (
            HeadersOptions {
                cors: Some(CorsOptions {
                    allowed_origin_regex: Some("^(unclosed".into()),
                    ..CorsOptions::default()
                }),
                ..HeadersOptions::default()
            },
            "allowed_origin_regex",
        ),
        (
            HeadersOptions {
                cors: Some(CorsOptions {
                    options_success_status: 1000,
                    ..CorsOptions::default()
                }),
                ..HeadersOptions::default()
            },
            "options_success_status",
        ),
        (
            HeadersOptions {
                cors: Some(CorsOptions {
                    options_success_status: 404,
                    ..CorsOptions::default()
                }),
                ..HeadersOptions::default()
            },
            "options_success_status",
        ),
    ];
    for (opts, want) in cases {
        let err: HeadersError = Headers::new(opts).expect_err("must fail");
        assert!(
            err.to_string().contains(want),
            "{err} should mention {want}"
        );
    }
    // Defaults: no origin list and no regex allow every origin; 0 status is 200.
    let h = headers(Some(CorsOptions {
        options_success_status: 0,
        ..CorsOptions::default()
    }));
    let resp = h
        .preflight(
            &Method::OPTIONS,
            &map(&[
                ("origin", "http://x.test"),
                ("access-control-request-method", "POST"),
            ]),
        )
        .expect("preflight");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        one(resp.headers(), "access-control-allow-origin").as_deref(),
        Some("*")
    );
    // The default methods are GET, POST and HEAD.
    let resp = h
        .preflight(
            &Method::OPTIONS,
            &map(&[
                ("origin", "http://x.test"),
                ("access-control-request-method", "PUT"),
            ]),
        )
        .expect("preflight");
    assert!(resp.headers().get("access-control-allow-origin").is_none());
}
